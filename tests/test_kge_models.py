"""KGE interaction models against slow float64 numpy formulas (complex numbers via numpy)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb import functional
from jaxemb.nn import kge

E, R, D = 11, 5, 6


def _complex(x):
  x = np.asarray(x, np.float64)
  d = x.shape[-1] // 2
  return x[..., :d] + 1j * x[..., d:]


def _slow_score(model: kge.KGEModel, h: int, r: int, t: int) -> float:
  """One triple, scalar loops in float64 (independent of `kge.interact`)."""
  ent = np.asarray(model.entity[...], np.float64)
  rel = np.asarray(model.relation[...], np.float64)
  name = model.interaction
  if name == "transe":
    v = ent[h] + rel[r] - ent[t]
    return -float(sum(abs(x) ** model.p for x in v) ** (1.0 / model.p))
  if name == "distmult":
    return float(sum(ent[h][i] * rel[r][i] * ent[t][i] for i in range(D)))
  if name == "complex":
    eh, er, et = _complex(ent[h]), _complex(rel[r]), _complex(ent[t])
    return float(sum(eh[i] * er[i] * np.conj(et[i]) for i in range(D)).real)
  if name == "rotate":
    eh, er, et = _complex(ent[h]), _complex(rel[r]), _complex(ent[t])
    return -math.sqrt(sum(abs(eh[i] * er[i] - et[i]) ** 2 for i in range(D)))
  if name == "nfe":
    hm, hs = ent[h][:D], ent[h][D:]
    rm, rs = rel[r][:D], rel[r][D:]
    tm, ts = ent[t][:D], ent[t][D:]
    w2 = sum((rs[i] * hm[i] + rm[i] - tm[i]) ** 2 + (abs(rs[i] * hs[i]) - abs(ts[i])) ** 2
             for i in range(D))
    return model.gamma - w2
  if name == "tucker":  # BatchNorms at their running statistics (evaluation)
    core = np.asarray(model.core[...], np.float64)
    dr = rel.shape[1]
    eh = _slow_norm(model.norm_h, ent[h])
    x = [sum(core[i, j, k] * eh[i] * rel[r][j] for i in range(D) for j in range(dr))
         for k in range(D)]
    return float(sum(v * ent[t][k] for k, v in enumerate(_slow_norm(model.norm_hr, x))))
  raise AssertionError(name)


CASES = [("transe", dict(p=1)), ("transe", dict(p=2)), ("distmult", {}), ("complex", {}),
         ("rotate", {}), ("tucker", dict(relation_dim=4)), ("nfe", dict(gamma=2.5))]


def _slow_norm(norm, x):
  """BatchNorm1d in evaluation: (x_i - mean_i) / sqrt(var_i + eps) * scale_i + bias_i."""
  v = [np.float64(a) for a in (norm.mean[...], norm.var[...], norm.scale[...], norm.bias[...])]
  return [(x[i] - v[0][i]) / math.sqrt(v[1][i] + norm.eps) * v[2][i] + v[3][i]
          for i in range(len(x))]


def _model(name, kwargs, seed=0):
  model = kge.KGEModel(name, E, R, D, rngs=nnx.Rngs(seed), **kwargs)
  if name == "tucker":  # non-trivial norms: running statistics, scale and bias away from 0 / 1
    rng = np.random.default_rng(seed + 100)
    for norm in (model.norm_h, model.norm_hr):
      norm.mean[...] = jnp.asarray(rng.normal(0, 0.3, D), jnp.float32)
      norm.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, D), jnp.float32)
      norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, D), jnp.float32)
      norm.bias[...] = jnp.asarray(rng.normal(0, 0.2, D), jnp.float32)
  return model


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}{k}" for n, k in CASES])
def test_scores_match_slow_formula(name, kwargs):
  model = _model(name, kwargs)
  rng = np.random.default_rng(1)
  h, r, t = rng.integers(0, E, 20), rng.integers(0, R, 20), rng.integers(0, E, 20)
  got = np.asarray(model.score_hrt(jnp.asarray(h), jnp.asarray(r), jnp.asarray(t)))
  want = np.array([_slow_score(model, *x) for x in zip(h, r, t)])
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  # 1-N scoring: every tail, every head.
  all_t = np.asarray(model.score_t(jnp.asarray(h[:4]), jnp.asarray(r[:4])))
  all_h = np.asarray(model.score_h(jnp.asarray(r[:4]), jnp.asarray(t[:4])))
  assert all_t.shape == all_h.shape == (4, E)
  for b in range(4):
    for e in range(E):
      np.testing.assert_allclose(all_t[b, e], _slow_score(model, h[b], r[b], e), rtol=2e-5,
                                 atol=2e-5)
      np.testing.assert_allclose(all_h[b, e], _slow_score(model, e, r[b], t[b]), rtol=2e-5,
                                 atol=2e-5)


def test_initialisation_follows_pykeen_defaults():
  n, d = 2000, 32
  rngs = nnx.Rngs(0)
  transe = kge.KGEModel("transe", n, 50, d, rngs=rngs)
  np.testing.assert_allclose(np.linalg.norm(transe.entity[...], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(transe.relation[...], axis=1), 1.0, rtol=1e-5)
  rotate = kge.KGEModel("rotate", n, 50, d, rngs=rngs)
  ent = np.asarray(rotate.entity[...])
  assert ent.shape == (n, 2 * d)  # d complex dimensions
  bound = math.sqrt(3.0 / d)  # xavier_uniform over (d, 2): fan_out 2d
  assert np.abs(ent).max() <= bound and np.abs(ent).max() > 0.95 * bound
  np.testing.assert_allclose(np.abs(_complex(rotate.relation[...])), 1.0, rtol=1e-5)
  complex_ = kge.KGEModel("complex", n, 50, d, rngs=rngs)
  assert abs(np.std(complex_.entity[...]) - 1.0) < 0.02
  tucker = kge.KGEModel("tucker", n, 50, d, relation_dim=8, rngs=rngs)
  assert abs(np.std(tucker.entity[...]) - math.sqrt(2.0 / d)) < 0.01
  assert tucker.core[...].shape == (d, 8, d) and np.abs(tucker.core[...]).max() <= 1.0
  nfe = kge.KGEModel("nfe", n, 50, d, rngs=rngs)
  assert np.abs(nfe.entity[...]).max() <= 0.1


def test_constrain_projects_like_pykeen():
  rng = np.random.default_rng(0)
  params = {"entity": jnp.asarray(rng.normal(size=(5, 8)), jnp.float32),
            "relation": jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)}
  out = kge.constrain("transe", params)
  np.testing.assert_allclose(np.linalg.norm(out["entity"], axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(out["relation"], params["relation"])
  out = kge.constrain("rotate", params)
  z = _complex(params["relation"])
  np.testing.assert_allclose(_complex(out["relation"]), z / np.abs(z), rtol=1e-5)
  np.testing.assert_array_equal(out["entity"], params["entity"])


def test_tables_carry_logical_axis_names():
  model = _model("rotate", {})
  assert model.entity.get_metadata()["out_sharding"] == ("entity", "embed")
  assert model.relation.get_metadata()["out_sharding"] == ("relation", "embed")


def test_tucker_dropout_only_with_key():
  # Without norms: a training call would move their running statistics (tested below).
  model = kge.KGEModel("tucker", E, R, D, batch_norm=False, rngs=nnx.Rngs(0))
  h, r, t = jnp.arange(4), jnp.arange(4) % R, jnp.arange(4) + 3
  plain = model.score_hrt(h, r, t)
  dropped = model.score_hrt(h, r, t, dropout_key=jax.random.key(0))
  assert not np.allclose(plain, dropped)
  np.testing.assert_array_equal(plain, model.score_hrt(h, r, t))


def test_batch_norm_trains_as_pytorch_batchnorm1d():
  """Training normalises by batch mean / biased variance over every leading axis and moves the
  running statistics by momentum 0.1 with the unbiased variance (torch.nn.BatchNorm1d's
  documented update); evaluation then uses the running ones."""
  rng = np.random.default_rng(3)
  x = rng.normal(1.0, 2.0, (4, 3, D))
  norm = kge.BatchNorm1d(D)
  norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, D), jnp.float32)
  norm.bias[...] = jnp.asarray(rng.normal(0, 0.2, D), jnp.float32)
  got = np.asarray(norm(jnp.asarray(x, jnp.float32), train=True))
  flat = x.reshape(-1, D)
  n = flat.shape[0]
  scale, bias = np.float64(norm.scale[...]), np.float64(norm.bias[...])
  for i in range(D):
    col = flat[:, i]
    mean = sum(col) / n
    var = sum((c - mean) ** 2 for c in col) / n
    want = (x[..., i] - mean) / math.sqrt(var + 1e-5) * scale[i] + bias[i]
    np.testing.assert_allclose(got[..., i], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.mean[...][i], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.var[...][i], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
  evaluated = np.asarray(norm(jnp.asarray(x, jnp.float32), train=False))
  np.testing.assert_allclose(evaluated.reshape(-1, D), np.array(
      [_slow_norm(norm, row) for row in flat]), rtol=1e-5, atol=1e-5)


def test_tucker_norms_train_on_batch_statistics():
  model = _model("tucker", {}, seed=1)
  model.dropout = (0.0, 0.0, 0.0)  # isolate the norms
  h, r, t = jnp.arange(6) % E, jnp.arange(6) % R, (jnp.arange(6) + 3) % E
  before = jax.tree.map(np.asarray, functional.model_state(model))
  evaluated = model.score_hrt(h, r, t)
  np.testing.assert_array_equal(  # evaluation leaves the running statistics alone
      np.asarray(model.norm_h.mean[...]), before["norm_h"]["mean"])
  trained = model.score_hrt(h, r, t, dropout_key=jax.random.key(0))
  assert not np.allclose(evaluated, trained)
  assert not np.allclose(np.asarray(model.norm_h.mean[...]), before["norm_h"]["mean"])
  assert not np.allclose(np.asarray(model.norm_hr.var[...]), before["norm_hr"]["var"])
  plain = kge.KGEModel("tucker", E, R, D, batch_norm=False, rngs=nnx.Rngs(0))
  assert plain.norm_h is None and functional.model_state(plain) == {}


def test_bad_options_raise():
  with pytest.raises(ValueError, match="interaction"):
    kge.KGEModel("transh", E, R, D, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="p must be 1 or 2"):
    kge.KGEModel("transe", E, R, D, p=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="dim"):
    kge.KGEModel("transe", E, R, 0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="unknown model option"):
    kge.build({"interaction": "transe", "dim": 4, "depth": 2}, E, R, nnx.Rngs(0))


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}{k}" for n, k in CASES])
def test_matmul_one_to_all_matches_slow_formula(name, kwargs):
  model = _model(name, kwargs, seed=2)
  h, r, t = jnp.array([0, 3, 7]), jnp.array([1, 4, 0]), jnp.array([2, 2, 9])
  all_t = np.asarray(model.score_t_matmul(h, r))
  all_h = np.asarray(model.score_h_matmul(r, t))
  for b in range(3):
    for e in range(E):
      np.testing.assert_allclose(all_t[b, e], _slow_score(model, int(h[b]), int(r[b]), e),
                                 rtol=1e-4, atol=1e-4)
      np.testing.assert_allclose(all_h[b, e], _slow_score(model, e, int(r[b]), int(t[b])),
                                 rtol=1e-4, atol=1e-4)
