"""jaxemb.nn."""
