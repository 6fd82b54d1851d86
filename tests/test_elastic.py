"""Elastic objectives (Matryoshka, 2DMSE, Starbucks) against slow float64 numpy references."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxemb.objectives import chunked_contrastive_value_and_grad
from jaxemb.objectives import info_nce
from jaxemb.objectives import elastic

TOL = 2e-5


# ---------------------------------------------------------------------------------------------
# References: explicit loops in float64.


def _lse(xs):
  m = max(xs)
  return m + math.log(sum(math.exp(x - m) for x in xs))


def _norm(v):
  v = np.asarray(v, np.float64)
  return v / max(math.sqrt(sum(x * x for x in v)), 1e-12)


def ref_trunc(x, dim):
  """Truncate each row (last axis) to `dim` entries and normalise, by hand."""
  x = np.asarray(x, np.float64)
  flat = x.reshape(-1, x.shape[-1])
  out = np.array([_norm(row[:dim]) for row in flat])
  return out.reshape(*x.shape[:-1], dim)


def ref_ce_rows(q, cands, scale):
  """Mean over i of CE(scale * q_i . cands, label i)."""
  total = 0.0
  for i in range(len(q)):
    row = [scale * float(np.dot(q[i], c)) for c in cands]
    total += _lse(row) - row[i]
  return total / len(q)


def ref_info_nce(q, d, scale, symmetric=True, hard=None):
  cands = list(d) + ([] if hard is None else [h for row in hard for h in row])
  loss = ref_ce_rows(q, cands, scale)
  if symmetric:
    loss = 0.5 * (loss + ref_ce_rows(d, list(q), scale))
  return loss


def ref_kl_rows(student_rows, teacher_rows):
  """Batch-mean KL(softmax(teacher) || softmax(student)) over rows."""
  total = 0.0
  for s, t in zip(student_rows, teacher_rows):
    ls, lt = _lse(list(s)), _lse(list(t))
    for a, b in zip(s, t):
      pt = math.exp(b - lt)
      total += pt * ((b - lt) - (a - ls))
  return total / len(student_rows)


def _emb(seed, *shape):
  return np.asarray(np.random.default_rng(seed).normal(size=shape), np.float32)


# ---------------------------------------------------------------------------------------------
# Matryoshka.


def test_matryoshka_matches_reference():
  q, d, hn = _emb(0, 6, 16), _emb(1, 6, 16), _emb(2, 6, 2, 16)
  dims, weights = (16, 8, 3), (1.0, 0.5, 2.0)
  loss_fn = functools.partial(info_nce, scale=20.0)
  loss, metrics = jax.jit(lambda q, d, hn: elastic.matryoshka(
      loss_fn, q, d, dims, weights, hard_negatives=hn))(q, d, hn)
  expected = 0.0
  for dim, w in zip(dims, weights):
    part = ref_info_nce(ref_trunc(q, dim), ref_trunc(d, dim), 20.0, hard=ref_trunc(hn, dim))
    np.testing.assert_allclose(metrics[f"loss@d{dim}"], part, rtol=TOL, atol=TOL)
    expected += w * part
  np.testing.assert_allclose(loss, expected, rtol=TOL, atol=TOL)
  assert "accuracy@d8" in metrics


def test_matryoshka_subset_of_dims_per_step():
  q, d = _emb(3, 4, 12), _emb(4, 4, 12)
  dims = (12, 6, 4, 2)
  loss_fn = functools.partial(info_nce, scale=10.0)
  key = jax.random.key(7)
  loss, _ = jax.jit(lambda q, d: elastic.matryoshka(loss_fn, q, d, dims, n_dims_per_step=2,
                                                     key=key))(q, d)
  chosen = np.asarray(jax.random.permutation(key, len(dims))[:2])
  expected = sum(ref_info_nce(ref_trunc(q, dims[i]), ref_trunc(d, dims[i]), 10.0)
                 for i in chosen)
  np.testing.assert_allclose(loss, expected, rtol=TOL, atol=TOL)
  # Different keys pick different subsets.
  perms = jax.jit(jax.vmap(lambda k: jax.random.permutation(k, 4)[:2]))(
      jax.random.split(jax.random.key(1), 6))
  subsets = {tuple(sorted(row)) for row in np.asarray(perms).tolist()}
  assert len(subsets) > 1


def _mlp_embed(params, batch):
  h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
  return h @ params["w2"]


def test_matryoshka_with_gradcache_equals_plain():
  rng = np.random.default_rng(5)
  params = {"w1": jnp.asarray(rng.normal(size=(10, 32)) * 0.3, jnp.float32),
            "b1": jnp.asarray(rng.normal(size=(32,)) * 0.1, jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(32, 16)) * 0.3, jnp.float32)}
  qb = {"x": jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)}
  db = {"x": jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)}
  loss_fn = functools.partial(elastic.matryoshka, functools.partial(info_nce, scale=20.0),
                              dims=(16, 8, 4), weights=(1.0, 1.0, 0.5))

  def plain(p):
    return loss_fn(_mlp_embed(p, qb), _mlp_embed(p, db))

  (loss, _), grads = jax.jit(jax.value_and_grad(plain, has_aux=True))(params)
  (c_loss, c_metrics), c_grads = jax.jit(lambda p: chunked_contrastive_value_and_grad(
      _mlp_embed, p, qb, db, loss_fn=loss_fn, chunk_size=4))(params)
  np.testing.assert_allclose(c_loss, loss, rtol=1e-5, atol=1e-6)
  assert "loss@d4" in c_metrics
  for name in params:
    np.testing.assert_allclose(c_grads[name], grads[name], rtol=1e-4, atol=1e-6)
  assert float(jnp.max(jnp.abs(grads["w2"]))) > 0  # the comparison is not between zeros


def test_matryoshka_bad_input():
  q = jnp.ones((2, 8))
  loss_fn = functools.partial(info_nce, scale=20.0)
  with pytest.raises(ValueError, match="dims contains 9"):
    elastic.matryoshka(loss_fn, q, q, (9,))
  with pytest.raises(ValueError, match="weights has 1 entries"):
    elastic.matryoshka(loss_fn, q, q, (8, 4), (1.0,))
  with pytest.raises(ValueError, match="needs a PRNG key"):
    elastic.matryoshka(loss_fn, q, q, (8, 4), n_dims_per_step=1)


# ---------------------------------------------------------------------------------------------
# 2DMSE.


def ref_embedding_kl(student, teacher, temp):
  total = 0.0
  for s, t in zip(student, teacher):
    total += ref_kl_rows([s / temp], [t / temp])
  return temp * total / len(student)


@pytest.mark.parametrize("n_layers,weighting", [(1, "linear"), (2, "log"), (-1, "uniform")])
def test_two_d_matryoshka_matches_reference(n_layers, weighting):
  num_layers, b, dim = 4, 5, 12
  ql, dl = _emb(10, num_layers, b, dim), _emb(11, num_layers, b, dim)
  dims, weights = (12, 6, 3), (1.0, 0.7, 0.3)
  scale, temp = 20.0, 0.3
  loss_fn = functools.partial(info_nce, scale=scale)
  key = jax.random.key(3)
  loss, metrics = jax.jit(lambda a, b: elastic.two_d_matryoshka(
      loss_fn, a, b, dims, key, weights, n_layers_per_step=n_layers,
      layer_weighting=weighting, kl_weight=0.5))(ql, dl)
  n = num_layers - 1 if n_layers == -1 else n_layers
  layers, last_dim, prior_dims = (np.asarray(x) for x in elastic.sample_2d(
      key, num_layers, len(dims), n))
  assert len(set(layers.tolist())) == n and all(0 <= l < num_layers - 1 for l in layers)

  def m(layer, di):
    return weights[di] * ref_info_nce(ref_trunc(ql[layer], dims[di]),
                                      ref_trunc(dl[layer], dims[di]), scale)

  w = {"linear": lambda l: 1 / (1 + l), "log": lambda l: 1 / (1 + math.log(1 + l)),
       "uniform": lambda l: 1.0}[weighting]
  last_full = ref_trunc(np.concatenate([ql[-1], dl[-1]]), dim)
  expected = m(num_layers - 1, int(last_dim))
  kl = 0.0
  for layer, di in zip(layers, prior_dims):
    expected += w(int(layer)) / n * m(int(layer), int(di))
    kl += ref_embedding_kl(ref_trunc(np.concatenate([ql[layer], dl[layer]]), dim), last_full, temp)
  expected += 0.5 * kl
  np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(loss, expected, rtol=TOL, atol=TOL)
  assert metrics["dim"] == dims[int(last_dim)] and metrics["layer"] == layers[0]


def test_two_d_matryoshka_draws_vary_and_gradients_reach_only_drawn_layers():
  ql, dl = _emb(12, 5, 4, 8), _emb(13, 5, 4, 8)
  loss_fn = functools.partial(info_nce, scale=20.0)
  sample = jax.jit(jax.vmap(lambda k: elastic.sample_2d(k, 5, 3, 1)))
  layers, last_dims, _ = sample(jax.random.split(jax.random.key(0), 20))
  draws = set(zip(np.asarray(layers)[:, 0].tolist(), np.asarray(last_dims).tolist()))
  assert len({d[0] for d in draws}) > 1 and len({d[1] for d in draws}) > 1
  key = jax.random.key(1)
  grad = jax.jit(jax.grad(
      lambda a: elastic.two_d_matryoshka(loss_fn, a, dl, (8, 4, 2), key)[0]))(ql)
  layer = int(elastic.sample_2d(key, 5, 3, 1)[0][0])
  nonzero = [i for i in range(5) if float(jnp.max(jnp.abs(grad[i]))) > 0]
  assert nonzero == sorted({layer, 4})


def test_two_d_matryoshka_bad_input():
  loss_fn = functools.partial(info_nce, scale=20.0)
  x = jnp.ones((3, 2, 8))
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="num_layers, B, D"):
    elastic.two_d_matryoshka(loss_fn, x[0], x[0], (8,), key)
  with pytest.raises(ValueError, match="n_layers_per_step=3"):
    elastic.two_d_matryoshka(loss_fn, x, x, (8,), key, n_layers_per_step=3)
  with pytest.raises(ValueError, match="layer_weighting='cubic'"):
    elastic.two_d_matryoshka(loss_fn, x, x, (8,), key, layer_weighting="cubic")


# ---------------------------------------------------------------------------------------------
# Starbucks.


def ref_logits(q, cands, scale):
  return [[scale * float(np.dot(qi, c)) for c in cands] for qi in q]


@pytest.mark.parametrize("renormalize,with_hard", [(True, False), (False, True)])
def test_starbucks_matches_reference(renormalize, with_hard):
  num_layers, b, dim, scale = 4, 5, 12, 20.0
  ql, dl = _emb(20, num_layers, b, dim), _emb(21, num_layers, b, dim)
  hn = _emb(22, num_layers, b, 2, dim) if with_hard else None
  pairs = ((1, 3), (2, 6), (-1, 8), (3, 12))  # the last is the full size: skipped
  loss, metrics = jax.jit(lambda a, c, h: elastic.starbucks(
      a, c, pairs, scale=scale, kl_weight=0.7, full_weight=2.5, hard_negatives=h,
      renormalize=renormalize))(ql, dl, hn)

  def emb(x, layer, d):
    return ref_trunc(x[layer], d) if renormalize else ref_trunc(x[layer], dim)[..., :d]

  def cands(layer, d):
    out = list(emb(dl, layer, d))
    if with_hard:
      out += [h for row in emb(hn, layer, d) for h in row]
    return out

  full_q = emb(ql, -1, dim)
  full_logits = ref_logits(full_q, cands(-1, dim), scale)
  expected = ref_ce_rows(full_q, cands(-1, dim), scale)
  np.testing.assert_allclose(metrics["loss_full"], expected, rtol=TOL, atol=TOL)
  expected *= 2.5  # full_weight
  for layer, d in pairs[:3]:
    q = emb(ql, layer, d)
    ce = ref_ce_rows(q, cands(layer, d), scale)
    kl = ref_kl_rows(ref_logits(q, cands(layer, d), scale), full_logits)
    tag = f"L{layer % num_layers}_d{d}"
    np.testing.assert_allclose(metrics[f"loss@{tag}"], ce, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(metrics[f"kl@{tag}"], kl, rtol=1e-4, atol=1e-5)
    expected += ce + 0.7 * kl
  assert "loss@L3_d12" not in metrics
  np.testing.assert_allclose(loss, expected, rtol=TOL, atol=TOL)


def test_starbucks_full_scores_are_detached_in_kl():
  ql, dl = _emb(30, 3, 4, 8), _emb(31, 3, 4, 8)
  # ce weight 0 is not an option, so compare the gradient of the KL-only part: with
  # kl_weight=1 minus kl_weight=0 the last layer gets no gradient from the KL term.
  grad = jax.jit(jax.vmap(jax.grad(
      lambda a, w: elastic.starbucks(a, dl, ((0, 4),), kl_weight=w)[0]), in_axes=(None, 0)))
  g1, g0 = grad(ql, jnp.asarray([1.0, 0.0]))
  np.testing.assert_allclose(g1[-1], g0[-1], atol=1e-7)
  assert float(jnp.max(jnp.abs(g1[0] - g0[0]))) > 1e-6


def test_starbucks_bad_pairs():
  x = jnp.ones((3, 2, 8))
  with pytest.raises(ValueError, match=r"pair \(3, 4\): layer out of range"):
    elastic.starbucks(x, x, ((3, 4),))
  with pytest.raises(ValueError, match=r"pair \(1, 9\): dim out of range"):
    elastic.starbucks(x, x, ((1, 9),))
  with pytest.raises(ValueError, match="pairs is empty"):
    elastic.starbucks(x, x, ())


def test_layer_objectives_on_a_batch_sharded_over_8_devices():
  """Under jit with the batch axis sharded over devices, the losses equal the unsharded ones."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  ql, dl = _emb(40, 3, 16, 8), _emb(41, 3, 16, 8)
  put = lambda x: jax.device_put(x, NamedSharding(mesh, P(None, "data", None)))
  loss_fn = functools.partial(info_nce, scale=20.0)
  key = jax.random.key(2)

  @jax.jit
  def both(a, b):
    return (elastic.two_d_matryoshka(loss_fn, a, b, (8, 4), key)[0],
            elastic.starbucks(a, b, ((0, 2), (1, 4)))[0])

  sharded = both(put(ql), put(dl))
  plain = both(ql, dl)
  np.testing.assert_allclose(sharded, plain, rtol=1e-5)
