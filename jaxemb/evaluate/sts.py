"""Semantic textual similarity: correlation of embedding cosine similarity with gold scores."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from jaxemb.evaluate import registry


def cosine_similarity(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
  """Row-wise cosine similarity of two [N, D] arrays; a zero vector has similarity 0."""
  a = np.asarray(emb_a, dtype=np.float64)
  b = np.asarray(emb_b, dtype=np.float64)
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(
        f"emb_a and emb_b must be 2-D arrays of the same shape [N, D], got {a.shape} and {b.shape}"
    )
  norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
  dots = np.einsum("nd,nd->n", a, b)
  return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def average_ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks of a 1-D array, tied values sharing the mean of their ranks."""
  x = np.asarray(x)
  order = np.argsort(x, kind="stable")
  sorted_x = x[order]
  # Start of each run of equal values in sorted order.
  starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
  ends = np.r_[starts[1:], x.size]
  run_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
  ranks = np.empty(x.size, dtype=np.float64)
  ranks[order] = np.repeat(run_rank, ends - starts)
  return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson correlation; NaN when either input is constant (as scipy)."""
  x = np.asarray(x, dtype=np.float64) - np.mean(x)
  y = np.asarray(y, dtype=np.float64) - np.mean(y)
  denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
  if denom == 0:
    return float("nan")
  # Clip rounding just past +-1.
  return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
  """Spearman correlation: Pearson of average ranks, so ties are handled like scipy."""
  return pearson(average_ranks(x), average_ranks(y))


def sts_metrics(
    emb_a: np.ndarray, emb_b: np.ndarray, gold_scores: np.ndarray
) -> dict[str, float]:
  """Spearman and Pearson correlation of cos(emb_a[i], emb_b[i]) with gold_scores[i].

  Args:
    emb_a, emb_b: [N, D] embeddings of the two sentences of each pair.
    gold_scores: [N] human similarity scores (any scale; correlations are scale-free).

  Returns:
    {"spearman": ..., "pearson": ...}; NaN where a correlation is undefined (constant input).
  """
  gold = np.asarray(gold_scores, dtype=np.float64)
  sims = cosine_similarity(emb_a, emb_b)
  if gold.ndim != 1 or gold.shape[0] != sims.shape[0]:
    raise ValueError(
        f"gold_scores has shape {gold.shape}; expected [{sims.shape[0]}], one score per pair"
    )
  if gold.shape[0] < 2:
    raise ValueError(f"need at least 2 pairs to correlate, got {gold.shape[0]}")
  if not (np.all(np.isfinite(gold)) and np.all(np.isfinite(sims))):
    raise ValueError("gold_scores or embeddings contain NaN or inf values")
  return {"spearman": spearman(sims, gold), "pearson": pearson(sims, gold)}


def sts_evaluator(
    embed_fn: Callable[[list[str]], np.ndarray], data: Mapping
) -> Iterator[tuple[str, float]]:
  """Evaluator over `data = {"sentences1", "sentences2", "scores"}`."""
  first, second, scores = registry.require_fields(
      "sts", data, ("sentences1", "sentences2", "scores")
  )
  if len(first) != len(second):
    raise ValueError(
        f"sts data has {len(first)} sentences1 but {len(second)} sentences2; expected equal"
    )
  # One call embeds both sides so batching (and padding) is shared.
  emb = np.asarray(embed_fn(list(first) + list(second)))
  if emb.ndim != 2 or emb.shape[0] != 2 * len(first):
    raise ValueError(f"embed_fn returned shape {emb.shape}; expected [{2 * len(first)}, D]")
  yield from sts_metrics(emb[: len(first)], emb[len(first) :], scores).items()


def load_sts_tsv(path, *, sentence1: int = 0, sentence2: int = 1, score: int = 2) -> dict:
  """Reads STS pairs from a UTF-8 tab-separated file into the `sts` evaluator's data.

  Each line holds at least three tab-separated fields; `sentence1`, `sentence2` and `score`
  are their column indices (STS-B's `sentence1<TAB>sentence2<TAB>score` by default). A first
  line whose score field is not a number is a header and skipped; empty lines are skipped.

  Returns:
    {"sentences1": [...], "sentences2": [...], "scores": float64 array}.
  """
  import os
  from pathlib import Path
  path = Path(os.fspath(path))
  if not path.is_file():
    raise ValueError(f"STS file {str(path)!r} does not exist")
  raw = path.read_bytes()
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    raise ValueError(f"{str(path)!r} is not UTF-8: line {line}, byte offset {e.start} "
                     f"({raw[e.start:e.start + 1]!r})") from None
  first, second, scores = [], [], []
  need = max(sentence1, sentence2, score) + 1
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    fields = line.split("\t")
    if len(fields) < need:
      raise ValueError(f"{str(path)!r} line {number} has {len(fields)} tab-separated fields; "
                       f"expected at least {need}")
    try:
      value = float(fields[score])
    except ValueError:
      if not scores and not first:  # a header line
        continue
      raise ValueError(f"{str(path)!r} line {number}: score {fields[score]!r} is not a "
                       "number") from None
    first.append(fields[sentence1])
    second.append(fields[sentence2])
    scores.append(value)
  if len(scores) < 2:
    raise ValueError(f"{str(path)!r} holds {len(scores)} pairs; expected at least 2")
  return {"sentences1": first, "sentences2": second, "scores": np.asarray(scores, np.float64)}
