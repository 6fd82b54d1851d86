"""Embedding tables against slow numpy lookups; hashing determinism and uniformity; OptEmbed."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from jaxemb.nn import tables as T

CARDS = [3, 50, 1000, 7, 2]


def _ids(n=32, seed=0, cards=CARDS):
  rng = np.random.default_rng(seed)
  return np.stack([rng.integers(0, c, n) for c in cards], axis=1).astype(np.int32)


def _py_fmix32(x: int) -> int:
  """murmur3 fmix32 in Python integers (independent of numpy/jnp wrap-around)."""
  m = 0xFFFFFFFF
  x &= m
  x ^= x >> 16
  x = (x * 0x85EBCA6B) & m
  x ^= x >> 13
  x = (x * 0xC2B2AE35) & m
  return x ^ (x >> 16)


def _py_hash(i: int, salt: int) -> int:
  m = 0xFFFFFFFF
  s = _py_fmix32((salt * 0x9E3779B9 + 0x7F4A7C15) & m)
  return _py_fmix32((i & m) ^ s)


def test_hash_matches_python_reference_in_numpy_and_jnp():
  ids = np.array([0, 1, 2, 12345, 2**31 - 1, 2**32 - 1, 987654321], np.uint64)
  for salt in (0, 1, 1009, 2**31 + 5):
    want = np.array([_py_hash(int(i), salt) for i in ids], np.uint64)
    np.testing.assert_array_equal(np.asarray(T.hash_ids(ids, salt, np), np.uint64), want)
    np.testing.assert_array_equal(np.asarray(T.hash_ids(ids.astype(np.uint32), salt),
                                             np.uint64), want)


def test_hash_same_in_a_fresh_process():
  code = ("import numpy as np; from jaxemb.nn import tables as T; "
          "print(list(T.hash_rows(np.arange(20), 77, 1000, np)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env={"JAX_PLATFORMS": "cpu", "PATH": ""}).stdout
  assert out.strip() == str(list(T.hash_rows(np.arange(20), 77, 1000, np)))


@pytest.mark.parametrize("salt", [0, 3, 1009 * 25 + 1])
@pytest.mark.parametrize("buckets", [97, 1024])
def test_hash_uniform_chi_square(salt, buckets):
  # sequential ids are the adversarial case for a weak hash (ids modulo buckets are periodic)
  rows = T.hash_rows(np.arange(200_000), salt, buckets, np)
  counts = np.bincount(rows, minlength=buckets)
  assert counts.sum() == 200_000 and rows.min() >= 0 and rows.max() < buckets
  assert stats.chisquare(counts).pvalue > 1e-4
  # different salts are (close to) independent: joint counts over a 16x16 grid
  other = T.hash_rows(np.arange(200_000), salt + 1, 16, np)
  joint = np.histogram2d(rows % 16, other, bins=16)[0]
  assert stats.chi2_contingency(joint).pvalue > 1e-4


def test_identity_probe_is_not_uniform_so_the_test_can_fail():
  counts = np.bincount((np.arange(200_000) * 1024) % 1024, minlength=1024)
  assert stats.chisquare(counts).pvalue < 1e-4


def _table(m, name="table"):
  return np.asarray(getattr(m, name)[...], np.float64)


def test_full_tables_vs_numpy():
  m = T.FullTables(CARDS, 8, rngs=nnx.Rngs(0))
  ids = _ids()
  table, out = _table(m), np.asarray(m(ids))
  off = 0
  for f, c in enumerate(CARDS):
    for b in range(ids.shape[0]):
      np.testing.assert_allclose(out[b, f], table[off + ids[b, f]], rtol=1e-6)
    off += c
  assert m.num_params == sum(CARDS) * 8


def test_hashed_tables_vs_numpy():
  rows = [3, 10, 100, 4, 2]
  m = T.HashedTables(CARDS, 8, rows, num_hashes=3, rngs=nnx.Rngs(1))
  ids = _ids()
  table, out = _table(m), np.asarray(m(ids))
  want = np.zeros_like(out, np.float64)
  off = 0
  for f, (c, r) in enumerate(zip(CARDS, rows)):
    for b in range(ids.shape[0]):
      if c <= r:
        want[b, f] = table[off + ids[b, f]]
      else:
        for k in range(3):
          want[b, f] += table[off + _py_hash(int(ids[b, f]), f * 1009 + k) % r]
    off += min(c, r)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
  assert m.num_params == (3 + 10 + 100 + 4 + 2) * 8


@pytest.mark.parametrize("combine", ["mult", "concat"])
def test_qr_tables_vs_numpy(combine):
  buckets = [2, 8, 40, 7, 5]
  m = T.QRTables(CARDS, 8, buckets, combine=combine, rngs=nnx.Rngs(2))
  ids = _ids()
  q, r, out = _table(m, "q_table"), _table(m, "r_table"), np.asarray(m(ids))
  qo = ro = 0
  for f, c in enumerate(CARDS):
    mb = min(buckets[f], c)
    nq = -(-c // mb)
    for b in range(ids.shape[0]):
      qe, re = q[qo + ids[b, f] // mb], r[ro + ids[b, f] % mb]
      want = qe * re if combine == "mult" else np.concatenate([qe, re])
      np.testing.assert_allclose(out[b, f], want, rtol=1e-5, atol=1e-6)
    qo += nq
    ro += mb
  width = 8 if combine == "mult" else 4
  assert m.num_params == (qo + ro) * width


def test_unified_tables_vs_numpy_with_per_feature_probes():
  probes = [1, 2, 4, 2, 1]
  m = T.UnifiedTables(CARDS, 8, 61, probes=probes, rngs=nnx.Rngs(3))
  ids = _ids()
  table, out = _table(m), np.asarray(m(ids))
  assert table.shape[1] == 2 and m.num_params == 61 * 2
  for f in range(len(CARDS)):
    for b in range(ids.shape[0]):
      parts = [table[_py_hash(int(ids[b, f]), f * 1009 + k + 7919) % 61]
               for k in range(probes[f])]
      want = np.concatenate(parts + [np.zeros(8 - 2 * probes[f])])
      np.testing.assert_allclose(out[b, f], want, rtol=1e-6)


def test_optembed_masks_respected_and_vs_numpy():
  m = T.OptEmbedTables(CARDS, 8, rngs=nnx.Rngs(4))
  # a threshold between the rows' importances prunes some rows of field 2
  imp = np.asarray(m.importance())[:sum(CARDS)]
  field2 = imp[53:1053]
  m.thresholds[...] = jnp.array([0.0, 0.0, float(np.median(field2)), 0.0, 0.0])
  ids = _ids(64)
  dims = np.array([1, 8, 3, 5, 2])
  out = np.asarray(m(ids, dims))
  table = _table(m)
  offsets = np.concatenate([[0], np.cumsum(CARDS)[:-1]])
  for f in range(len(CARDS)):
    for b in range(ids.shape[0]):
      row = offsets[f] + ids[b, f]
      keep = f != 2 or imp[row] > np.median(field2)
      want = table[row] * keep * (np.arange(8) < dims[f])
      np.testing.assert_allclose(out[b, f], want, rtol=1e-6)
  kept = m.kept_rows()
  assert kept[2] == (field2 > np.median(field2)).sum() and kept[1] == 50
  # the retrain model with the search's dims and the fixed row mask gives the same values
  keep = m.keep_mask()
  r = T.OptEmbedTables(CARDS, 8, dims=dims, keep_rows=keep, rngs=nnx.Rngs(4))
  np.testing.assert_allclose(np.asarray(r(ids)), out, rtol=1e-6)
  assert r.num_params == int((kept * dims).sum())
  # the fixed mask is state, not a trainable parameter
  assert isinstance(r.keep_rows, T.RowMask) and not isinstance(r.keep_rows, nnx.Param)
  assert r.thresholds is None


def test_optembed_threshold_gets_gradient_and_regularizer_pushes_up():
  m = T.OptEmbedTables(CARDS, 8, rngs=nnx.Rngs(5), threshold_init=0.3)
  ids = _ids()

  def loss(model):
    return jnp.sum(model(ids) ** 2) + model.regularizer()

  grads = nnx.grad(loss)(m)
  g = np.asarray(grads.thresholds[...])
  assert np.all(np.isfinite(g)) and np.any(g != 0)
  reg_grad = nnx.grad(lambda mm: mm.regularizer())(m).thresholds[...]
  np.testing.assert_allclose(np.asarray(reg_grad), -np.exp(-0.3) * np.ones(5), rtol=1e-6)


def test_sample_dims_range():
  d = np.asarray(T.sample_dims(jax.random.key(0), 1000, 8))
  assert d.min() == 1 and d.max() == 8


def test_search_dims_finds_target_and_respects_budget():
  target = np.array([3, 7, 1, 5, 8, 2])
  best, score = T.search_dims(lambda d: -np.abs(d - target).sum(), 6, 8, seed=0,
                              population=32, generations=30)
  assert score >= -2 and np.abs(best - target).sum() <= 2
  best, _ = T.search_dims(lambda d: d.sum(), 6, 8, cost=lambda d: d.sum(), budget=20,
                          population=8, generations=3)
  assert best.sum() <= 20


def test_bad_input_raises():
  m = T.FullTables(CARDS, 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="feature 0 outside"):
    m(np.array([[3, 0, 0, 0, 0]]))
  with pytest.raises(ValueError, match=r"\[batch, 5\]"):
    m(np.zeros((2, 4), np.int32))
  with pytest.raises(ValueError, match="cardinalities"):
    T.FullTables([3, 0], 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="combine"):
    T.QRTables(CARDS, 4, 2, combine="add", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="multiple of the largest probe"):
    T.UnifiedTables(CARDS, 6, 10, probes=4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="budget"):
    T.budget_rows(CARDS, 0.0)


def test_budget_rows_water_filling():
  # 0.25 * 1062 = 265.5 rows: the four small features keep their 62 ids, the one big feature
  # gets the floor of the remaining 203.5
  rows = T.budget_rows(CARDS, 0.25)
  np.testing.assert_array_equal(rows, [3, 50, 203, 7, 2])
  assert rows.sum() <= 0.25 * sum(CARDS) < np.minimum(CARDS, 204).sum()
  np.testing.assert_array_equal(T.budget_rows(CARDS, 1.0), CARDS)
