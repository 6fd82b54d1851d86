"""jaxemb.objectives."""
