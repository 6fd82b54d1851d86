"""`encode`: texts -> embeddings, fast on CPU and sharded over every local device.

Speed on CPU is mostly about padding waste, compiles and cache misses. Texts are sorted by token
length so each batch holds similar lengths, and each batch is padded to a *bucket* length, so
jit compiles a bounded number of shapes; batches of long texts hold fewer rows so their
attention scores stay in cache. Cold (first-call) time is mostly compiles (~1 CPU second per
shape for all-MiniLM-L6-v2, nearly all of it fixed per program: running the layers under a scan
does not make it cheaper on CPU, see `jaxemb.nn.layers.run_layers`), so:

- the buckets are chosen per call from a fixed ladder (`choose_buckets`): a new bucket is used
  only when the padding it saves outweighs the cost of compiling one more shape, so a few texts
  get a coarse ladder and many texts the fine one;
- every shape of the call is compiled ahead, on a background thread, in the order the batches
  need them, while the first batches run; compiled shapes are kept for later calls.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import functools
import threading
from typing import Sequence

import jax
import numpy as np
import tqdm
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxemb.model import EmbeddingModel

# Bucket ladder: step 4 to 32 tokens, then ~12% steps. Measured on all-MiniLM-L6-v2 (CPU):
# exact lengths are fastest warm, but every new length is a compile; this ladder stays within a
# few per cent of exact-length speed with <= 24 shapes. `choose_buckets` keeps a subset of it.
_LADDER = (8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 72, 80, 96, 112, 128, 144, 160,
           192, 224, 256, 320, 384, 448, 512,
           # Long-context encoding (`jaxemb.long_context`): ~25% steps up to 8k tokens.
           640, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192)

# The cost of compiling one more shape, in padded tokens of forward work. Measured on
# all-MiniLM-L6-v2 on a 2-core CPU (1,000 docstrings, CPU seconds): ~1 s per shape (trace, lower,
# XLA compile) and ~0.18 ms per padded token, i.e. a compile is worth ~5,500 tokens. But a
# compile is paid once per process and padding on every call: at 3,000 a cold call took 14.5 s
# instead of 31.2 s while warm calls took 8.6 s instead of 6.8 s, so the default leans towards
# warm speed. Both costs scale with the CPU, so the ratio travels reasonably.
COMPILE_COST_TOKENS = 1000.0


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


def choose_buckets(lengths: Sequence[int], max_seq_length: int, *,
                   compile_cost: float | None = None,
                   attention_per_token: float = 0.0) -> tuple[int, ...]:
  """The buckets `encode` pads `lengths` to: the subset of `bucket_lengths(max_seq_length)`
  that minimises padded work plus compiles.

  Cost of a subset S = sum over texts of w(b(l)) + compile_cost * |S| (compile_cost defaults to
  `COMPILE_COST_TOKENS`; 0 keeps every ladder step that some text needs), where b(l) is the
  smallest bucket of S that fits length l and w(b) = b (1 + attention_per_token * b) is the
  forward work of one row padded to b, in tokens (the attention term grows with the length).
  Exact by dynamic programming over the ladder. With few texts compiles dominate and few
  buckets are kept; with many texts every ladder step that saves padding pays off.
  """
  ladder = bucket_lengths(max_seq_length)
  compile_cost = COMPILE_COST_TOKENS if compile_cost is None else compile_cost
  lengths = np.minimum(np.asarray(lengths, np.int64), max_seq_length)
  if lengths.size == 0:
    return ladder
  where = np.searchsorted(ladder, lengths, side="left")  # index of the smallest fitting bucket
  below = np.concatenate([[0], np.cumsum(np.bincount(where, minlength=len(ladder)))])
  top = int(where.max())
  # best[j + 1]: cheapest cost of covering every text that fits ladder[j], with ladder[j] used.
  best = [0.0] + [np.inf] * (top + 1)
  prev = [-1] * (top + 1)
  for j in range(top + 1):
    work = ladder[j] * (1.0 + attention_per_token * ladder[j])
    for i in range(-1, j):  # i: the previous bucket used (-1: none)
      count = below[j + 1] - below[i + 1]
      cost = best[i + 1] + compile_cost + count * work
      if cost < best[j + 1]:
        best[j + 1], prev[j] = cost, i
  chosen, j = [], top
  while j >= 0:
    chosen.append(ladder[j])
    j = prev[j]
  return tuple(reversed(chosen))


@functools.partial(jax.jit, static_argnames=("graphdef", "normalize", "layer", "truncate_dim"))
def _forward(graphdef, state, input_ids, attention_mask, *, normalize: bool,
             layer: int | None = None, truncate_dim: int | None = None):
  """The embedder's own forward (`SentenceEmbedder.__call__`), jitted per batch shape."""
  module = nnx.merge(graphdef, state)
  return module(input_ids, attention_mask, deterministic=True, normalize=normalize, layer=layer,
                truncate_dim=truncate_dim)


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


