"""`encode`: texts -> embeddings, fast on CPU and sharded over every local device.

Speed on CPU is mostly about padding waste, compiles and cache misses. Texts are sorted by token
length so each batch holds similar lengths, and each batch is padded to the next *bucket* length
from a small fixed ladder, so jit compiles a bounded number of shapes (one per bucket, plus a few
for the last, smaller batch); batches of long texts hold fewer rows so their attention scores
stay in cache.
"""

from __future__ import annotations

import bisect
import functools
from typing import Sequence

import jax
import numpy as np
import tqdm
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxemb.model import EmbeddingModel

# Bucket ladder: step 4 to 32 tokens, then ~12% steps. Measured on all-MiniLM-L6-v2 (CPU):
# exact lengths are fastest warm, but every new length is a compile; this ladder stays within a
# few per cent of exact-length speed with <= 24 shapes.
_LADDER = (8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 72, 80, 96, 112, 128, 144, 160,
           192, 224, 256, 320, 384, 448, 512)


def bucket_lengths(max_seq_length: int) -> tuple[int, ...]:
  """The padded lengths `encode` uses for a model truncating at `max_seq_length` tokens."""
  return tuple(b for b in _LADDER if b < max_seq_length) + (max_seq_length,)


def _bucket(length: int, buckets: tuple[int, ...]) -> int:
  return buckets[bisect.bisect_left(buckets, length)]


