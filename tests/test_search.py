"""semantic_search / Index vs numpy brute force (float64 scores, ties by lower id)."""

import jax
import numpy as np
import pytest

from jaxemb.quantization import quantize_embeddings
from jaxemb.search import Index, semantic_search


def _brute(scores: np.ndarray, k: int):
  ids = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
  order = np.lexsort((ids, -scores), axis=1)[:, :k]
  return np.take_along_axis(scores, order, 1), order


def _int_data(rng, n, d, q):
  # Small integers: every dot product is exact in float32, so ties are real ties.
  corpus = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
  corpus[10:20] = corpus[0]  # duplicate rows: exact ties across chunks and shards
  queries = rng.integers(-2, 3, size=(q, d)).astype(np.float32)
  return queries, corpus


@pytest.mark.parametrize("chunk_size", [4, 16, 4096])
def test_float_dot_matches_brute_force_with_ties(chunk_size):
  rng = np.random.default_rng(0)
  queries, corpus = _int_data(rng, 101, 6, 9)
  queries[0] = corpus[0]
  for k in (1, 5, 13, 101):
    scores, ids = semantic_search(queries, corpus, k, score_fn="dot", chunk_size=chunk_size)
    want_s, want_i = _brute(queries.astype(np.float64) @ corpus.T, k)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(scores, want_s)