def plan_batches(lengths: np.ndarray, buckets: tuple[int, ...], batch_size: int,
                 num_heads: int | None, num_devices: int) -> list[tuple[np.ndarray, int, int]]:
  """`(text indices, rows, padded length)` per forward pass, longest texts first.

  Each batch is padded to the bucket of its first (longest) text and holds `batch_rows` texts
  (fewer for long texts); `rows` >= the number of texts (the rest are all-padding rows).
  """
  order = np.argsort(-np.asarray(lengths), kind="stable")
  batches, start = [], 0
  while start < len(order):
    length = _bucket(min(int(lengths[order[start]]), buckets[-1]), buckets)
    rows = batch_rows(length, batch_size, num_heads, num_devices)
    batch = order[start:start + min(rows, batch_size)]
    batches.append((batch, _padded_rows(len(batch), rows, num_devices), length))
    start += len(batch)
  return batches


# Compiled forward passes of earlier calls, by (graphdef, parameter shapes, batch shape,
# devices, options); least recently used dropped first.
_COMPILED: collections.OrderedDict = collections.OrderedDict()
_COMPILED_MAX = 256
_COMPILED_LOCK = threading.Lock()


def _compile(graphdef, state, rows: int, length: int, sharding, options: dict):
  """AOT-compiles `_forward` for one batch shape (the ids and mask are int32 [rows, length])."""
  spec = jax.ShapeDtypeStruct((rows, length), np.int32, sharding=sharding)
  return _forward.lower(graphdef, state, spec, spec, **options).compile()


def _to_host(x: jax.Array) -> np.ndarray:
  """All rows on this host, also when they are spread over other processes' devices."""
  if not x.is_fully_addressable:
    x = jax.device_put(x, NamedSharding(x.sharding.mesh, P()))
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


class _Executables:
  """Compiled forward passes for the shapes of one `encode` call, compiled ahead on a thread.

  Shapes are compiled in the order the batches first need them, so the batch at hand waits
  at most for its own compile while later shapes compile behind the running batches.
  """

  def __init__(self, graphdef, state, shapes, sharding, options: dict):
    # Parameter shapes, dtypes and placements (the caller's mesh may shard them), batch sharding.
    leaves = tuple((x.shape, x.dtype, x.sharding) for x in jax.tree.leaves(state))
    self._key = (graphdef, jax.tree.structure(state), leaves, sharding,
                 tuple(sorted(options.items())))
    self._args = (graphdef, state, sharding, options)
    self._ready, missing = {}, []
    with _COMPILED_LOCK:
      for shape in dict.fromkeys(shapes):
        key = self._key + shape
        if key in _COMPILED:
          _COMPILED.move_to_end(key)
          self._ready[shape] = _COMPILED[key]
        else:
          missing.append(shape)
    self._pool = None
    self._pending = {}
    if len(missing) > 1:
      self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxemb-compile")
      self._pending = {shape: self._pool.submit(self._build, shape) for shape in missing[1:]}
    if missing:
      self._ready[missing[0]] = self._build(missing[0])  # needed first: compile it right here

  def _build(self, shape):
    graphdef, state, sharding, options = self._args
    compiled = _compile(graphdef, state, *shape, sharding, options)
    with _COMPILED_LOCK:
      _COMPILED[self._key + shape] = compiled
      while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return compiled

  def __call__(self, shape):
    if shape not in self._ready:
      self._ready[shape] = self._pending.pop(shape).result()
    return self._ready[shape]

  def close(self):
    if self._pool is not None:
      for future in self._pending.values():
        future.cancel()
      self._pool.shutdown(wait=True)


