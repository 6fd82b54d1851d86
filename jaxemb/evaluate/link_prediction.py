"""Filtered rank-based link-prediction evaluation (both sides), as PyKEEN 1.11.1 computes it.

For every evaluated triple (h, r, t) the tail side scores (h, r, e) for every entity e and the
head side (e, r, t). Entities that form a known triple (train + valid + test, the "filter") are
removed from the candidates, except the true one. With s the true triple's score:

  optimistic rank  = 1 + #{candidates with score > s}
  pessimistic rank = #{candidates with score >= s}        (counts the true entity itself)
  realistic rank   = (optimistic + pessimistic) / 2       (PyKEEN's default, ties split)
  candidates       = #{unfiltered entities} (the true one included)

Metrics (`metrics`) pool both sides: MRR = mean 1/rank, MR = mean rank, Hits@k = share of ranks
<= k, AMRI = (MR - E[MR]) / (1 - E[MR]) with E[MR] = mean (candidates + 1) / 2.

Memory: queries are scored in batches of Q rows against all entities, `[Q, num_entities]` at a
time with Q = budget // num_entities, so memory is bounded by `budget` scores whatever the
number of test triples; with the entity table sharded over devices the `[Q, E]` block is
sharded along E by XLA. Scoring, filtering and counting run in one jitted function per side.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# score_fn(params, a, b) -> [Q, E]: a, b are `[Q]` int32; tail side (h, r), head side (r, t).
ScoreFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
RANK_TYPES = ("optimistic", "pessimistic", "realistic")
SIDES = ("head", "tail")
HITS_AT = (1, 3, 10)


def _check_triples(name: str, triples: np.ndarray, num_entities: int,
                   num_relations: int | None = None) -> np.ndarray:
  triples = np.asarray(triples)
  if triples.ndim != 2 or triples.shape[1] != 3 or not np.issubdtype(triples.dtype, np.integer):
    raise ValueError(f"{name} must be an integer array [N, 3], got {triples.dtype} "
                     f"{triples.shape}")
  ents = triples[:, [0, 2]]
  if len(triples) and (ents.min() < 0 or ents.max() >= num_entities):
    raise ValueError(f"{name} has entity ids outside [0, {num_entities}): "
                     f"min {ents.min()}, max {ents.max()}")
  if num_relations is not None and len(triples) and (
      triples[:, 1].min() < 0 or triples[:, 1].max() >= num_relations):
    raise ValueError(f"{name} has relation ids outside [0, {num_relations})")
  return triples.astype(np.int64)


class _Index:
  """Known answers per query key, as sorted keys with contiguous answer ranges."""

  def __init__(self, keys: np.ndarray, answers: np.ndarray):
    order = np.argsort(keys, kind="stable")
    self.keys, self.answers = keys[order], answers[order]

  def lookup(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query position, answer) pairs of all known answers of `queries`."""
    lo = np.searchsorted(self.keys, queries, side="left")
    hi = np.searchsorted(self.keys, queries, side="right")
    lengths = hi - lo
    rows = np.repeat(np.arange(len(queries)), lengths)
    starts = np.repeat(lo - np.cumsum(lengths) + lengths, lengths)
    return rows, self.answers[starts + np.arange(lengths.sum())]


