"""Tests of jaxemb.evaluate.retrieval against independent references (numpy, trec_eval, loops)."""

import math

import numpy as np
import pytest

from jaxemb.evaluate import evaluate_retrieval, exact_top_k, retrieval_metrics


def _int_embeddings(rng, n, d=4):
  # Small integers: dot products are exact in float32 and collide often, so ties are common.
  return rng.integers(-2, 3, size=(n, d)).astype(np.float32)


def _reference_top_k(q, c, k):
  scores = q.astype(np.float64) @ c.T.astype(np.float64)
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # stable: lower index first on ties
  return np.take_along_axis(scores, order, axis=1), order


# ---------------------------------------------------------------------------- exact_top_k


@pytest.mark.parametrize(
    "num_q, num_c, k, chunk",
    [
        (13, 50, 7, 16),  # Q not a multiple of 8 devices, chunk does not divide C
        (5, 37, 37, 10),  # k == C
        (17, 100, 20, 7),  # chunk < k
        (3, 9, 1, 1000),  # chunk > C
    ],
)
def test_exact_top_k_matches_stable_argsort_with_ties(num_q, num_c, k, chunk):
  rng = np.random.default_rng(num_q * 1000 + num_c)
  q, c = _int_embeddings(rng, num_q), _int_embeddings(rng, num_c)
  ref_scores, ref_idx = _reference_top_k(q, c, k)
  assert (np.diff(np.sort(q @ c.T, axis=1), axis=1) == 0).any(), "case should contain ties"
  scores, idx = exact_top_k(q, c, k, chunk_size=chunk)
  assert scores.shape == idx.shape == (num_q, k)
  assert idx.dtype == np.int32 and scores.dtype == np.float32
  np.testing.assert_array_equal(idx, ref_idx)
  np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_exact_top_k_all_tied_returns_lowest_indices_first():
  q = np.ones((3, 2), np.float32)
  c = np.ones((23, 2), np.float32)
  _, idx = exact_top_k(q, c, 9, chunk_size=4)
  np.testing.assert_array_equal(idx, np.tile(np.arange(9), (3, 1)))


def test_exact_top_k_random_floats_independent_of_chunking():
  rng = np.random.default_rng(0)
  q = rng.normal(size=(11, 16)).astype(np.float32)
  c = rng.normal(size=(203, 16)).astype(np.float32)
  ref_scores, ref_idx = _reference_top_k(q, c, 15)
  for chunk in (15, 64, 4096):
    scores, idx = exact_top_k(q, c, 15, chunk_size=chunk)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_exact_top_k_empty_queries():
  scores, idx = exact_top_k(np.zeros((0, 3)), np.ones((4, 3)), 2)
  assert scores.shape == idx.shape == (0, 2)


@pytest.mark.parametrize(
    "q_shape, c_shape, k, match",
    [
        ((2, 3), (4, 3), 5, r"k=5.*C=4"),
        ((2, 3), (4, 3), 0, r"k=0"),
        ((2, 3), (4, 5), 1, r"dimension 3.*dimension 5"),
        ((2, 3, 1), (4, 3), 1, r"query_emb must be 2-D"),
        ((2, 3), (0, 3), 1, r"C=0"),
    ],
)
def test_exact_top_k_rejects_bad_input(q_shape, c_shape, k, match):
  with pytest.raises(ValueError, match=match):
    exact_top_k(np.ones(q_shape), np.ones(c_shape), k)


def test_exact_top_k_rejects_nan_and_bad_chunk():
  c = np.ones((4, 3))
  c[1, 1] = np.nan
  with pytest.raises(ValueError, match="corpus_emb contains NaN"):
    exact_top_k(np.ones((2, 3)), c, 1)
  with pytest.raises(ValueError, match="chunk_size=0"):
    exact_top_k(np.ones((2, 3)), np.ones((4, 3)), 1, chunk_size=0)


# ---------------------------------------------------------------------------- metrics


