"""Optimisers beyond AdamW, as optax transformations: Riemannian (manifold parameters), row-wise (embedding tables)."""
