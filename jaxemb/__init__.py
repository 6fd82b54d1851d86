"""jaxemb: learn, adapt and evaluate embeddings at scale with JAX."""
