"""Quality metrics vs closed forms, slow loops and scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from jaxemb.evaluate.quality import (
    alignment, alpha_req, depth_rank_sum, isoscore, partition_isotropy, quality_evaluator,
    quality_metrics, rank_sum_test, relative_representation, stitching_check, tte_depth,
    uniformity)


def _with_spectrum(lam, n, seed=0):
  """N points whose (centred, 1/N) covariance has exactly the eigenvalues `lam`."""
  rng = np.random.default_rng(seed)
  d = len(lam)
  z = rng.normal(size=(n, d))
  z -= z.mean(0)
  # Whiten z exactly, then scale each principal axis and rotate.
  u, s, vt = np.linalg.svd(z, full_matrices=False)
  white = u * math.sqrt(n)
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  return (white * np.sqrt(lam)) @ q.T + rng.normal(size=d)


def _rotation(d, seed):
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  return q


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.3])
def test_alpha_req_recovers_power_law(alpha):
  lam = np.arange(1, 21, dtype=float) ** -alpha
  assert alpha_req(_with_spectrum(lam, 200)) == pytest.approx(alpha, rel=1e-6)
  # A fit limited to the first 10 eigenvalues of a broken power law sees only its first slope.
  lam2 = np.r_[lam[:10], lam[9] * np.arange(2, 12) ** -3.0]
  assert alpha_req(_with_spectrum(lam2, 200), max_rank=10) == pytest.approx(alpha, rel=1e-6)


def test_isoscore_closed_forms():
  d = 8
  for k in (1, 3, 8):  # k equally used directions -> (k - 1) / (d - 1)
    lam = np.r_[np.ones(k), np.zeros(d - k)]
    x = _with_spectrum(np.maximum(lam, 0), 100)
    assert isoscore(x) == pytest.approx((k - 1) / (d - 1), abs=1e-6)
  iso = np.random.default_rng(0).normal(size=(20000, d))
  assert isoscore(iso) > 0.99
  assert partition_isotropy(iso) > 0.9
  cone = iso + 5.0  # everything in a narrow cone around the all-ones direction
  assert partition_isotropy(cone) < 1e-3


def test_partition_isotropy_vs_loop():
  x = np.random.default_rng(1).normal(size=(30, 4))
  _, vecs = np.linalg.eigh(x.T @ x)
  z = [sum(math.exp(float(c @ xi)) for xi in x) for c in np.concatenate([vecs, -vecs], 1).T]
  assert partition_isotropy(x) == pytest.approx(min(z) / max(z), rel=1e-9)


def test_tte_depth_vs_loop_and_ranksums():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(25, 6)) + 1.0
  g = rng.normal(size=(30, 6))
  cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)
  loo = [2 - np.mean([1 - cos(f[i], f[j]) for j in range(25) if j != i]) for i in range(25)]
  np.testing.assert_allclose(tte_depth(f), loo, rtol=1e-12)
  wrt = [2 - np.mean([1 - cos(x, y) for y in f]) for x in g]
  np.testing.assert_allclose(tte_depth(g, f), wrt, rtol=1e-12)
  got = depth_rank_sum(f, g)
  ref = stats.ranksums(loo, wrt)
  assert got["z"] == pytest.approx(ref.statistic, rel=1e-10)
  assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
  assert got["z"] > 3  # G is far from F's centre
  ties = [1, 2, 2, 3, 3, 3], [2, 3, 4, 4]
  assert rank_sum_test(*ties) == pytest.approx(tuple(stats.ranksums(*ties)), rel=1e-10)


def test_alignment_uniformity_vs_loops():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(15, 5)), rng.normal(size=(15, 5))
  ux = x / np.linalg.norm(x, axis=1, keepdims=True)
  uy = y / np.linalg.norm(y, axis=1, keepdims=True)
  assert alignment(x, y) == pytest.approx(np.mean([np.sum((a - b) ** 2) for a, b in zip(ux, uy)]))
  assert alignment(x, y, alpha=1) == pytest.approx(np.mean(np.linalg.norm(ux - uy, axis=1)))
  pairs = [math.exp(-2 * np.sum((ux[i] - ux[j]) ** 2)) for i in range(15) for j in range(i + 1, 15)]
  assert uniformity(x) == pytest.approx(math.log(np.mean(pairs)), rel=1e-10)
  assert alignment(x, 3 * x) == pytest.approx(0.0, abs=1e-12)


def test_relative_representations_and_stitching():
  rng = np.random.default_rng(4)
  a = rng.normal(size=(50, 12))
  b = 3.7 * a @ _rotation(12, 5)  # rotated, rescaled copy: same relative representation
  anchors = np.arange(0, 50, 5)
  np.testing.assert_allclose(relative_representation(a, a[anchors]),
                             relative_representation(b, b[anchors]), atol=1e-12)
  same = stitching_check(a, b, anchors)
  assert same == pytest.approx({"rel_cosine": 1.0, "rel_top1": 1.0})
  other = stitching_check(a, rng.normal(size=(50, 12)), anchors)
  assert other["rel_top1"] < 0.3 and other["rel_cosine"] < 0.5
  with pytest.raises(ValueError, match="same items"):
    stitching_check(a, b[:10], anchors)


def test_quality_metrics_and_evaluator():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(40, 8))
  got = quality_metrics(x, positives=(x, x + 0.1))
  assert set(got) == {"rankme", "alpha_req", "isoscore", "uniformity", "mean_cosine",
                      "tte_depth", "alignment"}
  assert got["uniformity"] == uniformity(x) and got["alpha_req"] == alpha_req(x)
  table = {"t": x, "a": x, "b": x + 0.1}
  ev = dict(quality_evaluator(lambda texts: table[texts[0]],
                              {"texts": ["t"], "texts_a": ["a"], "texts_b": ["b"]}))
  assert ev == got


def test_bad_input():
  with pytest.raises(ValueError, match="NaN"):
    alpha_req(np.full((4, 3), np.nan))
  with pytest.raises(ValueError, match="zero variance"):
    isoscore(np.ones((5, 3)))
  with pytest.raises(ValueError, match="N >= 2"):
    uniformity(np.ones((1, 3)))