def _slow_metrics(ranked, relevant, ks=(1, 10, 100)):
  """Textbook definitions, one query and one rank at a time."""
  per_query = []
  for row, rel in zip(ranked, relevant):
    rel = set(rel)
    if not rel:
      continue  # trec_eval convention: queries without relevant docs are not averaged
    row = list(row)
    m = {}
    m["mrr@10"] = 0.0
    for i, doc in enumerate(row[:10]):
      if doc in rel:
        m["mrr@10"] = 1.0 / (i + 1)
        break
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(row[:10]) if doc in rel)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), 10)))
    m["ndcg@10"] = dcg / idcg
    for k in ks:
      m[f"recall@{k}"] = len(rel & set(row[:k])) / len(rel)
    found, ap = 0, 0.0
    for i, doc in enumerate(row[:100]):
      if doc in rel:
        found += 1
        ap += found / (i + 1)
    m["map@100"] = ap / len(rel)
    per_query.append(m)
  return {name: sum(m[name] for m in per_query) / len(per_query) for name in per_query[0]}


def test_metrics_hand_computed():
  # Query 0: the only relevant doc (2) is at rank 3.
  #   MRR = 1/3; nDCG@10 = (1/log2(4)) / 1 = 0.5; recall@1 = 0, recall@10 = 1; AP = 1/3.
  # Query 1: relevant {5, 2, 99}, ranking 5, 7, 2, 8 -> hits at ranks 1 and 3; 99 never found.
  #   MRR = 1; DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.130930;
  #   nDCG = 0.703918; recall@1 = 1/3, recall@10 = 2/3; AP = (1/1 + 2/3) / 3 = 5/9.
  ranked = np.array([[5, 7, 2, 8], [5, 7, 2, 8]])
  got = retrieval_metrics(ranked, [{2}, {5, 2, 99}])
  expected = {
      "mrr@10": (1 / 3 + 1) / 2,
      "ndcg@10": (0.5 + 1.5 / (1 + 1 / math.log2(3) + 0.5)) / 2,
      "recall@1": (0 + 1 / 3) / 2,
      "recall@10": (1 + 2 / 3) / 2,
      "recall@100": (1 + 2 / 3) / 2,
      "map@100": (1 / 3 + 5 / 9) / 2,
  }
  assert got.keys() == expected.keys()
  for name, value in expected.items():
    assert got[name] == pytest.approx(value, abs=1e-12), name
  assert (0.5 + 0.703918) / 2 == pytest.approx(got["ndcg@10"], abs=1e-6)


def _random_case(seed, num_q=40, num_c=150, depth=100):
  rng = np.random.default_rng(seed)
  q, c = _int_embeddings(rng, num_q, d=3), _int_embeddings(rng, num_c, d=3)
  _, ranked = exact_top_k(q, c, depth, chunk_size=33)  # a run with many score ties
  relevant = []
  for i in range(num_q):
    n = rng.integers(0, 6)  # some queries have no relevant docs
    # Bias towards retrieved docs so hits are common, but include unretrieved ones too.
    pool = np.concatenate([ranked[i, :15], rng.integers(0, num_c, size=5)])
    relevant.append({int(d) for d in rng.choice(pool, size=n)})
  return ranked, relevant


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_slow_reference(seed):
  ranked, relevant = _random_case(seed)
  got = retrieval_metrics(ranked, relevant)
  expected = _slow_metrics(ranked, relevant)
  assert got.keys() == expected.keys()
  for name in expected:
    assert got[name] == pytest.approx(expected[name], abs=1e-12), name


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_trec_eval(seed):
  pytrec_eval = pytest.importorskip("pytrec_eval")
  ranked, relevant = _random_case(seed)
  # Graded qrels with explicit non-relevant (grade 0) judgements; trec_eval only sees queries
  # that have a relevant doc, matching our averaging convention.
  rng = np.random.default_rng(seed + 100)
  qrels = {}
  for i, rel in enumerate(relevant):
    if rel:
      qrels[str(i)] = {str(d): 1 for d in rel}
      for d in rng.integers(0, 150, size=3):
        qrels[str(i)].setdefault(str(d), 0)

  def run(depth):
    # Distinct scores from the rank itself, so trec_eval's own tie-breaking never applies.
    return {
        str(i): {str(int(d)): float(depth - r) for r, d in enumerate(row[:depth])}
        for i, row in enumerate(ranked)
    }

  measures = {"ndcg_cut.10", "recall.1,10,100", "map_cut.100"}
  full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run(100))
  # trec_eval's recip_rank has no cutoff: truncate the run to 10 for MRR@10.
  top10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run(10))
  mean = lambda res, key: float(np.mean([v[key] for v in res.values()]))
  expected = {
      "mrr@10": mean(top10, "recip_rank"),
      "ndcg@10": mean(full, "ndcg_cut_10"),
      "recall@1": mean(full, "recall_1"),
      "recall@10": mean(full, "recall_10"),
      "recall@100": mean(full, "recall_100"),
      "map@100": mean(full, "map_cut_100"),
  }
  # Same qrels through the mapping interface: {query_row: {doc: grade}}.
  qrels_rows = {int(q): {int(d): g for d, g in docs.items()} for q, docs in qrels.items()}
  for got in (retrieval_metrics(ranked, relevant), retrieval_metrics(ranked, qrels_rows)):
    for name, value in expected.items():
      assert got[name] == pytest.approx(value, abs=1e-9), name


