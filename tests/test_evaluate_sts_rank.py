"""Tests of jaxemb.evaluate.sts (vs scipy) and jaxemb.evaluate.rank (closed forms)."""

import math

import numpy as np
import pytest

from jaxemb.evaluate import average_ranks, mean_cosine_similarity, rankme, sts_metrics

# ---------------------------------------------------------------------------- STS


def _sts_case(seed, n=60, d=5):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, d))
  b = a + rng.normal(scale=1.5, size=(n, d))
  gold = np.round(rng.uniform(0, 5, size=n))  # integer grades: many ties
  # Duplicate pairs give tied cosines too.
  b[1], a[1] = b[0], a[0]
  return a, b, gold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sts_matches_scipy(seed):
  stats = pytest.importorskip("scipy.stats")
  a, b, gold = _sts_case(seed)
  cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
  got = sts_metrics(a, b, gold)
  assert set(got) == {"spearman", "pearson"}
  assert got["spearman"] == pytest.approx(stats.spearmanr(cos, gold).statistic, abs=1e-12)
  assert got["pearson"] == pytest.approx(stats.pearsonr(cos, gold).statistic, abs=1e-12)


def test_average_ranks_matches_scipy_rankdata():
  stats = pytest.importorskip("scipy.stats")
  x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 7.0])
  # By hand: 1.0 x2 -> ranks 1,2 -> 1.5; 2.0 -> 3; 3.0 x3 -> ranks 4,5,6 -> 5; 7.0 -> 7.
  np.testing.assert_array_equal(average_ranks(x), [5, 1.5, 5, 3, 5, 1.5, 7])
  np.testing.assert_array_equal(average_ranks(x), stats.rankdata(x))


def test_sts_perfect_and_constant():
  a = np.eye(3)[[0, 0, 0, 0]] + np.array([[0, 0, 0], [0, 0.5, 0], [0, 1, 0], [0, 3, 0]])
  b = np.tile(np.eye(3)[0], (4, 1))
  got = sts_metrics(a, b, [4.0, 3.0, 2.0, 1.0])  # cosine decreases as gold decreases
  assert got["spearman"] == pytest.approx(1.0)
  assert math.isnan(sts_metrics(a, b, [1.0, 1.0, 1.0, 1.0])["spearman"])


@pytest.mark.parametrize(
    "a_shape, b_shape, gold_len, match",
    [
        ((4, 3), (4, 2), 4, r"same shape"),
        ((4, 3), (4, 3), 5, r"gold_scores has shape \(5,\); expected \[4\]"),
        ((1, 3), (1, 3), 1, r"at least 2 pairs"),
    ],
)
def test_sts_rejects_bad_input(a_shape, b_shape, gold_len, match):
  with pytest.raises(ValueError, match=match):
    sts_metrics(np.ones(a_shape), np.ones(b_shape), np.arange(gold_len, dtype=float))


# ---------------------------------------------------------------------------- RankMe


@pytest.mark.parametrize("r", [1, 3, 8])
def test_rankme_equal_singular_values_gives_rank(r):
  rng = np.random.default_rng(r)
  u, _ = np.linalg.qr(rng.normal(size=(50, 50)))
  v, _ = np.linalg.qr(rng.normal(size=(16, 16)))
  emb = 2.5 * u[:, :r] @ v[:r, :]  # r singular values equal to 2.5, the rest 0
  # With eps: r entries of 1/r + eps, 16 - r of eps; the eps terms move the result by ~1e-5.
  assert rankme(emb) == pytest.approx(r, rel=1e-4)
  assert rankme(emb, eps=0.0) == pytest.approx(r, rel=1e-10)


def test_rankme_rank_one():
  rng = np.random.default_rng(0)
  emb = np.outer(rng.normal(size=40), rng.normal(size=12))
  assert rankme(emb) == pytest.approx(1.0, abs=1e-4)
  # Exactly zero singular values with eps=0: 0 log 0 counts as 0, not NaN.
  assert rankme(np.diag([3.0, 0.0, 0.0]), eps=0.0) == 1.0


def test_rankme_matches_eigen_derivation():
  rng = np.random.default_rng(1)
  emb = rng.normal(size=(30, 10)) * np.linspace(0.1, 3.0, 10)
  # Singular values re-derived from the Gram matrix's eigenvalues, entropy written out.
  sigma = np.sqrt(np.clip(np.linalg.eigvalsh(emb.T @ emb), 0, None))
  p = sigma / sigma.sum() + 1e-7
  expected = math.exp(-sum(pk * math.log(pk) for pk in p))
  assert rankme(emb) == pytest.approx(expected, rel=1e-9)
  assert 1.0 < rankme(emb) < 10.0


def test_rankme_rejects_bad_input():
  with pytest.raises(ValueError, match="all zeros"):
    rankme(np.zeros((4, 3)))
  with pytest.raises(ValueError, match=r"2-D array \[N, D\], got shape \(4,\)"):
    rankme(np.ones(4))


def test_mean_cosine_similarity_matches_pairwise_loop():
  rng = np.random.default_rng(2)
  emb = rng.normal(size=(12, 4)) + 1.0
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  pairs = [unit[i] @ unit[j] for i in range(12) for j in range(12) if i != j]
  assert mean_cosine_similarity(emb) == pytest.approx(np.mean(pairs), abs=1e-12)
  assert mean_cosine_similarity(np.tile([1.0, 2.0], (5, 1))) == pytest.approx(1.0)
