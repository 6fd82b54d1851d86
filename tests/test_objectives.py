"""Losses against slow, explicit-loop numpy references (float64), plus sharding checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxemb import objectives
from jaxemb.objectives import contrastive_logits
from jaxemb.objectives import cosent
from jaxemb.objectives import get_loss
from jaxemb.objectives import info_nce
from jaxemb.objectives import mse_distillation
from jaxemb.objectives import scale_from_log
from jaxemb.objectives import sigmoid_loss

TOL = 1e-5


# ---------------------------------------------------------------------------------------------
# Slow references: plain Python loops in float64.


def _lse(xs):
  m = max(xs)
  return m + math.log(sum(math.exp(x - m) for x in xs))


def _ce(row, label, eps):
  """Cross-entropy of one logit row with a smoothed one-hot target, by hand."""
  lse = _lse(row)
  c = len(row)
  total = 0.0
  for k, x in enumerate(row):
    target = (1.0 - eps) * (k == label) + eps / c
    total -= target * (x - lse)
  return total


def ref_info_nce(q, d, scale, hard=None, symmetric=True, eps=0.0):
  q, d = np.asarray(q, np.float64), np.asarray(d, np.float64)
  b = q.shape[0]
  cands = [d[j] for j in range(b)]
  if hard is not None:
    hard = np.asarray(hard, np.float64)
    for i in range(hard.shape[0]):
      for k in range(hard.shape[1]):
        cands.append(hard[i, k])
  q2d = 0.0
  for i in range(b):
    row = [scale * float(np.dot(q[i], c)) for c in cands]
    q2d += _ce(row, i, eps)
  q2d /= b
  if not symmetric:
    return q2d
  d2q = 0.0
  for j in range(b):
    row = [scale * float(np.dot(d[j], q[i])) for i in range(b)]
    d2q += _ce(row, j, eps)
  d2q /= b
  return 0.5 * (q2d + d2q)


def ref_sigmoid(q, d, scale, bias):
  q, d = np.asarray(q, np.float64), np.asarray(d, np.float64)
  b = q.shape[0]
  total = 0.0
  for i in range(b):
    for j in range(b):
      label = 1.0 if i == j else -1.0
      z = label * (scale * float(np.dot(q[i], d[j])) + bias)
      total += -math.log(1.0 / (1.0 + math.exp(-z)))
  return total / b


def ref_cosent(a, b, scores, scale):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  n = a.shape[0]
  cos = []
  for i in range(n):
    cos.append(float(np.dot(a[i], b[i]) / (np.linalg.norm(a[i]) * np.linalg.norm(b[i]))))
  total = 1.0
  for i in range(n):
    for j in range(n):
      if scores[i] > scores[j]:
        total += math.exp(scale * (cos[j] - cos[i]))
  return math.log(total)


def ref_mse(s, t):
  s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
  total = 0.0
  for i in range(s.shape[0]):
    for k in range(s.shape[1]):
      total += (s[i, k] - t[i, k]) ** 2
  return total / s.size


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _emb(seed, *shape):
  return _unit(np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# InfoNCE.


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_info_nce_matches_reference(symmetric, k, eps):
  b, dim = 6, 5
  q, d = _emb(0, b, dim), _emb(1, b, dim)
  hard = _emb(2, b, k, dim) if k else None
  loss, metrics = info_nce(
      q, d, scale=7.0, hard_negatives=hard, symmetric=symmetric, label_smoothing=eps
  )
  expected = ref_info_nce(q, d, 7.0, hard, symmetric, eps)
  assert loss.dtype == jnp.float32 and loss.shape == ()
  np.testing.assert_allclose(loss, expected, rtol=TOL, atol=TOL)
  np.testing.assert_allclose(metrics["loss"], loss)
  assert set(metrics) == {"loss", "accuracy", "positive_sim", "negative_sim"}


def test_info_nce_metrics():
  b, dim, k = 5, 4, 3
  q, d, hard = _emb(3, b, dim), _emb(4, b, dim), _emb(5, b, k, dim)
  _, m = info_nce(q, d, hard_negatives=hard)
  cands = np.concatenate([d, hard.reshape(-1, dim)]).astype(np.float64)
  sim = q.astype(np.float64) @ cands.T
  neg = [sim[i, j] for i in range(b) for j in range(sim.shape[1]) if i != j]
  np.testing.assert_allclose(m["positive_sim"], np.mean(np.diag(sim)), atol=TOL)
  np.testing.assert_allclose(m["negative_sim"], np.mean(neg), atol=TOL)
  np.testing.assert_allclose(m["accuracy"], np.mean(sim.argmax(1) == np.arange(b)), atol=TOL)
  # Perfect retrieval: queries equal their docs, scores well apart.
  _, m = info_nce(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32))
  assert m["accuracy"] == 1.0


def test_info_nce_hard_negative_shapes_and_dtype():
  b, dim = 4, 3
  q, d = _emb(6, b, dim), _emb(7, b, dim)
  assert contrastive_logits(q, d, hard_negatives=_emb(8, b, 2, dim)).shape == (b, b + 2 * b)
  with pytest.raises(ValueError, match="hard_negatives"):
    info_nce(q, d, hard_negatives=_emb(8, b + 1, 2, dim))
  with pytest.raises(ValueError, match="docs"):
    info_nce(q, d[:3])
  with pytest.raises(ValueError, match="label_smoothing"):
    info_nce(q, d, label_smoothing=1.0)
  with pytest.raises(ValueError, match="scale"):
    info_nce(q, d, scale=0.0)
  # bf16 embeddings: loss and logits still float32, equal to the f32 loss of the same values.
  qb, db = jnp.asarray(q, jnp.bfloat16), jnp.asarray(d, jnp.bfloat16)
  loss, _ = info_nce(qb, db)
  assert loss.dtype == jnp.float32
  expected = ref_info_nce(np.asarray(qb, np.float32), np.asarray(db, np.float32), 20.0)
  np.testing.assert_allclose(loss, expected, rtol=TOL, atol=TOL)


def test_info_nce_traced_scale_gradient_matches_finite_difference():
  b, dim = 5, 4
  q, d, hard = _emb(9, b, dim), _emb(10, b, dim), _emb(11, b, 2, dim)
  log_scale = math.log(5.0)

  def f(ls):
    return info_nce(q, d, scale=scale_from_log(ls), hard_negatives=hard)[0]

  grad = jax.jit(jax.grad(f))(jnp.float32(log_scale))
  h = 1e-5  # float64 reference, so a small central step is accurate.
  fd = (
      ref_info_nce(q, d, math.exp(log_scale + h), hard)
      - ref_info_nce(q, d, math.exp(log_scale - h), hard)
  ) / (2 * h)
  assert abs(float(grad)) > 1e-3
  np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=TOL)
  # Clipped above max_scale: no gradient, scale pinned at the bound.
  assert float(jax.grad(lambda ls: scale_from_log(ls, 10.0))(jnp.float32(5.0))) == 0.0
  np.testing.assert_allclose(scale_from_log(jnp.float32(5.0), 10.0), 10.0, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Other losses.


def test_sigmoid_matches_reference():
  b, dim = 6, 5
  q, d = _emb(12, b, dim), _emb(13, b, dim)
  for scale, bias in [(10.0, -10.0), (3.0, 0.5)]:
    loss, m = sigmoid_loss(q, d, scale=scale, bias=bias)
    np.testing.assert_allclose(loss, ref_sigmoid(q, d, scale, bias), rtol=TOL, atol=TOL)
    assert set(m) == {"loss", "accuracy", "positive_sim", "negative_sim"}
  # Learnable scale and bias are differentiable through traced arrays.
  g = jax.grad(lambda s, bb: sigmoid_loss(q, d, scale=s, bias=bb)[0], argnums=(0, 1))(
      jnp.float32(10.0), jnp.float32(-10.0)
  )
  assert all(np.isfinite(x) and x != 0 for x in g)


def test_cosent_matches_reference():
  b, dim = 7, 5
  rng = np.random.default_rng(14)
  a = rng.normal(size=(b, dim)).astype(np.float32)  # unnormalised on purpose
  c = (a + rng.normal(size=(b, dim))).astype(np.float32)
  scores = np.array([0.1, 0.5, 0.5, 0.9, 0.0, 0.3, 0.7], np.float32)  # includes a tie
  for scale in [1.0, 20.0]:
    loss, m = cosent(a, c, scores, scale=scale)
    np.testing.assert_allclose(loss, ref_cosent(a, c, scores, scale), rtol=TOL, atol=TOL)
    assert 0.0 <= float(m["pair_accuracy"]) <= 1.0
  g = jax.grad(lambda x: cosent(x, c, scores)[0])(a)
  assert np.all(np.isfinite(g)) and np.any(g != 0)
  # No ordered pairs: loss is log(1) = 0.
  loss, _ = cosent(a, c, np.ones(b, np.float32))
  assert float(loss) == 0.0
  with pytest.raises(ValueError, match="scores"):
    cosent(a, c, scores[:3])


def test_mse_distillation_matches_reference():
  s, t = _emb(15, 4, 6), _emb(16, 4, 6)
  loss, m = mse_distillation(jnp.asarray(s, jnp.bfloat16), t)
  np.testing.assert_allclose(
      loss, ref_mse(np.asarray(jnp.asarray(s, jnp.bfloat16), np.float32), t), rtol=TOL, atol=TOL
  )
  assert loss.dtype == jnp.float32 and m["loss"] == loss
  with pytest.raises(ValueError, match="teacher"):
    mse_distillation(s, t[:, :3])


def test_registry():
  assert get_loss("info_nce") is info_nce
  assert set(objectives.LOSSES) == {"info_nce", "sigmoid", "cosent", "mse_distillation"}
  with pytest.raises(ValueError, match="info_nce"):
    get_loss("triplet")


# ---------------------------------------------------------------------------------------------
# Sharding: the loss sees the global batch, so negatives are cross-device.


def _shard(mesh, *xs):
  return [jax.device_put(x, NamedSharding(mesh, P("data", *([None] * (x.ndim - 1))))) for x in xs]


def test_sharded_loss_equals_unsharded_with_cross_device_negatives():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  b, dim = 16, 8  # 2 examples per device
  q, d = _emb(17, b, dim), _emb(18, b, dim)
  # Query 0 (device 0) has its hardest competitor on the last device: doc 15 is nearly q0.
  d[15] = _unit(q[0] + 0.05 * d[15])
  hard = _emb(19, b, 2, dim)
  qs, ds, hs = _shard(mesh, q, d, hard)
  assert qs.sharding.spec == P("data", None)

  for kwargs in [{}, {"hard_negatives": hard}]:
    plain, _ = info_nce(q, d, **kwargs)
    sharded_kwargs = {"hard_negatives": hs} if kwargs else {}
    sharded, _ = jax.jit(info_nce)(qs, ds, **sharded_kwargs)
    np.testing.assert_allclose(sharded, plain, rtol=1e-6, atol=1e-6)

  logits = jax.jit(contrastive_logits)(qs, ds)
  assert logits.shape == (b, b)  # global, not per-device [2, 2]
  assert int(jnp.argmax(logits[0])) == 15  # query on device 0 vs doc on device 7

  # Per-device losses (local negatives only) differ: the cross-device negative matters.
  sharded, m = jax.jit(info_nce)(qs, ds)
  local = np.mean([float(info_nce(q[i : i + 2], d[i : i + 2])[0]) for i in range(0, b, 2)])
  assert abs(float(sharded) - local) > 0.1
  assert float(m["accuracy"]) < 1.0

  scores = jnp.arange(b, dtype=jnp.float32)
  for fn in [sigmoid_loss, lambda x, y: cosent(x, y, scores), mse_distillation]:
    np.testing.assert_allclose(jax.jit(fn)(qs, ds)[0], fn(q, d)[0], rtol=1e-6, atol=1e-6)
