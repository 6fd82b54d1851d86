"""CTR metrics against scikit-learn on random scores (with ties)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from jaxemb.evaluate import ctr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_vs_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  y = (rng.random(500) < 0.3).astype(int)
  for s in (rng.normal(size=500) + y,                       # informative, no ties
            np.round(rng.normal(size=500) + 0.5 * y, 1),    # many ties
            rng.integers(0, 3, 500).astype(float)):          # three distinct scores
    assert ctr.auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)


def test_auc_edge_values():
  assert ctr.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
  assert ctr.auc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
  with pytest.raises(ValueError, match="both classes"):
    ctr.auc([1, 1], [0.1, 0.2])


@pytest.mark.parametrize("seed", [0, 1])
def test_log_loss_vs_sklearn(seed):
  rng = np.random.default_rng(seed)
  y = (rng.random(400) < 0.25).astype(int)
  p = rng.random(400)
  p[:5] = [0.0, 1.0, 1e-20, 1 - 1e-17, 0.5]  # clipped values
  assert ctr.log_loss(y, p) == pytest.approx(metrics.log_loss(y, p, labels=[0, 1]), rel=1e-12)
  z = rng.normal(size=400) * 3
  assert ctr.log_loss_from_logits(y, z) == pytest.approx(
      metrics.log_loss(y, 1 / (1 + np.exp(-z)), labels=[0, 1]), rel=1e-9)


def test_bad_input():
  with pytest.raises(ValueError, match="0/1"):
    ctr.auc([0, 2], [0.1, 0.2])
  with pytest.raises(ValueError, match="same length"):
    ctr.log_loss([0, 1], [0.1])
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    ctr.log_loss([0, 1], [0.1, 1.5])
