"""The Poincaré ball of curvature -c (c > 0): points x with c‖x‖² < 1, vectors on the last axis.

All functions are pure jnp, broadcast over leading axes, and keep gradients finite up to the
projection margin (`project`): norms that can be zero use a safe square root, and `1 - c‖x‖²`
is clamped away from zero. Formulas follow Ganea et al. 2018 ("Hyperbolic neural networks")
and Ungar's gyrovector calculus; c = 1 is the unit ball of Nickel & Kiela 2017.

    x ⊕ y      = ((1 + 2c⟨x,y⟩ + c‖y‖²) x + (1 - c‖x‖²) y) / (1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²)
    λ_x        = 2 / (1 - c‖x‖²)                       (conformal factor: g_x = λ_x² I)
    d(x, y)    = arccosh(1 + 2c‖x-y‖² / ((1-c‖x‖²)(1-c‖y‖²))) / √c
    exp_x(v)   = x ⊕ tanh(√c λ_x ‖v‖ / 2) v / (√c ‖v‖)
    log_x(y)   = 2 / (√c λ_x) artanh(√c ‖-x ⊕ y‖) (-x ⊕ y) / ‖-x ⊕ y‖
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

# Smallest value of (1 - c‖x‖²) and of norms used as divisors; far below any value the
# projection margin allows, so it only guards against 0/0 and never changes a result.
_MIN = 1e-15


def _check_c(c) -> None:
  if isinstance(c, (int, float)) and not c > 0:
    raise ValueError(f"curvature c must be > 0 (the ball has curvature -c), got {c!r}")


def margin(dtype) -> float:
  """The default projection margin for `dtype`: ‖x‖ ≤ (1 - margin)/√c.

  float32 keeps 1 - ‖x‖² ≥ 2e-5, ~170x its machine epsilon, so λ_x and distances keep
  about 3 significant digits there; float64 can go much closer to the boundary.
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float64:
    return 1e-10
  if dtype == jnp.float32:
    return 1e-5
  return 1e-3  # bfloat16 / float16


def _sqnorm(x: Array) -> Array:
  return jnp.sum(x * x, axis=-1, keepdims=True)


def _norm(x: Array) -> Array:
  """‖x‖ with a zero (not NaN) gradient at x = 0."""
  sq = _sqnorm(x)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _artanh(x: Array) -> Array:
  # Clip strictly inside (-1, 1) so gradients stay finite for points at the margin.
  lim = 1.0 - jnp.finfo(x.dtype).eps
  return jnp.arctanh(jnp.clip(x, -lim, lim))


def project(x: Array, c: float = 1.0, eps: float | None = None) -> Array:
  """`x` pulled radially inside the ball: ‖x‖ ≤ (1 - eps)/√c (eps defaults to `margin`)."""
  _check_c(c)
  eps = margin(x.dtype) if eps is None else eps
  maxnorm = (1.0 - eps) / jnp.sqrt(c)
  norm = jnp.maximum(_norm(x), _MIN)
  return jnp.where(norm > maxnorm, x / norm * maxnorm, x)


def lambda_x(x: Array, c: float = 1.0, keepdims: bool = True) -> Array:
  """Conformal factor λ_x = 2 / (1 - c‖x‖²): the metric at x is λ_x² times Euclidean."""
  out = 2.0 / jnp.maximum(1.0 - c * _sqnorm(x), _MIN)
  return out if keepdims else out[..., 0]


def inner(x: Array, u: Array, v: Array | None = None, c: float = 1.0,
          keepdims: bool = False) -> Array:
  """Riemannian inner product ⟨u, v⟩_x = λ_x² ⟨u, v⟩ of tangent vectors at x."""
  v = u if v is None else v
  out = lambda_x(x, c) ** 2 * jnp.sum(u * v, axis=-1, keepdims=True)
  return out if keepdims else out[..., 0]


def mobius_add(x: Array, y: Array, c: float = 1.0) -> Array:
  """Möbius addition x ⊕ y (not commutative, not associative; x ⊕ 0 = 0 ⊕ x = x)."""
  _check_c(c)
  xy = jnp.sum(x * y, axis=-1, keepdims=True)
  x2, y2 = _sqnorm(x), _sqnorm(y)
  num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
  den = 1 + 2 * c * xy + c * c * x2 * y2
  return num / jnp.maximum(den, _MIN)


def mobius_scalar_mul(r: Array | float, x: Array, c: float = 1.0) -> Array:
  """Möbius scalar multiplication r ⊗ x = tanh(r artanh(√c‖x‖)) x / (√c‖x‖)."""
  _check_c(c)
  sc = jnp.sqrt(c)
  norm = jnp.maximum(_norm(x), _MIN)
  r = jnp.asarray(r, x.dtype)
  r = r[..., None] if 0 < r.ndim == x.ndim - 1 else r
  return jnp.tanh(r * _artanh(sc * norm)) * x / (sc * norm)


def mobius_matvec(m: Array, x: Array, c: float = 1.0) -> Array:
  """Möbius matrix-vector product M ⊗ x = exp_0(M log_0(x)) (x @ m.T; m is [out, in])."""
  return expmap0(x @ m.T, c)


def expmap0(v: Array, c: float = 1.0) -> Array:
  """exp_0(v) = tanh(√c‖v‖) v / (√c‖v‖): tangent vector at the origin -> point."""
  _check_c(c)
  sc = jnp.sqrt(c)
  norm = jnp.maximum(_norm(v), _MIN)
  return jnp.tanh(sc * norm) * v / (sc * norm)


