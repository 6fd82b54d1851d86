"""Exact top-k semantic search over float, int8/uint8 or binary corpora, sharded over devices.

The corpus is split by rows over every device of a mesh (by default a 1-D mesh of all devices;
a caller's mesh is used whole, rows split over all of its axes). Each device walks its rows in
chunks, keeping a running `lax.top_k`; the per-device top-k lists are all-gathered and merged by
one more `lax.top_k`. Ties go to the lower corpus id, independent of chunk size and device count
(lax.top_k keeps lower positions first among equal values, and every merge puts lower ids first).

Quantized corpora are searched as sentence-transformers' `semantic_search_usearch` does: the
float query is quantized with the corpus' ranges, a first pass scores int8/uint8 bucket ids by
inner product or binary codes by minus the Hamming distance, and (with `rescore`) the first
`top_k * rescore_multiplier` candidates are rescored by the float query against the dequantized
rows (int8/uint8) or the 0/1 bits (binary), then the best `top_k` are kept.

    index = Index(384, precision="ubinary")
    index.add(corpus_emb)
    scores, ids = index.search(query_emb, top_k=10)
    index.save("corpus.safetensors"); index = Index.load("corpus.safetensors")
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxemb.quantization import (
    check_precision, dequantize_embeddings, quantization_ranges, quantize_embeddings, unpack_binary)

SCORE_FNS = ("cosine", "dot")
DEFAULT_CHUNK_SIZE = 8192
_FORMAT = "jaxemb.search.Index/1"


def _check_float(name: str, x, dim: int | None = None) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == 1:
    x = x[None, :]
  if x.ndim != 2:
    raise ValueError(f"{name} must be 2-D [N, D], got shape {x.shape}")
  if x.dtype.kind not in "fiu":
    raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
  x = x.astype(np.float32, copy=False)
  if not np.all(np.isfinite(x)):
    bad = np.argwhere(~np.isfinite(x))[0]
    raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]}: "
                     f"{x[bad[0], bad[1]]}); expected finite values")
  if dim is not None and x.shape[1] != dim:
    raise ValueError(f"{name} has dimension {x.shape[1]}, expected {dim} (the index dimension)")
  return x


def _normalize(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _is_positive_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1


@functools.lru_cache(maxsize=8)
def _default_mesh(devices: tuple[jax.Device, ...]) -> jax.sharding.Mesh:
  return jax.make_mesh((len(devices),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


# --------------------------------------------------------------------------------------------
# The sharded kernel.
# --------------------------------------------------------------------------------------------


def _chunk_scores(queries: jax.Array, chunk: jax.Array, kind: str) -> jax.Array:
  """[Q, chunk] first-pass scores. `kind`: "float" (dot), "int" (dot of bucket ids, exact in
  float32: |sum| <= D * 255^2 < 2^24 for D <= 258, and far inside float32 rounding beyond) or
  "bits" (minus the Hamming distance of packed uint8 codes; queries arrive as 0/1 floats)."""
  if kind == "bits":
    shifts = jnp.arange(7, -1, -1, dtype=jnp.uint8)
    bits = (chunk[:, :, None] >> shifts) & 1  # [chunk, B, 8], most significant bit first
    bits = bits.reshape(chunk.shape[0], -1).astype(jnp.float32)
    bits = bits[:, :queries.shape[1]]
    # hamming = |q| + |c| - 2 q.c for 0/1 vectors; one matmul instead of a popcount per pair.
    qc = jnp.dot(queries, bits.T, precision=jax.lax.Precision.HIGHEST)
    return 2 * qc - jnp.sum(queries, axis=1, keepdims=True) - jnp.sum(bits, axis=1)[None, :]
  return jnp.dot(queries, chunk.astype(jnp.float32).T, precision=jax.lax.Precision.HIGHEST,
                 preferred_element_type=jnp.float32)


def _shard_top_k(queries, corpus, *, k, chunk_size, num_valid, kind, axes):
  """Top-k of one device's corpus rows, then merged across all devices."""
  rows = corpus.shape[0]
  shard = jax.lax.axis_index(axes) if axes else 0
  offset = shard * rows
  num_chunks = rows // chunk_size
  chunks = corpus.reshape(num_chunks, chunk_size, *corpus.shape[1:])

  def scores_of(chunk, start):
    scores = _chunk_scores(queries, chunk, kind)
    idx = start + jnp.arange(chunk_size, dtype=jnp.int32)
    # Padding rows (ids >= num_valid) never win: real scores are finite.
    scores = jnp.where(idx[None, :] < num_valid, scores, -jnp.inf)
    return scores, jnp.broadcast_to(idx, scores.shape)

  scores, idx = scores_of(chunks[0], offset)
  run_scores, pos = jax.lax.top_k(scores, k)
  run_idx = jnp.take_along_axis(idx, pos, axis=1)

  def merge(carry, xs):
    chunk, start = xs
    scores, idx = scores_of(chunk, start)
    all_scores = jnp.concatenate([carry[0], scores], axis=1)
    all_idx = jnp.concatenate([carry[1], idx], axis=1)
    top, pos = jax.lax.top_k(all_scores, k)
    return (top, jnp.take_along_axis(all_idx, pos, axis=1)), None

  if num_chunks > 1:
    starts = offset + jnp.arange(1, num_chunks, dtype=jnp.int32) * chunk_size
    (run_scores, run_idx), _ = jax.lax.scan(merge, (run_scores, run_idx), (chunks[1:], starts))
  if not axes:
    return run_scores, run_idx
  # [S, Q, k] in shard order: shard s holds lower ids than shard s+1, so ties stay id-ordered.
  all_scores = jax.lax.all_gather(run_scores, axes, axis=1, tiled=True)
  all_idx = jax.lax.all_gather(run_idx, axes, axis=1, tiled=True)
  top, pos = jax.lax.top_k(all_scores, k)
  return top, jnp.take_along_axis(all_idx, pos, axis=1)


