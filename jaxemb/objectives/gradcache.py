"""GradCache: exact contrastive gradients for batches larger than activation memory allows.

Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup".
A contrastive loss couples every example to every other one, so plain gradient accumulation
over micro-batches changes the loss (fewer negatives). GradCache splits the backward pass at
the embeddings instead:

  (a) embed every chunk without keeping activations (forward only, `lax.map`);
  (b) compute the loss on the full-batch `[B, D]` embeddings and its gradient w.r.t. the
      embeddings only (cheap: the loss is a small function of `B x D` numbers);
  (c) re-run each chunk under `jax.vjp`, pull its slice of the embedding gradient back to the
      parameters, and sum over chunks in a `lax.scan` carry.

Peak activation memory then scales with `chunk_size`, not `B`, for one extra forward pass.
The result equals `jax.value_and_grad` of the full-batch loss up to float summation order.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

PyTree = Any
EmbedFn = Callable[[PyTree, PyTree], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def _batch_size(name: str, batch: PyTree) -> int:
  """The common leading dimension of every leaf of `batch`."""
  leaves = jax.tree.leaves(batch)
  if not leaves:
    raise ValueError(f"{name} has no array leaves")
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    shapes = [jnp.shape(x) for x in leaves]
    raise ValueError(f"every leaf of {name} needs the same leading batch dim, got shapes {shapes}")
  return sizes.pop()


def split_strided(batch: PyTree, chunk_size: int | None = None, *,
                  num_chunks: int | None = None) -> PyTree:
  """`[B, ...] -> [B // c, c, ...]` with chunk j holding rows `{j, j + n, j + 2n, ...}`.

  Give `chunk_size` c (n = B // c) or `num_chunks` n: with n, leaves may differ in leading
  size (each a multiple of n), e.g. packed rows beside per-text arrays
  (`jaxemb.data.packing.pack(..., chunks=n)` lays rows out for this split).

  Strided rather than contiguous chunks: when B is sharded over devices in contiguous blocks,
  the `c` axis inherits that sharding, so each chunk is spread over every device (all devices
  busy, per-device memory ~ c / num_devices) and the scanned axis is unsharded. Any partition
  gives the same result because the loss sees the embeddings back in the original order.
  """

  def split(x):
    n = x.shape[0] // chunk_size if num_chunks is None else num_chunks
    return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)

  return jax.tree.map(split, batch)


def merge_strided(x: jax.Array) -> jax.Array:
  """Inverse of `split_strided` for one array: `[n, c, ...] -> [c * n, ...]`."""
  n, c = x.shape[:2]
  return jnp.swapaxes(x, 0, 1).reshape(c * n, *x.shape[2:])


def _embed_no_grad(embed_fn: EmbedFn, params: PyTree, chunks: PyTree) -> jax.Array:
  """Step (a): forward only, chunk by chunk, so no activation outlives its chunk."""
  params = jax.lax.stop_gradient(params)
  return merge_strided(jax.lax.map(lambda chunk: embed_fn(params, chunk), chunks))


def _accumulate_param_grads(
    embed_fn: EmbedFn,
    params: PyTree,
    chunks: PyTree,
    emb_grad: jax.Array,
    num_chunks: int,
    init: PyTree,
) -> PyTree:
  """Step (c): per chunk, vjp the embedding-gradient slice back to the params and sum."""
  grad_chunks = split_strided(emb_grad, num_chunks=num_chunks)

  def body(acc, xs):
    chunk, g = xs
    emb, pullback = jax.vjp(lambda p: embed_fn(p, chunk), params)
    (param_grad,) = pullback(g.astype(emb.dtype))
    return jax.tree.map(lambda a, pg: a + pg.astype(a.dtype), acc, param_grad), None

  acc, _ = jax.lax.scan(body, init, (chunks, grad_chunks))
  return acc


def chunked_contrastive_value_and_grad(
    embed_fn: EmbedFn,
    params: PyTree,
    query_batch: PyTree,
    doc_batch: PyTree,
    *,
    loss_fn: LossFn,
    chunk_size: int,
    num_texts: tuple[int, int] | None = None,
) -> tuple[tuple[jax.Array, dict[str, jax.Array]], PyTree]:
  """GradCache value-and-grad of `loss_fn(embed(q), embed(d))` w.r.t. `params`.

  Equals `jax.value_and_grad(lambda p: loss_fn(embed_fn(p, q), embed_fn(p, d)), has_aux=True)`
  but holds activations for only `chunk_size` examples at a time. Works under `jax.jit` with
  the batches sharded over devices: the loss sees the global embeddings, so negatives are
  cross-device. With a batch sharded over N devices, a `chunk_size` divisible by N keeps every
  device busy on every chunk.

  Args:
    embed_fn: `embed_fn(params, batch_chunk) -> [c, D]`. Must be deterministic given its
      inputs, because each chunk is embedded twice: put dropout keys in the batch pytree (one
      per example), not in a closure that changes between calls.
    params: pytree of parameters (the only thing differentiated).
    query_batch: pytree of arrays with leading dim Bq.
    doc_batch: pytree of arrays with leading dim Bd (often Bq; Bq * (1 + K) when hard
      negatives are embedded with the documents and split apart inside `loss_fn`).
    loss_fn: `loss_fn(q_emb [Bq, D], d_emb [Bd, D]) -> (loss, metrics)`, e.g.
      `functools.partial(info_nce, scale=20.0)` behind a normalisation.
    chunk_size: examples per chunk; must divide Bq and Bd.
    num_texts: (Bq, Bd) when the batches' leaves differ in leading size (packed rows, laid
      out by `jaxemb.data.packing.pack(..., chunks=B // chunk_size)`); each leaf is then cut
      into B // chunk_size strided chunks. None: every leaf has the batch's leading size.

  Returns:
    `((loss, metrics), grads)` with `grads` shaped like `params` (same dtypes; accumulated in
    at least float32).
  """
  return chunked_value_and_grad(embed_fn, params, {"query_batch": query_batch,
                                                   "doc_batch": doc_batch},
                                loss_fn=loss_fn, chunk_size=chunk_size, num_texts=num_texts)


def chunked_value_and_grad(
    embed_fn: EmbedFn,
    params: PyTree,
    batches: Mapping[str, PyTree],
    *,
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    chunk_size: int,
    num_texts: Sequence[int] | None = None,
) -> tuple[tuple[jax.Array, dict[str, jax.Array]], PyTree]:
  """GradCache over any number of batches: `loss_fn(*[embed(b) for b in batches.values()])`.

  `chunked_contrastive_value_and_grad` is the (query, document) case; one batch holding both
  sides (queries and documents packed into the same rows, split apart inside `loss_fn`) costs
  one compiled embedding pass instead of two. `batches` maps a name (used in errors) to a
  pytree; `num_texts` gives each batch's number of texts when its leaves differ in leading
  size (packed rows). Every batch is cut into `texts // chunk_size` strided chunks.
  """
  if not isinstance(chunk_size, int) or chunk_size <= 0:
    raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
  if not batches:
    raise ValueError("chunked_value_and_grad needs at least one batch")
  if num_texts is not None and len(num_texts) != len(batches):
    raise ValueError(f"num_texts has {len(num_texts)} entries for {len(batches)} batches")
  counts = []
  for i, (name, batch) in enumerate(batches.items()):
    size = _batch_size(name, batch) if num_texts is None else int(num_texts[i])
    if size % chunk_size:
      raise ValueError(
          f"{name} batch size {size} is not divisible by chunk_size {chunk_size}; "
          f"expected a chunk_size that divides {size}"
      )
    n = size // chunk_size
    bad = [jnp.shape(x) for x in jax.tree.leaves(batch)
           if not jnp.ndim(x) or jnp.shape(x)[0] % n]
    if bad:
      raise ValueError(f"{name} leaves of shapes {bad} do not split into {n} chunks")
    counts.append(n)

  chunked = [split_strided(batch, num_chunks=n) for batch, n in zip(batches.values(), counts)]
  embeddings = [_embed_no_grad(embed_fn, params, chunks) for chunks in chunked]

  (loss, metrics), emb_grads = jax.value_and_grad(
      loss_fn, argnums=tuple(range(len(embeddings))), has_aux=True)(*embeddings)

  # Accumulate in >= float32 so bf16 params do not lose the small per-chunk contributions.
  acc_dtype = lambda p: jnp.promote_types(p.dtype, jnp.float32)
  acc = jax.tree.map(lambda p: jnp.zeros(p.shape, acc_dtype(p)), params)
  for chunks, emb_grad, n in zip(chunked, emb_grads, counts):
    acc = _accumulate_param_grads(embed_fn, params, chunks, emb_grad, n, acc)
  grads = jax.tree.map(lambda a, p: a.astype(p.dtype), acc, params)
  return (loss, metrics), grads


def compiled_temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
  """Scratch memory XLA plans for `jax.jit(fn)(*args)`, in bytes (arguments/outputs excluded).

  Only compiles; `args` may be `jax.ShapeDtypeStruct`s, so large shapes cost nothing to
  measure. On CPU, XLA reports temps in `temp_size_in_bytes` (checked with jax 0.10.2).
  """
  stats = jax.jit(fn).lower(*args).compile().memory_analysis()
  if stats is None:
    raise ValueError(f"this backend ({jax.default_backend()}) reports no memory analysis")
  return int(stats.temp_size_in_bytes)
