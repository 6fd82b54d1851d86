"""Exact dense retrieval and ranking metrics (MRR, nDCG, recall, MAP).

`exact_top_k` scores queries against a corpus by dot product and keeps the exact top k, walking
the corpus in chunks so that peak memory is queries x chunk rather than queries x corpus. Queries
are sharded over every device; the corpus is replicated, so no device talks to another.

`retrieval_metrics` turns ranked corpus indices into the usual IR numbers with binary relevance,
matching trec_eval (`recip_rank`, `ndcg_cut`, `recall`, `map_cut`) on the same ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
import functools

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from jaxemb.evaluate import registry

Relevant = Sequence[Iterable[int]] | Mapping[int, Mapping[int, int] | Iterable[int]]

DEFAULT_CHUNK_SIZE = 4096


# --------------------------------------------------------------------------------------------
# Exact top-k.
# --------------------------------------------------------------------------------------------


def _check_embeddings(name: str, emb: np.ndarray) -> np.ndarray:
  emb = np.asarray(emb)
  if emb.ndim != 2:
    raise ValueError(f"{name} must be 2-D [N, D], got shape {emb.shape}")
  try:
    emb = emb.astype(np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be numeric, got dtype {emb.dtype}") from e
  if not np.all(np.isfinite(emb)):
    # NaN would sort above every real score in top_k and silently poison the ranking.
    raise ValueError(f"{name} contains NaN or inf values")
  return emb


def _is_positive_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1


@functools.lru_cache(maxsize=8)
def _data_mesh(devices: tuple[jax.Device, ...]) -> jax.sharding.Mesh:
  return jax.make_mesh(
      (len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
  )


def _local_chunked_top_k(
    queries: jax.Array, corpus: jax.Array, *, k: int, chunk_size: int, num_valid: int
) -> tuple[jax.Array, jax.Array]:
  """Top-k of `queries @ corpus.T` for one device's queries, one corpus chunk at a time.

  `corpus` is padded to a multiple of `chunk_size`; rows at or past `num_valid` score -inf.
  """
  num_chunks = corpus.shape[0] // chunk_size
  chunks = corpus.reshape(num_chunks, chunk_size, corpus.shape[1])

  def chunk_scores(chunk, start):
    scores = jnp.dot(
        queries, chunk.T, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32
    )
    idx = start + jnp.arange(chunk_size, dtype=jnp.int32)
    scores = jnp.where(idx[None, :] < num_valid, scores, -jnp.inf)
    return scores, jnp.broadcast_to(idx, scores.shape)

  # Seed the running top-k from the first chunk (chunk_size >= k) rather than from -inf
  # sentinels, which would tie with, and win against, real -inf scores.
  scores, idx = chunk_scores(chunks[0], 0)
  run_scores, pos = jax.lax.top_k(scores, k)
  run_idx = jnp.take_along_axis(idx, pos, axis=1)

  def merge(carry, xs):
    run_scores, run_idx = carry
    chunk, start = xs
    scores, idx = chunk_scores(chunk, start)
    # Running entries come first and all have lower corpus indices than this chunk; lax.top_k
    # keeps lower positions first among equal values, so ties stay ordered by corpus index.
    all_scores = jnp.concatenate([run_scores, scores], axis=1)
    all_idx = jnp.concatenate([run_idx, idx], axis=1)
    top_scores, pos = jax.lax.top_k(all_scores, k)
    return (top_scores, jnp.take_along_axis(all_idx, pos, axis=1)), None

  if num_chunks > 1:
    starts = jnp.arange(1, num_chunks, dtype=jnp.int32) * chunk_size
    (run_scores, run_idx), _ = jax.lax.scan(merge, (run_scores, run_idx), (chunks[1:], starts))
  return run_scores, run_idx


@functools.lru_cache(maxsize=32)
def _sharded_top_k_fn(mesh: jax.sharding.Mesh, k: int, chunk_size: int, num_valid: int):
  P = jax.sharding.PartitionSpec
  local = functools.partial(
      _local_chunked_top_k, k=k, chunk_size=chunk_size, num_valid=num_valid
  )
  return jax.jit(
      jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P()), out_specs=(P("data"), P("data")))
  )


def _to_host(x: jax.Array) -> np.ndarray:
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def exact_top_k(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k corpus items per query by dot product.

  Scores are computed in float32 at full matmul precision. Ties are broken deterministically:
  among equal scores the lower corpus index comes first, independent of `chunk_size` and of the
  number of devices. Queries are sharded over all of `jax.devices()` (padded to a multiple of
  the device count; the padding is dropped before returning).

  Args:
    query_emb: [Q, D] query embeddings.
    corpus_emb: [C, D] corpus embeddings.
    k: number of results per query, 1 <= k <= C. This function never clamps `k`; callers that
      want "up to k" pass `min(k, C)` (as `evaluate_retrieval` does).
    chunk_size: corpus rows scored at a time; peak memory per device is about
      (Q / devices) x max(chunk_size, k) floats. Need not divide C.

  Returns:
    (scores [Q, k] float32, indices [Q, k] int32), each row sorted by descending score.
  """
  query_emb = _check_embeddings("query_emb", query_emb)
  corpus_emb = _check_embeddings("corpus_emb", corpus_emb)
  (num_q, dim), (num_c, dim_c) = query_emb.shape, corpus_emb.shape
  if dim != dim_c:
    raise ValueError(
        f"query_emb has dimension {dim} but corpus_emb has dimension {dim_c}; expected equal"
    )
  if num_c == 0:
    raise ValueError("corpus_emb is empty (C=0); expected at least one corpus row")
  if not _is_positive_int(k) or k > num_c:
    raise ValueError(f"k={k!r} is out of range; expected an int in [1, C={num_c}]")
  if not _is_positive_int(chunk_size):
    raise ValueError(f"chunk_size={chunk_size!r}; expected a positive int")
  k = int(k)
  if num_q == 0:
    return np.zeros((0, k), np.float32), np.zeros((0, k), np.int32)

  # A chunk must hold at least k rows to seed the running top-k; it never needs more than C.
  chunk = max(k, min(int(chunk_size), num_c))
  num_chunks = -(-num_c // chunk)
  corpus = np.pad(corpus_emb, ((0, num_chunks * chunk - num_c), (0, 0)))

  devices = tuple(jax.devices())
  mesh = _data_mesh(devices)
  padded_q = -(-num_q // len(devices)) * len(devices)
  queries = np.pad(query_emb, ((0, padded_q - num_q), (0, 0)))

  P = jax.sharding.PartitionSpec
  queries = jax.device_put(queries, jax.sharding.NamedSharding(mesh, P("data")))
  corpus = jax.device_put(corpus, jax.sharding.NamedSharding(mesh, P()))
  with jax.set_mesh(mesh):  # its own 1-D mesh, also when called inside a training mesh
    scores, indices = _sharded_top_k_fn(mesh, k, chunk, num_c)(queries, corpus)
  return _to_host(scores)[:num_q], _to_host(indices)[:num_q]


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------


def _relevant_lists(relevant: Relevant, num_queries: int) -> list[np.ndarray]:
  """Normalises `relevant` to one sorted array of unique relevant doc ids per query."""
  if isinstance(relevant, Mapping):
    bad = [q for q in relevant if not isinstance(q, (int, np.integer)) or not 0 <= q < num_queries]
    if bad:
      raise ValueError(
          f"relevant has query keys {bad[:5]} outside [0, {num_queries}); keys must be row "
          "indices of ranked_indices"
      )
    rows = [relevant.get(q, ()) for q in range(num_queries)]
  else:
    rows = list(relevant)
    if len(rows) != num_queries:
      raise ValueError(
          f"relevant has {len(rows)} entries but ranked_indices has {num_queries} rows; "
          "expected one set of relevant doc ids per query"
      )
  out = []
  for q, row in enumerate(rows):
    if isinstance(row, Mapping):
      # Graded qrels: any positive grade counts as relevant (binary metrics).
      row = [doc for doc, grade in row.items() if grade > 0]
    ids = np.unique(np.asarray(list(row), dtype=np.int64))
    if ids.size and ids[0] < 0:
      raise ValueError(f"relevant[{q}] has negative doc id {int(ids[0])}; expected ids >= 0")
    out.append(ids)
  return out


def _hits(ranked: np.ndarray, relevant: list[np.ndarray]) -> np.ndarray:
  """[Q, K] bool: is ranked[q, i] relevant to query q. Vectorised via (query, doc) keys."""
  num_q = ranked.shape[0]
  max_doc = max([int(ranked.max(initial=0))] + [int(r[-1]) for r in relevant if r.size]) + 1
  ranked_keys = np.arange(num_q, dtype=np.int64)[:, None] * max_doc + ranked
  rel_keys = np.concatenate(
      [q * max_doc + r for q, r in enumerate(relevant)] + [np.zeros(0, np.int64)]
  )
  # A negative (padding) id would alias a key of the previous query, so mask it out.
  return np.isin(ranked_keys, rel_keys) & (ranked >= 0)


def _discounts(n: int) -> np.ndarray:
  return 1.0 / np.log2(np.arange(n, dtype=np.float64) + 2.0)


def per_query_metrics(
    ranked_indices: np.ndarray,
    relevant: Relevant,
    *,
    ks: Sequence[int] = (1, 10, 100),
    mrr_k: int = 10,
    ndcg_k: int = 10,
    map_k: int = 100,
) -> dict[str, np.ndarray]:
  """`retrieval_metrics` before the average: metric name -> [Q'] float64, one value per query
  that has relevant docs (in query order). Paired significance tests
  (`jaxemb.evaluate.significance`) compare two models on these."""
  ranked = np.asarray(ranked_indices)
  if ranked.ndim != 2 or ranked.shape[1] == 0 or not np.issubdtype(ranked.dtype, np.integer):
    raise ValueError(
        f"ranked_indices must be a 2-D integer array [Q, K>=1], got shape {ranked.shape} "
        f"dtype {ranked.dtype}"
    )
  for name, k in [("mrr_k", mrr_k), ("ndcg_k", ndcg_k), ("map_k", map_k)] + [
      ("ks", k) for k in ks
  ]:
    if not _is_positive_int(k):
      raise ValueError(f"{name} has cutoff {k!r}; expected a positive int")
  ranked = ranked.astype(np.int64)
  rel = _relevant_lists(relevant, ranked.shape[0])
  keep = np.array([r.size > 0 for r in rel], dtype=bool)
  if not keep.any():
    raise ValueError("no query has a relevant document; expected at least one")
  hits = _hits(ranked, rel)[keep].astype(np.float64)
  num_rel = np.array([r.size for r in rel], dtype=np.float64)[keep]

  out = {}
  top = hits[:, :mrr_k]
  first = np.argmax(top > 0, axis=1)
  out[f"mrr@{mrr_k}"] = np.where(top.any(axis=1), 1.0 / (first + 1.0), 0.0)

  top = hits[:, :ndcg_k]
  disc = _discounts(ndcg_k)
  dcg = top @ disc[: top.shape[1]]
  ideal = np.cumsum(disc)[np.minimum(num_rel, ndcg_k).astype(np.int64) - 1]
  out[f"ndcg@{ndcg_k}"] = dcg / ideal

  for k in ks:
    out[f"recall@{k}"] = hits[:, :k].sum(axis=1) / num_rel

  top = hits[:, :map_k]
  precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
  out[f"map@{map_k}"] = (precision * top).sum(axis=1) / num_rel
  return out


def retrieval_metrics(
    ranked_indices: np.ndarray,
    relevant: Relevant,
    *,
    ks: Sequence[int] = (1, 10, 100),
    mrr_k: int = 10,
    ndcg_k: int = 10,
    map_k: int = 100,
) -> dict[str, float]:
  """Ranking metrics with binary relevance, averaged over queries that have relevant docs.

  Names: `mrr@{mrr_k}`, `ndcg@{ndcg_k}`, `map@{map_k}` and `recall@{k}` for k in `ks`
  (by default `mrr@10`, `ndcg@10`, `map@100`, `recall@1`, `recall@10`, `recall@100`).

  - mrr@k: 1 / rank of the first relevant doc within the top k, else 0.
  - ndcg@k: sum_{i<k} rel_i / log2(i + 2), divided by the ideal DCG over min(|rel|, k) docs.
  - recall@k: |relevant in top k| / |relevant|.
  - map@k: sum_{i<k} rel_i * precision@(i+1) / |relevant| (trec_eval's `map_cut`).

  A cutoff larger than the ranking width uses the whole ranking (so recall@100 on a 50-doc
  corpus counts all 50 retrieved docs). Queries with no relevant docs are left out of the
  averages, as trec_eval does.

  Args:
    ranked_indices: [Q, K] corpus indices, best first. Entries < 0 are padding (never relevant).
    relevant: per query, the relevant corpus indices: a list of Q sets, or a qrels-like mapping
      {query_row: {doc: grade}} / {query_row: set_of_docs}; a grade > 0 counts as relevant.
    ks: recall cutoffs.
    mrr_k, ndcg_k, map_k: cutoffs of the other metrics.

  Returns:
    dict of metric name -> float.
  """
  per_query = per_query_metrics(ranked_indices, relevant, ks=ks, mrr_k=mrr_k, ndcg_k=ndcg_k,
                                map_k=map_k)
  return {name: float(v.mean()) for name, v in per_query.items()}


# --------------------------------------------------------------------------------------------
# Glue.
# --------------------------------------------------------------------------------------------


def _embed(name: str, embed_fn: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
  emb = np.asarray(embed_fn(list(texts)))
  if emb.ndim != 2 or emb.shape[0] != len(texts):
    raise ValueError(
        f"{name} returned shape {emb.shape} for {len(texts)} texts; expected [{len(texts)}, D]"
    )
  return emb


def evaluate_retrieval(
    embed_query_fn: Callable[[list[str]], np.ndarray],
    embed_corpus_fn: Callable[[list[str]], np.ndarray],
    queries: Sequence[str],
    corpus: Sequence[str],
    relevant: Relevant,
    *,
    ks: Sequence[int] = (1, 10, 100),
    mrr_k: int = 10,
    ndcg_k: int = 10,
    map_k: int = 100,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    per_query: bool = False,
) -> dict[str, float] | dict[str, np.ndarray]:
  """Embeds queries and corpus, retrieves exactly by dot product, and scores the ranking.

  Embedding functions should L2-normalise if cosine similarity is intended. The retrieval depth
  is the largest cutoff clamped to the corpus size, min(max cutoffs, C); metrics whose cutoff
  exceeds C use the whole corpus ranking.

  Returns:
    `retrieval_metrics` of the ranking (e.g. `mrr@10`, `ndcg@10`, `recall@100`, ...), or with
    `per_query` the arrays of `per_query_metrics` (one value per query with relevant docs).
  """
  if not corpus:
    raise ValueError("corpus is empty; expected at least one document")
  query_emb = _embed("embed_query_fn", embed_query_fn, list(queries))
  corpus_emb = _embed("embed_corpus_fn", embed_corpus_fn, list(corpus))
  depth = min(max([mrr_k, ndcg_k, map_k, *ks]), len(corpus))
  _, indices = exact_top_k(query_emb, corpus_emb, depth, chunk_size=chunk_size)
  score = per_query_metrics if per_query else retrieval_metrics
  return score(indices, relevant, ks=ks, mrr_k=mrr_k, ndcg_k=ndcg_k, map_k=map_k)


def retrieval_evaluator(
    embed_fn: Callable[[list[str]], np.ndarray], data: Mapping
) -> Iterator[tuple[str, float]]:
  """Evaluator over `data = {"queries", "corpus", "relevant"}` with one `embed_fn` for both
  sides; optional "ks" and "chunk_size" entries override the defaults."""
  queries, corpus, relevant = registry.require_fields(
      "retrieval", data, ("queries", "corpus", "relevant")
  )
  options = {key: data[key] for key in ("ks", "chunk_size") if key in data}
  yield from evaluate_retrieval(embed_fn, embed_fn, queries, corpus, relevant, **options).items()