@functools.lru_cache(maxsize=64)
def _search_fn(mesh, k, chunk_size, num_valid, kind):
  axes = tuple(mesh.axis_names)
  local = functools.partial(_shard_top_k, k=k, chunk_size=chunk_size, num_valid=num_valid,
                            kind=kind, axes=axes)
  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axes)), out_specs=(P(), P()),
                               check_vma=False))


def _replicated_to_host(x: jax.Array) -> np.ndarray:
  # Replicated output: every process holds all of it, no cross-host gather needed.
  return np.asarray(x.addressable_data(0))


# --------------------------------------------------------------------------------------------
# Index.
# --------------------------------------------------------------------------------------------


class Index:
  """A growable corpus of embeddings, stored at one precision, searched exactly.

  Args:
    dim: embedding dimension D of the float vectors added and queried.
    precision: storage precision ("float32", "int8", "uint8", "binary", "ubinary").
    score_fn: "cosine" (rows and queries L2-normalised before quantization) or "dot".
    ranges: [2, D] int8/uint8 calibration ranges; by default taken from the first rows added
      (at least 2), as `quantize_embeddings` would from those rows.
    mesh: a `jax.sharding.Mesh` to split corpus rows over (all its axes); default: all devices.
    chunk_size: corpus rows scored at a time on each device.
  """

  def __init__(self, dim: int, precision: str = "float32", *, score_fn: str = "cosine",
               ranges=None, mesh: jax.sharding.Mesh | None = None,
               chunk_size: int = DEFAULT_CHUNK_SIZE):
    if not _is_positive_int(dim):
      raise ValueError(f"dim={dim!r}; expected a positive int")
    if score_fn not in SCORE_FNS:
      raise ValueError(f"unknown score_fn {score_fn!r}; expected one of {list(SCORE_FNS)}")
    if not _is_positive_int(chunk_size):
      raise ValueError(f"chunk_size={chunk_size!r}; expected a positive int")
    self.dim, self.precision, self.score_fn = int(dim), check_precision(precision), score_fn
    self.chunk_size, self.mesh = int(chunk_size), mesh
    if ranges is not None:
      ranges = np.asarray(ranges, np.float32)
      if ranges.shape != (2, self.dim):
        raise ValueError(f"ranges must have shape (2, {self.dim}), got {ranges.shape}")
    self.ranges = ranges
    width = (self.dim + 7) // 8 if precision.endswith("binary") else self.dim
    self._rows = [np.zeros((0, width), self.storage_dtype)]
    self._device = None  # (corpus array, rows per chunk) placed on the mesh; reset by add

  @property
  def storage_dtype(self) -> np.dtype:
    """dtype of the stored rows: float32, int8, or uint8 (binary codes are kept unsigned)."""
    return np.dtype({"float32": np.float32, "int8": np.int8}.get(self.precision, np.uint8))

  def __len__(self) -> int:
    return sum(len(r) for r in self._rows)

  @property
  def rows(self) -> np.ndarray:
    """The stored rows [N, D] (or [N, ceil(D/8)] packed ubinary codes)."""
    if len(self._rows) > 1:
      self._rows = [np.concatenate(self._rows)]
    return self._rows[0]

  def add(self, embeddings) -> "Index":
    """Appends float embeddings [N, D] (quantized here) or rows already quantized to this
    index's precision (int8/uint8 [N, D]; binary/ubinary [N, ceil(D/8)]). Returns self."""
    emb = np.asarray(embeddings)
    if emb.ndim == 1:
      emb = emb[None, :]
    if emb.dtype in (np.int8, np.uint8) and self.precision != "float32":
      rows = self._check_quantized(emb)
    else:
      emb = _check_float("embeddings", emb, self.dim)
      if self.score_fn == "cosine":
        emb = _normalize(emb)
      if self.precision.endswith("int8") and self.ranges is None:
        self.ranges = quantization_ranges(emb, self.precision).astype(np.float32)
      precision = "ubinary" if self.precision == "binary" else self.precision
      rows = quantize_embeddings(emb, precision, ranges=self.ranges)
    self._rows.append(rows)
    self._device = None
    return self

  def _check_quantized(self, emb: np.ndarray) -> np.ndarray:
    binary = self.precision.endswith("binary")
    want = (self.dim + 7) // 8 if binary else self.dim
    if emb.ndim != 2 or emb.shape[1] != want:
      raise ValueError(f"quantized rows have shape {emb.shape}, expected [N, {want}] for "
                       f"{self.precision} codes of dimension {self.dim}")
    if self.precision == "binary" and emb.dtype == np.int8:
      return (emb.astype(np.int16) + 128).astype(np.uint8)  # undo the -128 offset
    if emb.dtype != np.dtype(np.int8 if self.precision in ("int8", "binary") else np.uint8):
      raise ValueError(f"rows of dtype {emb.dtype} do not match precision {self.precision!r}")
    if self.precision.endswith("int8") and self.ranges is None:
      raise ValueError(f"adding {self.precision} rows needs the index's ranges= (the "
                       "calibration ranges they were quantized with)")
    return emb

  def _placed(self, k: int):
    mesh = self.mesh or _default_mesh(tuple(jax.devices()))
    shards = mesh.size
    n = len(self)
    per_shard = -(-n // shards)
    chunk = max(k, min(self.chunk_size, per_shard))
    per_shard = -(-per_shard // chunk) * chunk
    if self._device is None or self._device[1] != chunk or self._device[2] is not mesh:
      rows = self.rows
      padded = np.zeros((per_shard * shards, rows.shape[1]), rows.dtype)
      padded[:n] = rows
      sharding = NamedSharding(mesh, P(tuple(mesh.axis_names)))
      arr = jax.make_array_from_callback(padded.shape, sharding, lambda i: padded[i])
      self._device = (arr, chunk, mesh)
    return self._device

  def _first_pass_queries(self, queries: np.ndarray) -> tuple[np.ndarray, str]:
    if self.precision == "float32":
      return queries, "float"
    if self.precision.endswith("int8"):
      return quantize_embeddings(queries, self.precision, ranges=self.ranges).astype(
          np.float32), "int"
    return (queries > 0).astype(np.float32), "bits"

  def search(self, queries, top_k: int = 10, *, rescore: bool = True,
             rescore_multiplier: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k per query.

    Args:
      queries: float [Q, D].
      top_k: results per query, 1 <= top_k <= len(self).
      rescore: for quantized indexes, rescore the first `top_k * rescore_multiplier` candidates
        (at most len(self)) by the float query and keep the best `top_k`.
      rescore_multiplier: positive int.

    Returns:
      (scores [Q, top_k] float32, ids [Q, top_k] int64), rows sorted by descending score; ties
      in order of id. Scores: float dot/cosine; for quantized indexes the rescored float
      scores, or without rescoring the bucket inner product (int8/uint8) or minus the Hamming
      distance (binary).
    """
    n = len(self)
    if n == 0:
      raise ValueError("the corpus is empty (0 rows); add embeddings before searching")
    if not _is_positive_int(top_k) or top_k > n:
      raise ValueError(f"top_k={top_k!r} is out of range; expected an int in [1, {n}] "
                       "(the corpus size)")
    if not _is_positive_int(rescore_multiplier):
      raise ValueError(f"rescore_multiplier={rescore_multiplier!r}; expected a positive int")
    queries = _check_float("queries", queries, self.dim)
    if self.score_fn == "cosine":
      queries = _normalize(queries)
    top_k = int(top_k)
    do_rescore = rescore and self.precision != "float32"
    k = min(top_k * rescore_multiplier, n) if do_rescore else top_k
    if len(queries) == 0:
      return np.zeros((0, top_k), np.float32), np.zeros((0, top_k), np.int64)
    first, kind = self._first_pass_queries(queries)
    corpus, chunk, mesh = self._placed(k)
    fn = _search_fn(mesh, k, chunk, n, kind)
    with jax.set_mesh(mesh):
      scores, ids = fn(jnp.asarray(first), corpus)
    scores, ids = _replicated_to_host(scores), _replicated_to_host(ids).astype(np.int64)
    if not do_rescore:
      return scores.astype(np.float32), ids
    cand = self.rows[ids]  # [Q, k, D or B]
    if kind == "bits":
      cand = unpack_binary(cand.reshape(-1, cand.shape[-1]), self.dim).reshape(*ids.shape, -1)
    else:
      cand = dequantize_embeddings(cand, self.precision, self.ranges)
    rescored = np.einsum("qd,qkd->qk", queries.astype(np.float64), cand)
    # Descending score, ties by lower id (stable order over (id) then (-score)).
    order = np.lexsort((ids, -rescored), axis=1)[:, :top_k]
    return (np.take_along_axis(rescored, order, 1).astype(np.float32),
            np.take_along_axis(ids, order, 1))

  # ------------------------------------------------------------------ persistence

  def _metadata(self) -> dict:
    return {"format": _FORMAT, "dim": self.dim, "precision": self.precision,
            "score_fn": self.score_fn}

  def save(self, path: str | os.PathLike) -> Path:
    """Writes the index to `path`: `.safetensors` (tensors "rows", "ranges" + metadata) or
    `.npz`; returns the path."""
    path = Path(path)
    tensors = {"rows": np.ascontiguousarray(self.rows)}
    if self.ranges is not None:
      tensors["ranges"] = np.ascontiguousarray(self.ranges, np.float32)
    meta = self._metadata()
    if path.suffix == ".safetensors":
      from safetensors.numpy import save_file
      save_file(tensors, str(path), metadata={k: str(v) for k, v in meta.items()})
    elif path.suffix == ".npz":
      np.savez(path, **tensors, metadata=np.array(json.dumps(meta)))
    else:
      raise ValueError(f"index path {str(path)!r} must end in .safetensors or .npz")
    return path

  @classmethod
  def load(cls, path: str | os.PathLike, *, mesh: jax.sharding.Mesh | None = None,
           chunk_size: int = DEFAULT_CHUNK_SIZE) -> "Index":
    """Reads an index written by `save`."""
    path = Path(path)
    if not path.is_file():
      raise ValueError(f"index file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
      from safetensors import safe_open
      with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    elif path.suffix == ".npz":
      with np.load(path) as f:
        tensors = {k: f[k] for k in f.files}
      meta = json.loads(str(tensors.pop("metadata", "{}")))
    else:
      raise ValueError(f"index path {str(path)!r} must end in .safetensors or .npz")
    if meta.get("format") != _FORMAT or "rows" not in tensors:
      raise ValueError(f"{str(path)!r} is not a jaxemb search index (format "
                       f"{meta.get('format')!r}, expected {_FORMAT!r})")
    index = cls(int(meta["dim"]), meta["precision"], score_fn=meta["score_fn"],
                ranges=tensors.get("ranges"), mesh=mesh, chunk_size=chunk_size)
    rows = tensors["rows"].astype(index.storage_dtype, copy=False)
    index._rows = [rows]
    return index


def semantic_search(queries, corpus, top_k: int = 10, *, precision: str = "float32",
                    score_fn: str = "cosine", ranges=None, calibration_embeddings=None,
                    rescore: bool = True, rescore_multiplier: int = 4,
                    mesh: jax.sharding.Mesh | None = None,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k of `corpus` rows for each query, sharded over all devices (or `mesh`).

  Args:
    queries: float [Q, D].
    corpus: float [C, D] (quantized here to `precision`), or rows already quantized to
      `precision` (int8/uint8 [C, D] with `ranges`; binary/ubinary packed [C, ceil(D/8)]).
    top_k: results per query, 1 <= top_k <= C.
    precision: corpus precision, as `quantize_embeddings`.
    score_fn: "cosine" or "dot" (cosine normalises queries and float corpus rows first).
    ranges / calibration_embeddings: int8/uint8 calibration, as `quantize_embeddings`.
    rescore / rescore_multiplier: see `Index.search`.
    mesh: the caller's mesh; corpus rows are split over all its axes.
    chunk_size: corpus rows scored at a time per device.

  Returns:
    (scores [Q, top_k] float32, ids [Q, top_k] int64), best first, ties by lower id.
  """
  queries = np.asarray(queries)
  dim = queries.shape[-1] if queries.ndim in (1, 2) else None
  if dim is None:
    raise ValueError(f"queries must be 2-D [Q, D], got shape {queries.shape}")
  check_precision(precision)
  corpus = np.asarray(corpus)
  if corpus.ndim != 2 or corpus.shape[0] == 0:
    raise ValueError(f"corpus must be a non-empty 2-D array, got shape {corpus.shape}")
  if ranges is None and calibration_embeddings is not None and precision.endswith("int8"):
    cal = _check_float("calibration_embeddings", calibration_embeddings, dim)
    ranges = quantization_ranges(_normalize(cal) if score_fn == "cosine" else cal, precision)
  if corpus.dtype not in (np.int8, np.uint8) and precision in ("int8", "uint8", "binary",
                                                                "ubinary"):
    if corpus.shape[1] != dim:
      raise ValueError(f"corpus has dimension {corpus.shape[1]} but queries have dimension "
                       f"{dim}; expected equal")
  index = Index(dim, precision, score_fn=score_fn, ranges=ranges, mesh=mesh,
                chunk_size=chunk_size)
  index.add(corpus)
  return index.search(queries, top_k, rescore=rescore, rescore_multiplier=rescore_multiplier)
