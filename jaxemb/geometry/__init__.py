"""Manifold operations in pure jnp: the Poincaré ball (`poincare`) and the Lorentz model
(`lorentz`), both of curvature -c, with maps between them."""

from jaxemb.geometry import lorentz, poincare

__all__ = ["lorentz", "poincare"]
