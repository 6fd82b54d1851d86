"""Reconstruction mean rank / MAP against a brute-force loop with sklearn's average precision."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from jaxemb.evaluate.reconstruction import reconstruction
from jaxemb.geometry import poincare


def _brute_force(dist, edges, n):
  """The reference's definition, one (u, v) at a time (reconstruction_worker / _slow)."""
  adj: dict[int, set[int]] = {}
  for u, v in edges:
    adj.setdefault(int(u), set()).add(int(v))
  ranks, aps = [], []
  for u, nbrs in adj.items():
    d = dist[u].copy()
    d[u] = 1e12
    for v in nbrs:
      ranks.append(1 + sum(1 for w in range(n) if w != u and w not in nbrs and d[w] < d[v]))
    labels = np.zeros(n)
    labels[list(nbrs)] = 1
    aps.append(average_precision_score(labels, -d))
  return np.mean(ranks), np.mean(aps)


@pytest.mark.parametrize("batch_size", [7, 64])
def test_matches_brute_force_loop(batch_size):
  rng = np.random.default_rng(0)
  n = 40
  x = jnp.asarray(rng.uniform(-0.6, 0.6, (n, 3)), jnp.float32)
  dist = np.asarray(poincare.dist(x[:, None], x[None]), np.float64)
  # A random DAG's edges (u > v) with varying out-degree; some nodes have none.
  edges = np.asarray([(u, v) for u in range(n) for v in range(u)
                      if rng.random() < 4 / (u + 1)], np.int64)
  got = reconstruction(lambda rows: dist[rows], edges, n, batch_size=batch_size)
  want_rank, want_map = _brute_force(dist, edges, n)
  assert got["num_queries"] == len(set(edges[:, 0].tolist()))
  np.testing.assert_allclose(got["mean_rank"], want_rank, rtol=1e-12)
  np.testing.assert_allclose(got["map"], want_map, rtol=1e-6)
  assert got["mean_rank"] > 1.5 and got["map"] < 0.9  # random points: far from perfect


def test_hand_counted_ranks_and_bad_input():
  # Star: nodes 1..5 at 0.1u on a line, each with the single neighbour 0 (at the origin).
  # Non-neighbours closer to u than 0 are those within 0.1u: u=1: none; u=2: {1, 3};
  # u=3: {1, 2, 4, 5}; u=4: {1, 2, 3, 5}; u=5: {1, 2, 3, 4}. One neighbour: AP = 1/rank.
  n = 6
  pts = np.arange(n) * 0.1
  edges = np.asarray([(u, 0) for u in range(1, n)])
  dist = np.abs(pts[:, None] - pts[None, :])
  ranks = np.asarray([1, 3, 5, 5, 5])
  got = reconstruction(lambda rows: dist[rows], edges, n)
  np.testing.assert_allclose(got["mean_rank"], ranks.mean())
  np.testing.assert_allclose(got["map"], np.mean(1 / ranks), rtol=1e-6)
  # Embedding 0 at the centre of a tiny circle of the others: perfect reconstruction.
  # (A regular pentagon: neighbouring vertices are 2 sin(pi/5) = 1.18 apart, the centre 1.)
  angle = 2 * np.pi * np.arange(1, n) / 5
  ring = np.concatenate([[[0, 0]], np.stack([np.cos(angle), np.sin(angle)], -1)])
  d2 = np.linalg.norm(ring[:, None] - ring[None], axis=-1)
  got = reconstruction(lambda rows: d2[rows], edges, n)
  assert got["mean_rank"] == 1.0 and got["map"] == pytest.approx(1.0)
  with pytest.raises(ValueError, match="self-loops"):
    reconstruction(lambda rows: dist[rows], np.asarray([[1, 1]]), n)
  with pytest.raises(ValueError, match="edge ids must be in"):
    reconstruction(lambda rows: dist[rows], np.asarray([[1, 9]]), n)
  with pytest.raises(ValueError, match="returned shape"):
    reconstruction(lambda rows: dist[rows][:, :3], edges, n)
