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


# ---------------------------------------------------------------------------------------------
# Layers (Ganea et al. 2018; Shimizu et al. 2021 "HNN++"; van Spengler et al. 2023
# "Poincaré ResNet"). Inputs and outputs are points of the c-ball on the last axis.
# ---------------------------------------------------------------------------------------------


def mlr_logits(x: jax.Array, z: jax.Array, r: jax.Array, c: float = 1.0) -> jax.Array:
  """HNN++ unidirectional hyperbolic MLR: signed, scaled distances to K hyperplanes.

      v_k(x) = 2‖z_k‖/√c · asinh(λ_x √c ⟨x, z_k/‖z_k‖⟩ cosh(2√c r_k) − (λ_x − 1) sinh(2√c r_k))

  The hyperplane k passes through p_k = exp_0(r_k z_k/‖z_k‖) with normal z_k transported
  there (Shimizu et al. 2021, eq. 6); x: [..., D], z: [D, K], r: [K] -> [..., K].
  """
  sc = jnp.sqrt(c)
  znorm = jnp.maximum(jnp.linalg.norm(z, axis=0), 1e-15)  # [K]
  lam = poincare.lambda_x(x, c)  # [..., 1]
  inner = (x @ z) / znorm  # [..., K]
  arg = lam * sc * inner * jnp.cosh(2 * sc * r) - (lam - 1) * jnp.sinh(2 * sc * r)
  return 2 * znorm / sc * jnp.arcsinh(arg)


def _init_z(key, shape, dtype):
  # HNN++: z ~ N(0, (2 in_dim out_dim)^-1/2)
  return jax.random.normal(key, shape, dtype) * (2 * shape[0] * shape[1]) ** -0.5


class PoincareLinear(nnx.Module):
  """Poincaré fully-connected layer (HNN++): y = w / (1 + √(1 + c‖w‖²)), w = sinh(√c v(x))/√c
  with v the MLR logits of `mlr_logits`; maps the in-ball to the out-ball."""

  def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs, c: float = 1.0,
               dtype=jnp.float32):
    if in_dim < 1 or out_dim < 1:
      raise ValueError(f"PoincareLinear needs in_dim, out_dim >= 1, got {in_dim}, {out_dim}")
    self.c = float(c)
    self.z = nnx.Param(nnx.with_partitioning(_init_z, ("embed", "mlp"))(
        rngs.params(), (in_dim, out_dim), dtype))
    self.r = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros, ("mlp",))(
        rngs.params(), (out_dim,), dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    c, sc = self.c, jnp.sqrt(self.c)
    v = mlr_logits(x, self.z[...], self.r[...], c)
    w = jnp.sinh(jnp.clip(sc * v, -40.0, 40.0)) / sc  # clip: sinh overflows float32 at ~89
    y = w / (1 + jnp.sqrt(1 + c * jnp.sum(w * w, axis=-1, keepdims=True)))
    return poincare.project(y, c)


class HyperbolicMLR(nnx.Module):
  """Hyperbolic multinomial logistic regression head: class logits of ball points."""

  def __init__(self, in_dim: int, num_classes: int, *, rngs: nnx.Rngs, c: float = 1.0,
               dtype=jnp.float32):
    if in_dim < 1 or num_classes < 1:
      raise ValueError(f"HyperbolicMLR needs in_dim, num_classes >= 1, got {in_dim}, "
                       f"{num_classes}")
    self.c = float(c)
    self.z = nnx.Param(nnx.with_partitioning(_init_z, ("embed", "classes"))(
        rngs.params(), (in_dim, num_classes), dtype))
    self.r = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros, ("classes",))(
        rngs.params(), (num_classes,), dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    return mlr_logits(x, self.z[...], self.r[...], self.c)


class PoincareBatchNorm(nnx.Module):
  """Poincaré midpoint batch norm (Lou et al. 2020 with the gyro midpoint, as Poincaré ResNet).

  Over the batch (all leading axes): mean μ = gyro midpoint, variance σ² = mean d(μ, x)²;
  x ↦ exp_β(γ/√(σ² + eps) · PT_{μ→β}(log_μ x)): re-centred at the learned point β (init 0),
  geodesic spread rescaled to the learned γ (init 1). Running statistics (geodesic
  interpolation of the mean, linear of the variance) are used with `use_running_average`.
  """

  def __init__(self, dim: int, *, rngs: nnx.Rngs | None = None, c: float = 1.0,
               momentum: float = 0.1, eps: float = 1e-5, dtype=jnp.float32):
    del rngs
    if not 0 < momentum <= 1:
      raise ValueError(f"momentum must be in (0, 1], got {momentum!r}")
    self.c, self.momentum, self.eps = float(c), float(momentum), float(eps)
    self.beta = nnx.Param(jnp.zeros((dim,), dtype))  # a ball point
    self.gamma = nnx.Param(jnp.ones((), dtype))
    self.mean = nnx.BatchStat(jnp.zeros((dim,), dtype))
    self.var = nnx.BatchStat(jnp.ones((), dtype))

  def __call__(self, x: jax.Array, use_running_average: bool = False) -> jax.Array:
    c = self.c
    flat = x.reshape(-1, x.shape[-1])
    if use_running_average:
      mu, var = self.mean[...], self.var[...]
    else:
      mu = poincare.weighted_midpoint(flat, c=c, axis=0)
      var = jnp.mean(poincare.dist(mu, flat, c) ** 2)
      m = self.momentum
      old = self.mean[...]
      self.mean[...] = jax.lax.stop_gradient(
          poincare.expmap(old, m * poincare.logmap(old, mu, c), c))
      self.var[...] = jax.lax.stop_gradient((1 - m) * self.var[...] + m * var)
    beta = self.beta[...]
    scale = self.gamma[...] / jnp.sqrt(var + self.eps)
    v = poincare.transp(mu, beta, poincare.logmap(mu, flat, c), c) * scale
    return poincare.project(poincare.expmap(beta, v, c), c).reshape(x.shape)


class MobiusResidualBlock(nnx.Module):
  """Residual block as Poincaré ResNet: h = BN(FC(relu_0(BN(FC(x))))), out = relu_0(x ⊕ h).

  relu_0 is ReLU in the tangent space at the origin (exp_0 ∘ relu ∘ log_0); the skip is
  the Möbius addition of the input and the branch. `norm=False` drops the batch norms.
  """

  def __init__(self, dim: int, *, rngs: nnx.Rngs, c: float = 1.0, norm: bool = True,
               dtype=jnp.float32):
    self.c = float(c)
    self.fc1 = PoincareLinear(dim, dim, rngs=rngs, c=c, dtype=dtype)
    self.fc2 = PoincareLinear(dim, dim, rngs=rngs, c=c, dtype=dtype)
    self.bn1 = PoincareBatchNorm(dim, c=c, dtype=dtype) if norm else None
    self.bn2 = PoincareBatchNorm(dim, c=c, dtype=dtype) if norm else None

  def _relu(self, x):
    return poincare.expmap0(jax.nn.relu(poincare.logmap0(x, self.c)), self.c)

  def __call__(self, x: jax.Array, use_running_average: bool = False) -> jax.Array:
    h = self.fc1(x)
    if self.bn1 is not None:
      h = self.bn1(h, use_running_average)
    h = self.fc2(self._relu(h))
    if self.bn2 is not None:
      h = self.bn2(h, use_running_average)
    return poincare.project(self._relu(poincare.mobius_add(x, h, self.c)), self.c)