def test_cosine_and_callers_mesh():
  rng = np.random.default_rng(1)
  corpus = rng.normal(size=(203, 16)).astype(np.float32)
  queries = rng.normal(size=(7, 16)).astype(np.float32)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  want_s, want_i = _brute(unit(queries.astype(np.float64)) @ unit(corpus.astype(np.float64)).T, 10)
  mesh = jax.make_mesh((2, 4), ("x", "y"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  one = jax.make_mesh((1,), ("d",), axis_types=(jax.sharding.AxisType.Auto,),
                      devices=jax.devices()[:1])
  for m in (None, mesh, one):
    scores, ids = semantic_search(queries, corpus, 10, mesh=m, chunk_size=8)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_allclose(scores, want_s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_quantized_first_pass_and_rescore(precision):
  rng = np.random.default_rng(2)
  corpus = rng.normal(size=(150, 8)).astype(np.float32)
  queries = rng.normal(size=(5, 8)).astype(np.float32)
  cal = rng.normal(size=(300, 8)).astype(np.float32)
  ranges = np.vstack([cal.min(0), cal.max(0)])
  qc = quantize_embeddings(corpus, precision, ranges=ranges).astype(np.float64)
  qq = quantize_embeddings(queries, precision, ranges=ranges).astype(np.float64)
  want_s, want_i = _brute(qq @ qc.T, 6)
  scores, ids = semantic_search(queries, corpus, 6, precision=precision, score_fn="dot",
                                ranges=ranges, rescore=False, chunk_size=16)
  np.testing.assert_array_equal(ids, want_i)
  np.testing.assert_array_equal(scores, want_s)
  # Rescoring: the top 6*3 candidates of the first pass, rescored by the float query against
  # the bucket starts (a slow loop, float64).
  first_s, first_i = _brute(qq @ qc.T, 18)
  step = (ranges[1].astype(np.float32) - ranges[0].astype(np.float32)) / 255
  scores, ids = semantic_search(queries, corpus, 6, precision=precision, score_fn="dot",
                                ranges=ranges, rescore_multiplier=3, chunk_size=16)
  for q in range(len(queries)):
    cand = []
    for c in first_i[q]:
      buckets = qc[c] + (128 if precision == "int8" else 0)
      row = buckets * step.astype(np.float64) + ranges[0].astype(np.float32)
      cand.append((-float(np.dot(queries[q].astype(np.float64), row)), int(c)))
    cand.sort()
    assert [c for _, c in cand[:6]] == ids[q].tolist()
    np.testing.assert_allclose(scores[q], [-s for s, _ in cand[:6]], rtol=1e-5)


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_hamming_and_rescore(precision):
  rng = np.random.default_rng(3)
  corpus = rng.normal(size=(120, 13)).astype(np.float32)
  queries = rng.normal(size=(4, 13)).astype(np.float32)
  cb, qb = corpus > 0, queries > 0
  hamming = np.array([[np.sum(q != c) for c in cb] for q in qb], np.float64)
  want_s, want_i = _brute(-hamming, 7)
  codes = quantize_embeddings(corpus, precision)  # already-quantized corpus is accepted too
  for corp in (corpus, codes):
    scores, ids = semantic_search(queries, corp, 7, precision=precision, rescore=False,
                                  chunk_size=8)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(scores, want_s)
  _, first_i = _brute(-hamming, 28)
  scores, ids = semantic_search(queries, corpus, 7, precision=precision, score_fn="dot")
  unit_q = queries.astype(np.float64)
  for q in range(len(queries)):
    resc = sorted((-float(unit_q[q] @ cb[c]), int(c)) for c in first_i[q])
    assert [c for _, c in resc[:7]] == ids[q].tolist()


def test_quantized_recall_of_exact_neighbours():
  rng = np.random.default_rng(4)
  corpus = rng.normal(size=(2000, 64)).astype(np.float32)
  queries = corpus[:50] + 0.3 * rng.normal(size=(50, 64)).astype(np.float32)
  _, exact = semantic_search(queries, corpus, 10)
  # Isotropic data has little structure past the nearest row, so binary recall@10 is low; each
  # query's own source row must still come first.
  for precision, floor in (("int8", 0.9), ("ubinary", 0.25)):
    _, ids = semantic_search(queries, corpus, 10, precision=precision)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
    assert recall >= floor, (precision, recall)
    assert np.mean(ids[:, 0] == np.arange(50)) >= 0.9, precision


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_index_add_save_load(tmp_path, suffix, precision):
  rng = np.random.default_rng(5)
  corpus = rng.normal(size=(90, 12)).astype(np.float32)
  queries = rng.normal(size=(3, 12)).astype(np.float32)
  whole = Index(12, precision, ranges=None if precision != "int8" else
                np.vstack([np.full(12, -0.6), np.full(12, 0.6)]))
  whole.add(corpus)
  parts = Index(12, precision, ranges=whole.ranges)
  parts.add(corpus[:30]).add(corpus[30:31]).add(corpus[31:])
  assert len(parts) == 90
  want = whole.search(queries, 5)
  for got in (parts.search(queries, 5),
              Index.load(whole.save(tmp_path / f"i{suffix}")).search(queries, 5)):
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
  loaded = Index.load(tmp_path / f"i{suffix}")
  assert (loaded.precision, loaded.dim, loaded.score_fn) == (precision, 12, "cosine")
  np.testing.assert_array_equal(loaded.rows, whole.rows)


def test_bad_input():
  x = np.ones((4, 3), np.float32)
  with pytest.raises(ValueError, match="empty"):
    semantic_search(x, np.zeros((0, 3), np.float32), 1)
  with pytest.raises(ValueError, match="empty"):
    Index(3).search(x, 1)
  with pytest.raises(ValueError, match="top_k=5 .*4"):
    semantic_search(x, x, 5)
  with pytest.raises(ValueError, match="top_k=0"):
    semantic_search(x, x, 0)
  nan = x.copy()
  nan[2, 1] = np.nan
  with pytest.raises(ValueError, match="NaN.*row 2, column 1"):
    semantic_search(nan, x, 1)
  with pytest.raises(ValueError, match="NaN"):
    semantic_search(x, nan, 1)
  with pytest.raises(ValueError, match="dimension 5, expected 3"):
    semantic_search(x, np.ones((4, 5)), 1)
  with pytest.raises(ValueError, match="'int4'"):
    semantic_search(x, x, 1, precision="int4")
  with pytest.raises(ValueError, match="'l2'"):
    Index(3, score_fn="l2")
  with pytest.raises(ValueError, match="shape \\(4, 3\\).*\\[N, 1\\]"):
    Index(3, "ubinary").add(np.ones((4, 3), np.uint8))
  with pytest.raises(ValueError, match="must end in"):
    Index(3).add(x).save("/tmp/index.pkl")
