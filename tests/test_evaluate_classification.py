"""Pair classification vs a slow loop of MTEB's threshold search and scikit-learn; the JAX
logistic-regression probe vs scikit-learn's LogisticRegression on the same numbers."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from jaxemb.evaluate.classification import (
    average_precision, best_threshold_metrics, fit_logistic_regression, linear_probe,
    pair_classification_evaluator, pair_classification_metrics)


def _slow_best(scores, labels):
  """Brute force over every threshold between distinct scores, first best from the top."""
  distinct = np.unique(scores)[::-1]
  best_acc = best_f1 = (-1, None)
  for hi, lo in zip(distinct[:-1], distinct[1:]):
    t = (hi + lo) / 2
    pred = (scores > t).astype(int)
    acc = accuracy_score(labels, pred)
    f1 = f1_score(labels, pred, zero_division=0)
    if acc > best_acc[0]:
      best_acc = (acc, t)
    if f1 > best_f1[0]:
      best_f1 = (f1, t)
  return best_acc, best_f1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_threshold_matches_brute_force_and_sklearn(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 60)
  scores = np.round(labels * 0.4 + rng.normal(size=60), 1)  # rounding makes ties
  got = best_threshold_metrics(scores, labels)
  (acc, acc_t), (f1, f1_t) = _slow_best(scores, labels)
  assert got["accuracy"] == pytest.approx(acc) and got["accuracy_threshold"] == pytest.approx(acc_t)
  assert got["f1"] == pytest.approx(f1) and got["f1_threshold"] == pytest.approx(f1_t)
  assert got["ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_pair_metrics_over_score_functions():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(80, 8))
  labels = rng.integers(0, 2, 80)
  b = np.where(labels[:, None] == 1, a + 0.8 * rng.normal(size=a.shape), rng.normal(size=a.shape))
  got = pair_classification_metrics(a, b, labels)
  cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
  assert got["cosine_ap"] == pytest.approx(average_precision_score(labels, cos))
  assert got["euclidean_ap"] == pytest.approx(
      average_precision_score(labels, -np.linalg.norm(a - b, axis=1)))
  assert got["max_ap"] == max(got[f"{f}_ap"] for f in ("cosine", "dot", "euclidean", "manhattan"))
  assert got["cosine_ap"] > 0.8  # the positives really are closer
  table = {"x": a, "y": b}
  fields = {"texts_a": ["x"] * 1, "texts_b": ["y"], "labels": labels}
  embed = lambda texts: table[texts[0]]
  assert dict(pair_classification_evaluator(embed, fields)) == got


def test_average_precision_with_ties_vs_sklearn():
  labels = np.array([1, 0, 1, 1, 0, 0, 1, 0])
  scores = np.array([0.9, 0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.0])
  assert average_precision(scores, labels) == pytest.approx(
      average_precision_score(labels, scores), abs=1e-12)


def test_pair_bad_input():
  a = np.ones((4, 3))
  with pytest.raises(ValueError, match="both classes"):
    pair_classification_metrics(a, a, [1, 1, 1, 1])
  with pytest.raises(ValueError, match=r"\(3,\); expected \[4\]"):
    pair_classification_metrics(a, a, [1, 0, 1])
  with pytest.raises(ValueError, match=r"0 or 1, got values \[2\]"):
    pair_classification_metrics(a, a, [1, 0, 2, 0])


def _blobs(rng, n, d, k):
  centres = rng.normal(scale=1.5, size=(k, d))
  y = rng.integers(0, k, n)
  return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("k", [2, 4])
def test_logistic_regression_matches_sklearn(k):
  rng = np.random.default_rng(k)
  x, y = _blobs(rng, 200, 5, k)
  ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x.astype(np.float64), y)
  w, b = fit_logistic_regression(x, y, c=0.5)
  if k == 2:  # sklearn's binary model: one weight vector, class 1
    w, b = w[:, 1:], b[1:]
  np.testing.assert_allclose(w.T, ref.coef_, rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(b, ref.intercept_, rtol=2e-3, atol=2e-3)
  # Held-out rows of the same blobs (first 150 train, last 50 test).
  got = linear_probe(x[:150], y[:150], x[150:], y[150:], c=0.5)
  ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x[:150], y[:150])
  pred = ref.predict(x[150:])
  assert got["accuracy"] == pytest.approx(accuracy_score(y[150:], pred))
  assert got["f1"] == pytest.approx(f1_score(y[150:], pred, average="macro"))


def test_probe_bad_input():
  with pytest.raises(ValueError, match="c=0"):
    fit_logistic_regression(np.ones((3, 2)), np.array([0, 1, 0]), c=0)
  with pytest.raises(ValueError, match="int class ids"):
    fit_logistic_regression(np.ones((3, 2)), np.array([0.5, 1, 0]))
