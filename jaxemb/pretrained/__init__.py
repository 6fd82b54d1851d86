"""jaxemb.pretrained."""
