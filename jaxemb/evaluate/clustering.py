"""Clustering evaluation: k-means in JAX and the V-measure of its clusters against labels.

`kmeans` runs Lloyd's algorithm (k-means++ seeding from an explicit key, or given initial
centres) as one jitted `lax.while_loop`, `n_init` restarts keeping the lowest inertia, as
sklearn's `KMeans(algorithm="lloyd")`. `v_measure` is the harmonic mean of homogeneity and
completeness (Rosenberg & Hirschberg, 2007), computed from the contingency table as sklearn's
`v_measure_score`. MTEB's clustering tasks report V-measure of k-means with k = #labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxemb.evaluate import registry


def _sq_dists(x: jax.Array, centres: jax.Array) -> jax.Array:
  # |x|^2 - 2 x.c + |c|^2, clamped: rounding can make it slightly negative.
  d = (jnp.sum(x * x, 1)[:, None] - 2 * jnp.dot(x, centres.T, precision="highest")
       + jnp.sum(centres * centres, 1)[None, :])
  return jnp.maximum(d, 0.0)


def _plus_plus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
  """k-means++ seeding: each next centre drawn with probability proportional to D(x)^2."""
  n = x.shape[0]
  key, sub = jax.random.split(key)
  first = x[jax.random.randint(sub, (), 0, n)]
  centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
  closest = _sq_dists(x, first[None])[:, 0]

  def body(i, carry):
    centres, closest, key = carry
    key, sub = jax.random.split(key)
    total = jnp.sum(closest)
    # All points coincide with centres: fall back to a uniform draw.
    p = jnp.where(total > 0, closest / jnp.where(total > 0, total, 1.0), 1.0 / n)
    c = x[jax.random.choice(sub, n, p=p)]
    return centres.at[i].set(c), jnp.minimum(closest, _sq_dists(x, c[None])[:, 0]), key

  centres, _, _ = jax.lax.fori_loop(1, k, body, (centres, closest, key))
  return centres


def _lloyd(x, centres, max_iter, tol):
  """Lloyd iterations until the centre shift (squared Frobenius) <= tol or max_iter."""
  k = centres.shape[0]

  def step(carry):
    centres, _, i = carry
    labels = jnp.argmin(_sq_dists(x, centres), axis=1)
    onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)
    counts = onehot.sum(0)
    sums = jnp.dot(onehot.T, x, precision="highest")
    # An empty cluster keeps its centre.
    new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centres)
    return new, jnp.sum((new - centres) ** 2), i + 1

  def cont(carry):
    return (carry[1] > tol) & (carry[2] < max_iter)

  centres, _, n_iter = jax.lax.while_loop(cont, step, (centres, jnp.inf, 0))
  dists = _sq_dists(x, centres)
  labels = jnp.argmin(dists, axis=1)
  return centres, labels, jnp.sum(jnp.min(dists, axis=1)), n_iter


@functools.partial(jax.jit, static_argnums=(2, 3))
def _kmeans_runs(keys, x, k, max_iter, tol):
  def one(key):
    return _lloyd(x, _plus_plus(key, x, k), max_iter, tol)
  return jax.lax.map(one, keys)


_lloyd_jit = jax.jit(_lloyd, static_argnums=(2,))


def kmeans(x, k: int, *, key: jax.Array | int = 0, n_init: int = 3, init=None,
           max_iter: int = 300, tol: float = 1e-4) -> dict[str, np.ndarray | float]:
  """k-means (Lloyd) in JAX.

  Args:
    x: [N, D] points.
    k: clusters, 1 <= k <= N.
    key: PRNG key (or int seed) for k-means++ seeding.
    n_init: restarts; the run with the lowest inertia is returned.
    init: optional [k, D] initial centres (then one run, no seeding).
    max_iter: Lloyd iterations at most.
    tol: relative tolerance: stop when the squared centre shift <= tol * mean per-feature
      variance of x (sklearn's convention).

  Returns:
    {"centres": [k, D] float32, "labels": [N] int, "inertia": sum of squared distances to the
    nearest centre, "n_iter": iterations of the returned run}.
  """
  x = np.asarray(x, np.float32)
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"x must be a non-empty 2-D array [N, D], got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError("x contains NaN or inf values")
  if not isinstance(k, (int, np.integer)) or not 1 <= k <= x.shape[0]:
    raise ValueError(f"k={k!r} is out of range; expected an int in [1, N={x.shape[0]}]")
  tol_abs = jnp.float32(tol * np.mean(np.var(x, axis=0)))
  if init is not None:
    init = np.asarray(init, np.float32)
    if init.shape != (k, x.shape[1]):
      raise ValueError(f"init has shape {init.shape}, expected ({k}, {x.shape[1]})")
    centres, labels, inertia, n_iter = _lloyd_jit(jnp.asarray(x), jnp.asarray(init),
                                                  int(max_iter), tol_abs)
  else:
    if n_init < 1:
      raise ValueError(f"n_init={n_init!r}; expected >= 1")
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    runs = _kmeans_runs(jax.random.split(key, n_init), jnp.asarray(x), int(k), int(max_iter),
                        tol_abs)
    best = int(jnp.argmin(runs[2]))  # first lowest inertia
    centres, labels, inertia, n_iter = (r[best] for r in runs)
  return {"centres": np.asarray(centres), "labels": np.asarray(labels),
          "inertia": float(inertia), "n_iter": int(n_iter)}


def _entropy(counts: np.ndarray) -> float:
  p = counts[counts > 0] / counts.sum()
  return float(-np.sum(p * np.log(p)))


def v_measure(labels_true, labels_pred, beta: float = 1.0) -> dict[str, float]:
  """Homogeneity, completeness and V-measure of a clustering against true labels.

  h = 1 - H(C|K) / H(C), c = 1 - H(K|C) / H(K) (each 1 when its entropy is 0), V = (1 + beta)
  h c / (beta h + c). Labels may be any hashable values.
  """
  t, p = np.asarray(labels_true), np.asarray(labels_pred)
  if t.ndim != 1 or t.shape != p.shape:
    raise ValueError(f"labels must be 1-D of one length, got shapes {t.shape} and {p.shape}")
  if t.size == 0:
    raise ValueError("labels are empty; expected at least one point")
  _, ti = np.unique(t, return_inverse=True)
  _, pi = np.unique(p, return_inverse=True)
  table = np.zeros((ti.max() + 1, pi.max() + 1))
  np.add.at(table, (ti, pi), 1)
  n = t.size
  h_c, h_k = _entropy(table.sum(1)), _entropy(table.sum(0))
  nz = table > 0
  # Mutual information I(C; K); H(C|K) = H(C) - I, H(K|C) = H(K) - I.
  outer = np.outer(table.sum(1), table.sum(0))
  mi = float(np.sum(table[nz] / n * np.log(table[nz] * n / outer[nz])))
  homogeneity = 1.0 if h_c == 0 else mi / h_c
  completeness = 1.0 if h_k == 0 else mi / h_k
  denom = beta * homogeneity + completeness
  v = 0.0 if denom == 0 else (1 + beta) * homogeneity * completeness / denom
  return {"homogeneity": homogeneity, "completeness": completeness, "v_measure": v}


def clustering_metrics(emb, labels, *, key: jax.Array | int = 0, n_init: int = 3,
                       k: int | None = None) -> dict[str, float]:
  """k-means of `emb` with k = number of distinct labels (or `k`): V-measure and its parts."""
  labels = np.asarray(labels)
  k = k or len(np.unique(labels))
  result = kmeans(emb, k, key=key, n_init=n_init)
  return v_measure(labels, result["labels"])


def clustering_evaluator(embed_fn: Callable[[list[str]], np.ndarray],
                         data: Mapping) -> Iterator[tuple[str, float]]:
  """Evaluator over `data = {"texts", "labels"}`: `v_measure`, `homogeneity`, `completeness`."""
  texts, labels = registry.require_fields("clustering", data, ("texts", "labels"))
  yield from clustering_metrics(np.asarray(embed_fn(list(texts))), labels,
                                key=data.get("seed", 0)).items()