def encode(model: EmbeddingModel, texts: Sequence[str], *, batch_size: int = 64,
           normalize: bool = True, show_progress: bool | None = None,
           mesh: jax.sharding.Mesh | None = None, truncate_dim: int | None = None,
           layer: int | None = None) -> np.ndarray:
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
    truncate_dim: keep the first `truncate_dim` dimensions (1 .. model.dim) of the pooled
      vector, then normalise (Matryoshka-style embeddings); by default `model.truncate_dim`
      (set by a directory exported with one), else all.
    layer: pool the hidden states of this layer (1-based, 1 .. the encoder's layers; the last
      by default), e.g. for 2D-Matryoshka / Starbucks models; later layers are not computed.

  Returns:
    float32 array [len(texts), truncate_dim or D] in input order.
  """
  texts = _check_texts(texts)
  if truncate_dim is None:
    truncate_dim = getattr(model, "truncate_dim", None)
  return encode_tokens(model, tokenize(model, texts) if texts else [], batch_size=batch_size,
                       normalize=normalize, show_progress=show_progress, mesh=mesh,
                       truncate_dim=truncate_dim, layer=layer)


def encode_tokens(model: EmbeddingModel, ids: Sequence[Sequence[int]], *, batch_size: int = 64,
                  normalize: bool = True, show_progress: bool | None = None,
                  mesh: jax.sharding.Mesh | None = None, truncate_dim: int | None = None,
                  layer: int | None = None) -> np.ndarray:
  """`encode` of texts already tokenised: `ids` are token-id lists with special tokens (cut at
  `model.max_seq_length`), e.g. the chunks of long texts (`jaxemb.long_context`)."""
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  model.module.check_size(layer, truncate_dim)
  dim = model.dim if truncate_dim is None else int(truncate_dim)
  texts = ids  # one row per text
  if not len(texts):
    return np.zeros((0, dim), np.float32)

  lengths = np.array([len(x) for x in ids])
  cfg = model.module.encoder.cfg
  num_heads = getattr(cfg, "num_heads", None)  # None: no attention
  # Attention work per token grows with the length: 4 L h FLOPs per layer next to the dense
  # layers' 2 x (4 h^2 + 2 h f) (BERT-style layer), as a fraction per token of length.
  attention = 0.0
  if num_heads:
    h, f = cfg.hidden_size, getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
    attention = 4.0 * h / (2.0 * (4 * h * h + 2 * h * f))
  buckets = choose_buckets(lengths, model.max_seq_length, attention_per_token=attention)
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
  batches = plan_batches(lengths, buckets, batch_size, num_heads, len(devices))
  options = dict(normalize=bool(normalize), layer=None if layer is None else int(layer),
                 truncate_dim=None if truncate_dim is None else int(truncate_dim))

  if show_progress is None:
    show_progress = len(texts) > 8 * batch_size
  executables = _Executables(graphdef, state, [(rows, length) for _, rows, length in batches],
                             rows_sharding, options)
  results = []
  try:
    with tqdm.tqdm(total=len(texts), desc="encode", unit="text",
                   disable=not show_progress) as bar:
      for batch, rows, length in batches:
        input_ids, mask = pad_to_bucket([ids[i] for i in batch], (length,), model.pad_token_id,
                                        rows)
        run = executables((rows, length))
        out = run(state, place(input_ids), place(mask))
        results.append((batch, out))  # dispatch is asynchronous; collect below
        if len(results) > 1:
          prev_batch, prev = results[-2]
          results[-2] = (prev_batch, _to_host(prev))
          bar.update(len(prev_batch))
      last_batch, last = results[-1]
      results[-1] = (last_batch, _to_host(last))
      bar.update(len(last_batch))
  finally:
    executables.close()

  emb = np.empty((len(texts), dim), np.float32)
  for batch, out in results:
    emb[batch] = out[:len(batch)]
  return emb
