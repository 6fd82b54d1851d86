"""Hyperbolic modules on the Poincaré ball (`jaxemb.geometry.poincare`).

`PoincareEmbedding`: a table of points in the ball (Nickel & Kiela 2017); its parameter is
named `points`, which `jaxemb.optimizers.riemannian.path_has("points")` marks for a
Riemannian optimiser.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxemb.geometry import poincare


class PoincareEmbedding(nnx.Module):
  """`num` points of the c-ball in `dim` dimensions, initialised uniform in ±init_range.

  Logical axes ("node", "embed"): map "node" to a mesh axis to shard the table by rows.
  """

  def __init__(self, num: int, dim: int, *, rngs: nnx.Rngs, c: float = 1.0,
               init_range: float = 1e-3, dtype=jnp.float32):
    if num < 1 or dim < 1:
      raise ValueError(f"PoincareEmbedding needs num >= 1 and dim >= 1, got {num}, {dim}")
    if not c > 0:
      raise ValueError(f"curvature c must be > 0, got {c!r}")
    if not 0 < init_range * (dim ** 0.5) * (c ** 0.5) < 1:
      raise ValueError(f"init_range={init_range} puts points outside the ball of c={c}")
    self.c = float(c)
    init = nnx.with_partitioning(
        lambda key, shape, dt: jax.random.uniform(key, shape, dt, -init_range, init_range),
        ("node", "embed"))
    self.points = nnx.Param(init(rngs.params(), (num, dim), dtype))

  def __call__(self, ids: jax.Array) -> jax.Array:
    """The points of `ids` ([...] ints -> [..., dim])."""
    return jnp.take(self.points[...], ids, axis=0)

  def dist(self, a: jax.Array, b: jax.Array) -> jax.Array:
    """Hyperbolic distance between the points of ids `a` and `b` (broadcast)."""
    return poincare.dist(self(a), self(b), self.c)

  def dist_to_all(self, ids: jax.Array) -> jax.Array:
    """[len(ids), num] distances from the points of `ids` to every point."""
    pts = self.points[...]
    return poincare.dist(jnp.take(pts, ids, axis=0)[:, None, :], pts[None, :, :], self.c)
