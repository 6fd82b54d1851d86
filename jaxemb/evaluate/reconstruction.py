"""Graph reconstruction: mean rank and MAP of an embedding of a (directed) relation.

As Nickel & Kiela 2017 and facebookresearch/poincare-embeddings (`hype/graph.py`,
`eval_reconstruction`): every node u with at least one neighbour (an edge (u, v); for a
hypernym closure, u's ancestors) ranks all other nodes by distance. The rank of neighbour v
is 1 + the number of u's non-neighbours (u itself excluded) strictly closer than v, so
the other neighbours never push it down; mean rank averages over all edges. MAP averages
over the nodes u the average precision of u's neighbours in that ranking (sklearn's
`average_precision_score` of -distance, which the reference uses). Ties count in the
neighbour's favour (measure zero for real embeddings).

    metrics = reconstruction(dist_rows, edges, num_nodes)   # {"mean_rank": .., "map": ..}

`dist_rows(rows) -> [len(rows), num_nodes]` distances from the nodes `rows` to every node;
it sees a fixed batch size (rows padded with repeats) so a jitted one compiles once.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _row_stats(d: jax.Array, pos: jax.Array, self_mask: jax.Array):
  """Per row: (sum of neighbour ranks, number of neighbours, sum of precisions)."""
  inf = jnp.asarray(jnp.inf, d.dtype)
  neg_sorted = jnp.sort(jnp.where(pos | self_mask, inf, d), axis=-1)
  pos_sorted = jnp.sort(jnp.where(pos, d, inf), axis=-1)
  search = jax.vmap(lambda a, v: jnp.searchsorted(a, v, side="left"))
  closer_neg = search(neg_sorted, d)  # non-neighbours strictly closer
  closer_pos = search(pos_sorted, d)  # other neighbours strictly closer
  rank = 1 + closer_neg
  k = 1 + closer_pos  # this neighbour's place among the neighbours
  precision = k / (k + closer_neg)
  posf = pos.astype(jnp.float32)
  return (jnp.sum(rank * posf, -1), jnp.sum(posf, -1), jnp.sum(precision * posf, -1))


def reconstruction(dist_rows: Callable[[np.ndarray], jax.Array | np.ndarray],
                   edges: np.ndarray, num_nodes: int,
                   batch_size: int = 256) -> dict[str, float]:
  """Mean rank and MAP of the relation `edges` ([E, 2] int (u, v) pairs) under `dist_rows`.

  Only nodes that appear as u count as queries. Returns {"mean_rank", "map", "num_queries"}.
  """
  edges = np.asarray(edges)
  if edges.ndim != 2 or edges.shape[1] != 2 or len(edges) == 0:
    raise ValueError(f"edges must be a non-empty [E, 2] array of (u, v) ids, got shape "
                     f"{edges.shape}")
  if edges.min() < 0 or edges.max() >= num_nodes:
    raise ValueError(f"edge ids must be in [0, {num_nodes}), got [{edges.min()}, "
                     f"{edges.max()}]")
  if np.any(edges[:, 0] == edges[:, 1]):
    raise ValueError("edges contain self-loops (u, u); the ranking excludes u itself")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  order = np.lexsort((edges[:, 1], edges[:, 0]))
  edges = edges[order]
  queries, starts = np.unique(edges[:, 0], return_index=True)
  ends = np.append(starts[1:], len(edges))
  ranksum = npos = apsum = 0.0
  for b in range(0, len(queries), batch_size):
    rows = queries[b:b + batch_size]
    n = len(rows)
    padded = np.concatenate([rows, np.full(batch_size - n, rows[-1])])
    pos = np.zeros((batch_size, num_nodes), bool)
    for i in range(n):  # mark each query's neighbours
      pos[i, edges[starts[b + i]:ends[b + i], 1]] = True
    self_mask = np.zeros((batch_size, num_nodes), bool)
    self_mask[np.arange(batch_size), padded] = True
    d = jnp.asarray(dist_rows(padded))
    if d.shape != (batch_size, num_nodes):
      raise ValueError(f"dist_rows returned shape {d.shape}, expected "
                       f"{(batch_size, num_nodes)}")
    r, c, p = (np.asarray(a, np.float64)[:n] for a in _row_stats(d, pos, self_mask))
    ranksum += r.sum()
    npos += c.sum()
    apsum += (p / c).sum()
  return {"mean_rank": float(ranksum / npos), "map": float(apsum / len(queries)),
          "num_queries": int(len(queries))}
