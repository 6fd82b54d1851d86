"""Hyperbolic layers: on the manifold, and against closed forms written out in float64 numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.geometry import poincare as pb
from jaxemb.nn import hyperbolic as hnn


def _np_madd(x, y, c):
  xy = (x * y).sum(-1, keepdims=True)
  x2, y2 = (x * x).sum(-1, keepdims=True), (y * y).sum(-1, keepdims=True)
  return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c * c * x2 * y2)


def _np_dist(x, y, c):
  return np.arccosh(1 + 2 * c * ((x - y) ** 2).sum(-1) / (
      (1 - c * (x * x).sum(-1)) * (1 - c * (y * y).sum(-1)))) / np.sqrt(c)


def _points(rng, shape, c, max_r=0.95):
  v = rng.normal(size=shape)
  v /= np.linalg.norm(v, axis=-1, keepdims=True)
  return v * rng.uniform(0, max_r, size=shape[:-1] + (1,)) / np.sqrt(c)


@pytest.mark.parametrize("c", [1.0, 0.4])
def test_mlr_logits_equal_ganea_hyperplane_distance(c):
  # Ganea et al. 2018: logit_k = λ_p‖a‖/√c asinh(2√c⟨-p ⊕ x, a⟩ / ((1 - c‖-p ⊕ x‖²)‖a‖)),
  # with HNN++'s p_k = exp_0(r_k z_k/‖z_k‖), a_k = PT_{0→p_k}(z_k) = (1 - c‖p_k‖²) z_k.
  rng = np.random.default_rng(0)
  x = _points(rng, (16, 4), c)
  z, r = rng.normal(size=(4, 3)), rng.normal(size=3) * 0.5
  want = np.zeros((16, 3))
  for k in range(3):
    unit = z[:, k] / np.linalg.norm(z[:, k])
    p = np.tanh(np.sqrt(c) * r[k]) * unit / np.sqrt(c)
    a = (1 - c * (p @ p)) * z[:, k]
    lam_p = 2 / (1 - c * (p @ p))
    sub = _np_madd(-p[None], x, c)
    na = np.linalg.norm(a)
    want[:, k] = lam_p * na / np.sqrt(c) * np.arcsinh(
        2 * np.sqrt(c) * (sub @ a) / ((1 - c * (sub * sub).sum(-1)) * na))
  with jax.enable_x64(True):
    got = hnn.mlr_logits(jnp.asarray(x), jnp.asarray(z), jnp.asarray(r), c)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_poincare_linear_closed_form_and_stays_in_ball():
  c = 0.7
  rng = np.random.default_rng(1)
  layer = hnn.PoincareLinear(4, 6, rngs=nnx.Rngs(0), c=c)
  layer.r[...] = jnp.asarray(rng.normal(size=6) * 0.3, jnp.float32)
  x = jnp.asarray(_points(rng, (8, 4), c), jnp.float32)
  y = layer(x)
  # HNN++'s defining property: y's signed distances to the coordinate hyperplanes through
  # the origin are the input's logits (the axis MLR gives 2 v_k for ‖e_k‖ = 1).
  v = hnn.mlr_logits(x, layer.z[...], layer.r[...], c)
  axes = hnn.mlr_logits(y, jnp.eye(6), jnp.zeros(6), c)
  np.testing.assert_allclose(axes, 2 * v, rtol=1e-4, atol=1e-5)
  # Far-out inputs and huge weights still land strictly inside the ball, finite gradients.
  layer.z[...] = layer.z[...] * 1e3
  edge = pb.project(jnp.asarray(rng.normal(size=(8, 4)) * 10, jnp.float32), c)
  out = layer(edge)
  assert np.all(np.sqrt(c) * np.linalg.norm(np.asarray(out, np.float64), axis=-1) < 1)
  g = jax.grad(lambda zz: jnp.sum(hnn.mlr_logits(edge, zz, layer.r[...], c)))(layer.z[...])
  assert np.all(np.isfinite(np.asarray(g)))


def test_midpoint_batch_norm_recentres_and_rescales():
  c = 1.0
  rng = np.random.default_rng(2)
  x = _points(rng, (32, 3), c, 0.9)
  bn = hnn.PoincareBatchNorm(3, c=c)
  beta = _points(rng, (3,), c, 0.5)
  bn.beta[...] = jnp.asarray(beta, jnp.float32)
  bn.gamma[...] = jnp.asarray(0.7, jnp.float32)
  out = np.asarray(bn(jnp.asarray(x, jnp.float32)), np.float64)
  # Reference statistics in float64: the gyro midpoint and the mean squared distance.
  lam = 2 / (1 - c * (x * x).sum(-1, keepdims=True))
  m = (lam * x).sum(0) / (lam - 1).sum()
  nm = np.linalg.norm(m)
  mu = np.tanh(0.5 * np.arctanh(np.sqrt(c) * nm)) * m / (np.sqrt(c) * nm)
  var = np.mean(_np_dist(mu[None], x, c) ** 2)
  # Geodesic spread about β is the input's spread about μ times γ/σ ...
  np.testing.assert_allclose(_np_dist(beta[None], out, c),
                             0.7 / np.sqrt(var + 1e-5) * _np_dist(mu[None], x, c),
                             rtol=2e-4, atol=1e-5)
  # ... and with γ = σ the map is an isometry taking μ to β: at β = 0 it is x ↦ -μ ⊕ x, and
  # the gyro midpoint (equivariant under isometries) moves to β.
  bn.gamma[...] = jnp.asarray(np.sqrt(var + 1e-5), jnp.float32)
  bn.beta[...] = jnp.zeros(3)
  np.testing.assert_allclose(bn(jnp.asarray(x, jnp.float32)), _np_madd(-mu[None], x, c),
                             rtol=1e-3, atol=1e-5)
  bn.beta[...] = jnp.asarray(beta, jnp.float32)
  out = np.asarray(bn(jnp.asarray(x, jnp.float32)), np.float64)
  lam = 2 / (1 - c * (out * out).sum(-1, keepdims=True))
  m2 = (lam * out).sum(0) / (lam - 1).sum()
  np.testing.assert_allclose(np.tanh(0.5 * np.arctanh(np.linalg.norm(m2))) * m2
                             / np.linalg.norm(m2), beta, atol=1e-4)
  # Running statistics moved towards the batch and are used at evaluation.
  assert 0 < np.linalg.norm(np.asarray(bn.mean[...])) < nm
  frozen = bn(jnp.asarray(x, jnp.float32), use_running_average=True)
  assert np.all(np.linalg.norm(np.asarray(frozen), axis=-1) < 1)
  with pytest.raises(ValueError, match="momentum"):
    hnn.PoincareBatchNorm(3, momentum=0.0)


def test_mobius_residual_block_composition_on_manifold_and_gradients():
  c = 0.5
  rng = np.random.default_rng(3)
  block = hnn.MobiusResidualBlock(4, rngs=nnx.Rngs(1), c=c, norm=False)
  x = jnp.asarray(_points(rng, (8, 4), c, 0.99), jnp.float32)
  relu0 = lambda p: pb.expmap0(jax.nn.relu(pb.logmap0(p, c)), c)  # noqa: E731
  h = block.fc2(relu0(block.fc1(x)))
  want = relu0(pb.mobius_add(x, h, c))
  np.testing.assert_allclose(block(x), want, rtol=1e-5, atol=1e-6)
  normed = hnn.MobiusResidualBlock(4, rngs=nnx.Rngs(1), c=c, norm=True)
  far = pb.project(jnp.asarray(rng.normal(size=(8, 4)) * 30, jnp.float32), c)
  for b in (block, normed):
    out = b(far)
    assert np.all(np.sqrt(c) * np.linalg.norm(np.asarray(out, np.float64), axis=-1) < 1)
  # Gradients through the normed block (it contains every op of the plain one).
  grads = nnx.grad(lambda m: jnp.sum(pb.dist0(m(far), c)))(normed)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def test_mlr_head_learns_a_hyperbolic_split():
  # Two clusters near the boundary on opposite sides: a few Adam steps separate them.
  import optax
  rng = np.random.default_rng(4)
  a = pb.project(jnp.asarray(rng.normal([0.9, 0.0], 0.03, (20, 2)), jnp.float32))
  b = pb.project(jnp.asarray(rng.normal([-0.9, 0.0], 0.03, (20, 2)), jnp.float32))
  x, y = jnp.concatenate([a, b]), jnp.asarray([0] * 20 + [1] * 20)
  head = hnn.HyperbolicMLR(2, 2, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(head)
  tx = optax.adam(0.1)
  opt = tx.init(params)
  lossf = lambda p: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
      nnx.merge(graphdef, p)(x), y).mean()
  @jax.jit
  def step(params, opt):
    u, opt = tx.update(jax.grad(lossf)(params), opt, params)
    return optax.apply_updates(params, u), opt

  for _ in range(30):
    params, opt = step(params, opt)
  pred = jnp.argmax(nnx.merge(graphdef, params)(x), -1)
  assert float(jnp.mean(pred == y)) == 1.0
  with pytest.raises(ValueError, match="num_classes"):
    hnn.HyperbolicMLR(2, 0, rngs=nnx.Rngs(0))