def logmap0(y: Array, c: float = 1.0) -> Array:
  """log_0(y) = artanh(√c‖y‖) y / (√c‖y‖): point -> tangent vector at the origin."""
  _check_c(c)
  sc = jnp.sqrt(c)
  norm = jnp.maximum(_norm(y), _MIN)
  return _artanh(sc * norm) * y / (sc * norm)


def expmap(x: Array, v: Array, c: float = 1.0) -> Array:
  """exp_x(v): the point reached from x along the geodesic with initial velocity v."""
  _check_c(c)
  sc = jnp.sqrt(c)
  norm = jnp.maximum(_norm(v), _MIN)
  second = jnp.tanh(sc * lambda_x(x, c) * norm / 2) * v / (sc * norm)
  return mobius_add(x, second, c)


def logmap(x: Array, y: Array, c: float = 1.0) -> Array:
  """log_x(y): the tangent vector at x whose exp_x is y (inverse of `expmap`)."""
  _check_c(c)
  sc = jnp.sqrt(c)
  sub = mobius_add(-x, y, c)
  norm = jnp.maximum(_norm(sub), _MIN)
  return 2 / (sc * lambda_x(x, c)) * _artanh(sc * norm) * sub / norm


def dist(x: Array, y: Array, c: float = 1.0, keepdims: bool = False) -> Array:
  """Geodesic distance arccosh(1 + δ)/√c, δ = 2c‖x-y‖² / ((1-c‖x‖²)(1-c‖y‖²)).

  Computed as log1p(δ + √(δ(2+δ))) so that nearby points keep full precision (arccosh(1+δ)
  would lose it in 1+δ) and the gradient at x = y is 0 instead of NaN.
  """
  _check_c(c)
  diff = _sqnorm(x - y)
  den = (jnp.maximum(1 - c * _sqnorm(x), _MIN) * jnp.maximum(1 - c * _sqnorm(y), _MIN))
  delta = 2 * c * diff / den
  t = delta * (2 + delta)
  pos = t > 0
  root = jnp.where(pos, jnp.sqrt(jnp.where(pos, t, 1.0)), 0.0)
  out = jnp.log1p(delta + root) / jnp.sqrt(c)
  return out if keepdims else out[..., 0]


def dist0(x: Array, c: float = 1.0, keepdims: bool = False) -> Array:
  """Distance from the origin, 2 artanh(√c‖x‖)/√c."""
  _check_c(c)
  out = 2 * _artanh(jnp.sqrt(c) * _norm(x)) / jnp.sqrt(c)
  return out if keepdims else out[..., 0]


def gyration(u: Array, v: Array, w: Array, c: float = 1.0) -> Array:
  """gyr[u, v] w = ⊖(u ⊕ v) ⊕ (u ⊕ (v ⊕ w)), in closed form."""
  _check_c(c)
  u2, v2 = _sqnorm(u), _sqnorm(v)
  uv = jnp.sum(u * v, axis=-1, keepdims=True)
  uw = jnp.sum(u * w, axis=-1, keepdims=True)
  vw = jnp.sum(v * w, axis=-1, keepdims=True)
  a = -c * c * uw * v2 + c * vw + 2 * c * c * uv * vw
  b = -c * c * vw * u2 - c * uw
  d = 1 + 2 * c * uv + c * c * u2 * v2
  return w + 2 * (a * u + b * v) / jnp.maximum(d, _MIN)


def transp(x: Array, y: Array, v: Array, c: float = 1.0) -> Array:
  """Parallel transport of tangent vector v from x to y: (λ_x/λ_y) gyr[y, -x] v."""
  return gyration(y, -x, v, c) * lambda_x(x, c) / lambda_x(y, c)


def transp0(y: Array, v: Array, c: float = 1.0) -> Array:
  """Parallel transport from the origin to y: v (1 - c‖y‖²) = 2v/λ_y."""
  return v * jnp.maximum(1 - c * _sqnorm(y), _MIN)


def transp0back(x: Array, v: Array, c: float = 1.0) -> Array:
  """Parallel transport from x to the origin: v / (1 - c‖x‖²)."""
  return v / jnp.maximum(1 - c * _sqnorm(x), _MIN)


def egrad2rgrad(x: Array, grad: Array, c: float = 1.0) -> Array:
  """Riemannian gradient from the Euclidean one: grad / λ_x² (the inverse metric)."""
  return grad / lambda_x(x, c) ** 2


def weighted_midpoint(x: Array, weights: Array | None = None, c: float = 1.0,
                      axis: int = 0) -> Array:
  """Weighted gyro (Einstein) midpoint of the points along `axis` of x ([..., D] rows).

      m = ½ ⊗ (Σ w_i λ_i x_i / Σ w_i (λ_i - 1))

  (Ungar 2010 in the Poincaré model). For two points with equal weights it is the midpoint
  of the geodesic; weights need not sum to one (only their ratios matter) but Σ w_i(λ_i - 1)
  must be positive (non-negative weights, not all zero).
  """
  _check_c(c)
  if x.ndim < 2:
    raise ValueError(f"weighted_midpoint needs points [..., N, D] (ndim >= 2), got {x.shape}")
  axis = axis % x.ndim
  if axis == x.ndim - 1:
    raise ValueError("axis must not be the last (coordinate) axis of x")
  lam = lambda_x(x, c)
  w = jnp.ones(x.shape[:-1], x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
  w = jnp.broadcast_to(w, x.shape[:-1])[..., None]
  num = jnp.sum(w * lam * x, axis=axis)
  den = jnp.sum(w * (lam - 1), axis=axis)
  return mobius_scalar_mul(0.5, num / jnp.maximum(den, _MIN), c)
