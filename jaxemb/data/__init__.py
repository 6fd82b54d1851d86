"""jaxemb.data."""
