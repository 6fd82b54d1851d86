"""jaxemb.train."""
