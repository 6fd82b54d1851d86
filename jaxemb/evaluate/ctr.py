"""Click-through-rate metrics on arrays: ROC AUC (ties as scikit-learn) and log-loss.

    auc(labels, scores)          # 0.5 for random scores, 1.0 for a perfect ranking
    log_loss(labels, probs)      # mean binary cross-entropy, probabilities clipped to (eps, 1-eps)
"""

from __future__ import annotations

import numpy as np

from jaxemb.evaluate.sts import average_ranks


def _check(labels, scores, name: str) -> tuple[np.ndarray, np.ndarray]:
  y = np.asarray(labels).reshape(-1)
  s = np.asarray(scores, np.float64).reshape(-1)
  if y.shape != s.shape:
    raise ValueError(f"labels and {name} must have the same length, got {y.shape} and {s.shape}")
  if not np.isin(y, (0, 1)).all():
    raise ValueError(f"labels must be 0/1, got values {np.unique(y)[:10]}")
  if not np.isfinite(s).all():
    raise ValueError(f"{name} must be finite")
  return y.astype(np.int64), s


def auc(labels, scores) -> float:
  """Area under the ROC curve of `scores` for binary `labels` (Mann-Whitney U with average ranks
  for tied scores, which equals scikit-learn's `roc_auc_score`, whose trapezoids over tied
  thresholds count a tied pair as 1/2). ValueError when only one class is present."""
  y, s = _check(labels, scores, "scores")
  pos = int(y.sum())
  neg = y.size - pos
  if pos == 0 or neg == 0:
    raise ValueError(f"AUC needs both classes, got {pos} positives and {neg} negatives")
  ranks = average_ranks(s)  # tied scores share the mean of their ranks
  return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def log_loss(labels, probs, eps: float | None = None) -> float:
  """Mean -[y log p + (1-y) log(1-p)], p clipped to [eps, 1-eps] (eps: float64 machine epsilon,
  as scikit-learn). ValueError for probabilities outside [0, 1]."""
  y, p = _check(labels, probs, "probs")
  if (p < 0).any() or (p > 1).any():
    raise ValueError(f"probs must be in [0, 1], got range [{p.min()}, {p.max()}]")
  eps = np.finfo(np.float64).eps if eps is None else eps
  p = np.clip(p, eps, 1 - eps)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def log_loss_from_logits(labels, logits) -> float:
  """`log_loss(labels, sigmoid(logits))` computed stably from logits (no clipping)."""
  y, z = _check(labels, logits, "logits")
  return float(np.mean(np.logaddexp(0.0, z) - y * z))
