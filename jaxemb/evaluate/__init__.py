"""jaxemb.evaluate."""
