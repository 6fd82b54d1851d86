"""Representation-quality statistics of an embedding matrix that need no labels."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from jaxemb.evaluate import registry


def _check_matrix(emb: np.ndarray) -> np.ndarray:
  emb = np.asarray(emb, dtype=np.float64)
  if emb.ndim != 2 or emb.size == 0:
    raise ValueError(f"emb must be a non-empty 2-D array [N, D], got shape {emb.shape}")
  if not np.all(np.isfinite(emb)):
    raise ValueError("emb contains NaN or inf values")
  return emb


def rankme(emb: np.ndarray, eps: float = 1e-7) -> float:
  """RankMe effective rank (Garrido et al., 2023).

  With singular values s of `emb`, p_k = s_k / sum(s) + eps and RankMe = exp(-sum_k p_k log p_k).
  It is about r for r equal non-zero singular values and 1 for a rank-1 matrix, bounded by
  min(N, D). No centring, as in the paper.

  Args:
    emb: [N, D] embeddings.
    eps: smoothing added to each p_k (keeps log finite for zero singular values).

  Returns:
    RankMe as a float (an all-zero matrix raises ValueError).
  """
  emb = _check_matrix(emb)
  s = np.linalg.svd(emb, compute_uv=False)
  total = s.sum()
  if total == 0:
    raise ValueError("emb is all zeros; RankMe needs at least one non-zero singular value")
  p = s / total + eps
  # 0 log 0 = 0, for eps=0 with exactly zero singular values.
  plogp = p * np.log(np.where(p > 0, p, 1.0))
  return float(np.exp(-np.sum(plogp)))


def mean_cosine_similarity(emb: np.ndarray) -> float:
  """Mean cosine similarity over distinct pairs of rows: near 0 for isotropic embeddings,
  near 1 when all embeddings crowd into a narrow cone (anisotropy)."""
  emb = _check_matrix(emb)
  n = emb.shape[0]
  if n < 2:
    raise ValueError(f"need at least 2 embeddings, got N={n}")
  norms = np.linalg.norm(emb, axis=1, keepdims=True)
  unit = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
  # sum over all pairs = |sum of unit vectors|^2, minus the diagonal: O(N D), not O(N^2 D).
  total = unit.sum(axis=0)
  diag = np.sum(unit * unit)
  return float((total @ total - diag) / (n * (n - 1)))


def rankme_evaluator(
    embed_fn: Callable[[list[str]], np.ndarray], data: Mapping
) -> Iterator[tuple[str, float]]:
  """Evaluator over `data = {"texts"}`: yields `rankme` and `mean_cosine`."""
  (texts,) = registry.require_fields("rankme", data, ("texts",))
  emb = np.asarray(embed_fn(list(texts)))
  yield "rankme", rankme(emb)
  yield "mean_cosine", mean_cosine_similarity(emb)
