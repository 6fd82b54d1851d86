"""k-means (JAX) vs scikit-learn's KMeans from the same initial centres; V-measure vs
scikit-learn's homogeneity / completeness / v_measure scores."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import homogeneity_completeness_v_measure

from jaxemb.evaluate.clustering import clustering_evaluator, kmeans, v_measure


def _blobs(seed, n=300, d=4, k=5, spread=1.0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(scale=3.0, size=(k, d))
  y = rng.integers(0, k, n)
  return (centres[y] + spread * rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("spread", [0.5, 2.5])  # separated blobs, and heavily overlapping ones
def test_lloyd_matches_sklearn_from_same_init(spread):
  x, _ = _blobs(0, spread=spread)
  init = x[:5]
  ref = KMeans(5, init=init.astype(np.float64), n_init=1, algorithm="lloyd", tol=1e-4).fit(
      x.astype(np.float64))
  got = kmeans(x, 5, init=init, tol=1e-4)
  np.testing.assert_array_equal(got["labels"], ref.labels_)
  np.testing.assert_allclose(got["centres"], ref.cluster_centers_, rtol=1e-4, atol=1e-4)
  assert got["inertia"] == pytest.approx(ref.inertia_, rel=1e-4)


def test_plus_plus_restarts_find_the_blobs():
  x, y = _blobs(1, spread=0.3)
  got = kmeans(x, 5, key=0, n_init=4)
  ref = KMeans(5, n_init=10, random_state=0).fit(x.astype(np.float64))
  assert got["inertia"] == pytest.approx(ref.inertia_, rel=1e-3)
  assert v_measure(y, got["labels"])["v_measure"] == pytest.approx(1.0)
  # Same key, same answer; the evaluator's seed picks the key.
  np.testing.assert_array_equal(kmeans(x, 5, key=0, n_init=4)["labels"], got["labels"])
  table = {"a": x}
  metrics = dict(clustering_evaluator(lambda texts: table[texts[0]], {"texts": ["a"], "labels": y}))
  assert metrics["v_measure"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_v_measure_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  t = rng.integers(0, 4, 100)
  p = np.where(rng.random(100) < 0.6, t, rng.integers(0, 6, 100))
  h, c, v = homogeneity_completeness_v_measure(t, p)
  got = v_measure(t, p)
  assert got["homogeneity"] == pytest.approx(h, abs=1e-12)
  assert got["completeness"] == pytest.approx(c, abs=1e-12)
  assert got["v_measure"] == pytest.approx(v, abs=1e-12)
  # String labels, and the degenerate one-cluster case.
  assert v_measure(t.astype(str), p)["v_measure"] == pytest.approx(v, abs=1e-12)
  h, c, v = homogeneity_completeness_v_measure(t, np.zeros_like(t))
  got = v_measure(t, np.zeros_like(t))
  assert (got["homogeneity"], got["completeness"], got["v_measure"]) == pytest.approx((h, c, v))


def test_bad_input():
  with pytest.raises(ValueError, match="k=7"):
    kmeans(np.ones((5, 2)), 7)
  with pytest.raises(ValueError, match="NaN"):
    kmeans(np.full((5, 2), np.nan), 2)
  with pytest.raises(ValueError, match=r"init has shape \(1, 2\)"):
    kmeans(np.ones((5, 2)), 2, init=np.ones((1, 2)))
  with pytest.raises(ValueError, match="shapes"):
    v_measure([0, 1], [0])
