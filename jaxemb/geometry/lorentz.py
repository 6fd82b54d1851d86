"""The Lorentz (hyperboloid) model of curvature -c: x = (x_0, x_1..x_n), ⟨x, x⟩_L = -1/c, x_0 > 0.

⟨u, v⟩_L = -u_0 v_0 + Σ_i u_i v_i is the Minkowski product on the last axis. The maps
`to_poincare` / `from_poincare` are the isometries with the Poincaré ball of the same c
(`jaxemb.geometry.poincare`):

    p = x_{1:} / (1 + √c x_0)          x = ((1 + c‖p‖²)/√c, 2p) / (1 - c‖p‖²)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
_MIN = 1e-15


def _check_c(c) -> None:
  if isinstance(c, (int, float)) and not c > 0:
    raise ValueError(f"curvature c must be > 0 (the hyperboloid has curvature -c), got {c!r}")


def minkowski_inner(u: Array, v: Array, keepdims: bool = False) -> Array:
  """⟨u, v⟩_L = -u_0 v_0 + Σ_{i≥1} u_i v_i."""
  out = jnp.sum(u[..., 1:] * v[..., 1:], axis=-1, keepdims=True) - u[..., :1] * v[..., :1]
  return out if keepdims else out[..., 0]


def _safe_sqrt(t: Array) -> Array:
  pos = t > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, t, 1.0)), 0.0)


def origin(dim: int, c: float = 1.0, dtype=jnp.float32) -> Array:
  """The base point (1/√c, 0, ..., 0) of the n-dimensional hyperboloid (dim = n + 1 entries)."""
  _check_c(c)
  if dim < 2:
    raise ValueError(f"a hyperboloid point needs dim >= 2 coordinates, got {dim}")
  return jnp.zeros((dim,), dtype).at[0].set(1.0 / jnp.sqrt(c))


def project(x: Array, c: float = 1.0) -> Array:
  """Onto the hyperboloid by recomputing x_0 = √(1/c + ‖x_{1:}‖²) from the space part."""
  _check_c(c)
  space = x[..., 1:]
  x0 = jnp.sqrt(1.0 / c + jnp.sum(space * space, axis=-1, keepdims=True))
  return jnp.concatenate([x0, space], axis=-1)


def proj_tangent(x: Array, v: Array, c: float = 1.0) -> Array:
  """Orthogonal projection of an ambient vector v onto the tangent space at x."""
  return v + c * minkowski_inner(x, v, keepdims=True) * x


def dist(x: Array, y: Array, c: float = 1.0, keepdims: bool = False) -> Array:
  """arccosh(-c⟨x, y⟩_L)/√c, with a zero (not NaN) gradient at x = y."""
  _check_c(c)
  z = jnp.maximum(-c * minkowski_inner(x, y, keepdims=True), 1.0)
  out = jnp.log(z + _safe_sqrt(z * z - 1)) / jnp.sqrt(c)
  return out if keepdims else out[..., 0]


def expmap(x: Array, v: Array, c: float = 1.0) -> Array:
  """exp_x(v) = cosh(√c‖v‖_L) x + sinh(√c‖v‖_L) v / (√c‖v‖_L), v tangent at x."""
  _check_c(c)
  n = jnp.sqrt(c) * _safe_sqrt(minkowski_inner(v, v, keepdims=True))
  safe = jnp.maximum(n, _MIN)
  return project(jnp.cosh(n) * x + jnp.sinh(safe) / safe * v, c)


def logmap(x: Array, y: Array, c: float = 1.0) -> Array:
  """log_x(y) = d(x, y) u / ‖u‖_L with u = y + c⟨x, y⟩_L x (the inverse of `expmap`)."""
  _check_c(c)
  u = y + c * minkowski_inner(x, y, keepdims=True) * x
  norm = jnp.maximum(_safe_sqrt(minkowski_inner(u, u, keepdims=True)), _MIN)
  return dist(x, y, c, keepdims=True) * u / norm


def expmap0(v: Array, c: float = 1.0) -> Array:
  """exp at the origin of a tangent vector v = (0, v_1..v_n) (v_0 is ignored)."""
  return expmap(jnp.broadcast_to(origin(v.shape[-1], c, v.dtype), v.shape),
                v.at[..., 0].set(0.0), c)


def logmap0(y: Array, c: float = 1.0) -> Array:
  """log at the origin; the result's 0-th entry is 0."""
  return logmap(jnp.broadcast_to(origin(y.shape[-1], c, y.dtype), y.shape), y, c)


def egrad2rgrad(x: Array, grad: Array, c: float = 1.0) -> Array:
  """Riemannian gradient: flip the time component (inverse Minkowski metric), then project."""
  return proj_tangent(x, grad.at[..., 0].multiply(-1.0), c)


def transp(x: Array, y: Array, v: Array, c: float = 1.0) -> Array:
  """Parallel transport of v (tangent at x) to y along the geodesic."""
  _check_c(c)
  coef = c * minkowski_inner(y, v, keepdims=True) / (
      1 - c * minkowski_inner(x, y, keepdims=True))
  return v + coef * (x + y)


def to_poincare(x: Array, c: float = 1.0) -> Array:
  """Hyperboloid point -> Poincaré ball point of the same curvature."""
  _check_c(c)
  return x[..., 1:] / (1 + jnp.sqrt(c) * x[..., :1])


def from_poincare(p: Array, c: float = 1.0) -> Array:
  """Poincaré ball point -> hyperboloid point of the same curvature."""
  _check_c(c)
  sq = jnp.sum(p * p, axis=-1, keepdims=True)
  den = jnp.maximum(1 - c * sq, _MIN)
  return jnp.concatenate([(1 + c * sq) / (jnp.sqrt(c) * den), 2 * p / den], axis=-1)


__all__ = [
    "dist", "egrad2rgrad", "expmap", "expmap0", "from_poincare", "logmap", "logmap0",
    "minkowski_inner", "origin", "proj_tangent", "project", "to_poincare", "transp",
]