def test_metrics_short_ranking_and_padding():
  # Ranking narrower than the cutoffs (corpus of 3): recall@100 counts what was retrieved.
  # -1 is padding and never relevant, even though doc ids 0.. exist.
  ranked = np.array([[2, 0, -1], [1, -1, -1]])
  got = retrieval_metrics(ranked, [{0, 1}, {1}])
  assert got["recall@1"] == pytest.approx((0 + 1) / 2)
  assert got["recall@100"] == pytest.approx((0.5 + 1) / 2)
  assert got["mrr@10"] == pytest.approx((0.5 + 1) / 2)


def test_metrics_custom_cutoffs_and_names():
  got = retrieval_metrics(np.array([[0, 1, 2]]), [{2}], ks=(2, 3), mrr_k=2, ndcg_k=3, map_k=3)
  assert set(got) == {"recall@2", "recall@3", "mrr@2", "ndcg@3", "map@3"}
  assert got["mrr@2"] == 0.0 and got["recall@3"] == 1.0


@pytest.mark.parametrize(
    "ranked, relevant, match",
    [
        (np.zeros((2, 3), int), [{1}], r"1 entries but ranked_indices has 2 rows"),
        (np.zeros((1, 3), int), [set()], r"no query has a relevant document"),
        (np.zeros((1, 3), float), [{1}], r"integer array"),
        (np.zeros((1, 3), int), {5: {1}}, r"query keys \[5\]"),
        (np.zeros((1, 3), int), [{-2}], r"negative doc id -2"),
    ],
)
def test_metrics_reject_bad_input(ranked, relevant, match):
  with pytest.raises(ValueError, match=match):
    retrieval_metrics(ranked, relevant)


def test_metrics_reject_bad_cutoff():
  with pytest.raises(ValueError, match=r"ks has cutoff 0"):
    retrieval_metrics(np.zeros((1, 3), int), [{0}], ks=(0,))


# ---------------------------------------------------------------------------- glue


def test_evaluate_retrieval_end_to_end():
  rng = np.random.default_rng(3)
  corpus = [f"doc{i}" for i in range(30)]
  queries = [f"q{i}" for i in range(9)]
  table = {t: v for t, v in zip(corpus + queries, rng.normal(size=(39, 8)))}
  embed = lambda texts: np.stack([table[t] for t in texts])
  relevant = [set(rng.choice(30, size=2, replace=False).tolist()) for _ in queries]
  got = evaluate_retrieval(embed, embed, queries, corpus, relevant, chunk_size=7)
  # Depth is clamped to the corpus size (30 < 100) for recall@100 and map@100.
  _, ranked = _reference_top_k(embed(queries), embed(corpus), 30)
  assert got == pytest.approx(_slow_metrics(ranked, relevant), abs=1e-12)
  assert got["recall@100"] == 1.0


def test_evaluate_retrieval_checks_embed_shape():
  with pytest.raises(ValueError, match=r"embed_query_fn returned shape \(3,\) for 3 texts"):
    evaluate_retrieval(lambda t: np.zeros(len(t)), None, ["a", "b", "c"], ["d"], [{0}] * 3)