def _counts(scores: jax.Array, target: jax.Array, filter_rows: jax.Array,
            filter_cols: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  q, e = scores.shape
  scores = scores.astype(jnp.float32)
  true = jnp.take_along_axis(scores, target[:, None], axis=1)
  # Padding pairs carry row index q and are dropped by the scatter.
  filtered = jnp.zeros((q, e), bool).at[filter_rows, filter_cols].set(True, mode="drop")
  keep = ~filtered | (jnp.arange(e)[None, :] == target[:, None])
  greater = jnp.sum(keep & (scores > true), axis=1)
  not_smaller = jnp.sum(keep & (scores >= true), axis=1)
  return greater, not_smaller, jnp.sum(keep, axis=1)


@functools.lru_cache(maxsize=64)
def _jitted_counts(fn: ScoreFn) -> Callable:
  # One jitted function per score function object: repeated evaluations (every eval_every
  # steps) reuse its compilations instead of retracing a fresh closure.
  return jax.jit(lambda params, a, b, target, rows, cols: _counts(fn(params, a, b), target,
                                                                  rows, cols))


def _pad_pow2(n: int) -> int:
  return 1 if n <= 1 else 1 << (n - 1).bit_length()


def rank_triples(score_tails: ScoreFn, score_heads: ScoreFn, params: Any, triples: np.ndarray,
                 known: np.ndarray, num_entities: int, *, filtered: bool = True,
                 budget: int = 1 << 22, batch_size: int | None = None
                 ) -> dict[str, dict[str, np.ndarray]]:
  """Ranks of `triples` on both sides: {"head"|"tail": {rank type: [N], "candidates": [N]}}.

  score_tails(params, h, r) / score_heads(params, r, t): `[Q]` ids -> `[Q, num_entities]`
  scores (jax-traceable; jitted here with `params` as an argument, so the entity table may be
  sharded). `known`: every true triple to filter (train + valid + test; must include
  `triples` themselves when `filtered`). `budget`: max scores held at once (Q x E).
  """
  triples = _check_triples("triples", triples, num_entities)
  known = _check_triples("known", known, num_entities) if filtered else np.zeros((0, 3), np.int64)
  q = batch_size or max(1, min(len(triples), budget // max(num_entities, 1)))
  num_rel = int(max(triples[:, 1].max(initial=0), known[:, 1].max(initial=0))) + 1
  out = {}
  for side, fn in (("tail", score_tails), ("head", score_heads)):
    if side == "tail":
      a, b, target = triples[:, 0], triples[:, 1], triples[:, 2]
      index = _Index(known[:, 0] * num_rel + known[:, 1], known[:, 2])
      query_keys = a * num_rel + b
    else:
      a, b, target = triples[:, 1], triples[:, 2], triples[:, 0]
      index = _Index(known[:, 1] * num_entities + known[:, 2], known[:, 0])
      query_keys = a * num_entities + b

    counts = _jitted_counts(fn)
    results = []
    for start in range(0, len(triples), q):
      stop = min(start + q, len(triples))
      pad = q - (stop - start)

      def padded(x):
        return jnp.asarray(np.concatenate([x[start:stop], np.zeros(pad, x.dtype)]), jnp.int32)

      rows, cols = index.lookup(query_keys[start:stop])
      size = _pad_pow2(len(rows))
      rows = np.concatenate([rows, np.full(size - len(rows), q)])
      cols = np.concatenate([cols, np.zeros(size - len(cols), np.int64)])
      res = counts(params, padded(a), padded(b), padded(target), jnp.asarray(rows, jnp.int32),
                   jnp.asarray(cols, jnp.int32))
      results.append([np.asarray(x)[: stop - start] for x in res])
    greater, not_smaller, cand = (np.concatenate(x) for x in zip(*results))
    optimistic = greater + 1
    out[side] = {"optimistic": optimistic.astype(np.float64),
                 "pessimistic": not_smaller.astype(np.float64),
                 "realistic": 0.5 * (optimistic + not_smaller),
                 "candidates": cand.astype(np.float64)}
  return out


def metrics(ranks: dict[str, dict[str, np.ndarray]], rank_type: str = "realistic",
            sides: tuple[str, ...] = SIDES, hits_at: tuple[int, ...] = HITS_AT
            ) -> dict[str, float]:
  """{"mrr", "mr", "hits@k", "amri"} of `rank_type` ranks pooled over `sides` (PyKEEN's both)."""
  if rank_type not in RANK_TYPES:
    raise ValueError(f"rank_type must be one of {RANK_TYPES}, got {rank_type!r}")
  r = np.concatenate([ranks[s][rank_type] for s in sides])
  cand = np.concatenate([ranks[s]["candidates"] for s in sides])
  if not len(r):
    raise ValueError("no ranks to summarise")
  mr = float(r.mean())
  expected = float(np.mean(0.5 * (cand + 1)))
  out = {"mrr": float(np.mean(1.0 / r)), "mr": mr}
  out.update({f"hits@{k}": float(np.mean(r <= k)) for k in hits_at})
  out["amri"] = (mr - expected) / (1.0 - expected) if expected != 1.0 else 0.0
  return out


def evaluate(score_tails: ScoreFn, score_heads: ScoreFn, params: Any, triples: np.ndarray,
             known: np.ndarray, num_entities: int, **kwargs) -> dict[str, float]:
  """Filtered realistic both-sides metrics of `triples` (see `rank_triples`, `metrics`)."""
  return metrics(rank_triples(score_tails, score_heads, params, triples, known, num_entities,
                              **kwargs))