def pad_to_bucket(ids: Sequence[Sequence[int]], buckets: tuple[int, ...], pad_id: int,
                  rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads token lists to the smallest bucket that fits the longest (int32 ids, mask).

  Lists longer than the last bucket are cut to it; `rows` (>= len(ids)) adds all-padding rows.
  """
  length = _bucket(min(max(map(len, ids)), buckets[-1]), buckets)
  out = np.full((rows or len(ids), length), pad_id, np.int32)
  mask = np.zeros(out.shape, np.int32)
  for row, x in enumerate(ids):
    n = min(len(x), length)
    out[row, :n] = x[:n]
    mask[row, :n] = 1
  return out, mask


def _check_texts(texts) -> list[str]:
  if isinstance(texts, (str, bytes)):
    raise TypeError("texts must be a sequence of strings; wrap a single string in a list")
  texts = list(texts)
  for i, t in enumerate(texts):
    if not isinstance(t, str):
      raise TypeError(f"texts[{i}] is {type(t).__name__} ({t!r:.50}), expected str")
  return texts


def tokenize(model: EmbeddingModel, texts: Sequence[str]) -> list[list[int]]:
  """Token ids per text, with special tokens, truncated at `model.max_seq_length`."""
  tok = model.tokenizer
  tok.no_padding()
  tok.enable_truncation(max_length=model.max_seq_length)
  return [e.ids for e in tok.encode_batch(list(texts))]


@functools.partial(jax.jit, static_argnames=("graphdef", "normalize"))
def _forward(graphdef, state, input_ids, attention_mask, *, normalize: bool):
  """The embedder's own forward (`SentenceEmbedder.__call__`), jitted per batch shape."""
  module = nnx.merge(graphdef, state)
  return module(input_ids, attention_mask, deterministic=True, normalize=normalize)


# Attention-score elements (rows x heads x length^2) per batch. Beyond a few MB the scores
# fall out of cache and XLA:CPU's attention runs ~3x slower (measured on MiniLM shapes: 36 vs
# 12 GFLOP/s at length 256), so long texts go in smaller batches. Dense layers stay efficient
# down to a few hundred tokens per batch.
_ATTENTION_BUDGET = 1 << 21


def batch_rows(length: int, batch_size: int, num_heads: int | None, num_devices: int) -> int:
  """Texts per compiled batch at a padded `length`: `batch_size`, fewer for long texts."""
  rows = batch_size
  if num_heads:
    fits = max(1, _ATTENTION_BUDGET // (num_heads * length * length))
    rows = min(rows, 1 << (fits.bit_length() - 1))
  return -(-rows // num_devices) * num_devices


def _padded_rows(n: int, rows: int, num_devices: int) -> int:
  """Rows for the last `n` < `rows` texts: a power of two, so few extra shapes compile."""
  rows = rows if n >= rows else 1 << max(0, n - 1).bit_length()
  return -(-rows // num_devices) * num_devices


def _to_host(x: jax.Array) -> np.ndarray:
  """All rows on this host, also when they are spread over other processes' devices."""
  if not x.is_fully_addressable:
    x = jax.device_put(x, NamedSharding(x.sharding.mesh, P()))
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def encode(model: EmbeddingModel, texts: Sequence[str], *, batch_size: int = 64,
           normalize: bool = True, show_progress: bool | None = None,
           mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """Embeds `texts` with `model`.

  Args:
    model: from `jaxemb.load_pretrained` (or any `EmbeddingModel`).
    texts: a sequence of strings (empty strings are fine).
    batch_size: texts per forward pass (split over all local devices); long texts go in
      smaller batches so attention scores stay in cache (see `batch_rows`).
    normalize: L2-normalise each embedding (cosine similarity = dot product).
    show_progress: progress bar; by default shown for more than 8 * batch_size texts.
    mesh: the caller's device mesh (e.g. the training mesh, which may span processes): rows
      are split over all of its devices and the parameters stay where they are. Every
      process must then call `encode` with the same texts. Default: this process's devices.

  Returns:
    float32 array [len(texts), D] in input order.
  """
  texts = _check_texts(texts)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not texts:
    return np.zeros((0, model.dim), np.float32)

  ids = tokenize(model, texts)
  lengths = np.array([len(x) for x in ids])
  order = np.argsort(-lengths, kind="stable")
  buckets = bucket_lengths(model.max_seq_length)
  graphdef, state = nnx.split(model.module)
  if mesh is None:
    devices = jax.local_devices()
    rows_mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    state = jax.device_put(state, NamedSharding(rows_mesh, P()))
  else:  # all the caller's devices on one axis; its parameter shardings are kept
    devices = list(mesh.devices.flat)
    rows_mesh = jax.sharding.Mesh(mesh.devices.reshape(-1), ("data",))
  rows_sharding = NamedSharding(rows_mesh, P("data"))
  place = lambda x: jax.make_array_from_callback(x.shape, rows_sharding, lambda i: x[i])
  num_heads = getattr(model.module.encoder.cfg, "num_heads", None)  # None: no attention

  # Longest first; each batch is padded to the bucket of its first (longest) text.
  batches, start = [], 0
  while start < len(texts):
    length = _bucket(int(lengths[order[start]]), buckets)
    rows = batch_rows(length, batch_size, num_heads, len(devices))
    batch = order[start:start + min(rows, batch_size)]
    batches.append((batch, _padded_rows(len(batch), rows, len(devices))))
    start += len(batch)

  if show_progress is None:
    show_progress = len(texts) > 8 * batch_size
  results = []
  with tqdm.tqdm(total=len(texts), desc="encode", unit="text", disable=not show_progress) as bar:
    for batch, rows in batches:
      input_ids, mask = pad_to_bucket([ids[i] for i in batch], buckets, model.pad_token_id, rows)
      out = _forward(graphdef, state, place(input_ids), place(mask), normalize=normalize)
      results.append((batch, out))  # dispatch is asynchronous; collect below
      if len(results) > 1:
        prev_batch, prev = results[-2]
        results[-2] = (prev_batch, _to_host(prev))
        bar.update(len(prev_batch))
    last_batch, last = results[-1]
    results[-1] = (last_batch, _to_host(last))
    bar.update(len(last_batch))

  emb = np.empty((len(texts), model.dim), np.float32)
  for batch, out in results:
    emb[batch] = out[:len(batch)]
  return emb
