"""Pooling heads: token states `[B, L, D]` plus a mask `[B, L]` -> one vector `[B, D]`.

Masks are bool or int (nonzero = real token, 0 = padding) and padding may sit on either side.
Every pooler is invariant to padding: extra pad positions, whatever their hidden values (even
inf/NaN), never change the result, because padded states are selected away with `jnp.where`
rather than multiplied by zero (`inf * 0` is NaN). A row with no real token pools to zeros.

Parameter-free poolers are plain functions (`POOLING_FUNCTIONS`); the trainable ones are NNX
modules; `Pooler` is the single entry point the encoders use.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

# sentence-transformers clamps the token count at this value so all-pad rows give 0, not NaN.
_MIN_COUNT = 1e-9


# ----------------------------------------------------------------------------------------------
# Input checks and small helpers.
# ----------------------------------------------------------------------------------------------


def _check_inputs(hidden: Array, mask: Array) -> jax.Array:
  """Validates `hidden: [B, L, D]` (float) and `mask: [B, L]`; returns the mask as bool."""
  if hidden.ndim != 3:
    raise ValueError(f"hidden must have shape [B, L, D], got shape {hidden.shape}")
  if not jnp.issubdtype(hidden.dtype, jnp.floating):
    raise ValueError(f"hidden must be a float array, got dtype {hidden.dtype}")
  if mask.shape != hidden.shape[:2]:
    raise ValueError(f"mask must have shape [B, L] = {hidden.shape[:2]}, got shape {mask.shape}")
  return jnp.asarray(mask).astype(bool)


def _gather_position(hidden: Array, index: Array, has_token: Array) -> Array:
  """Picks `hidden[b, index[b]]`, zeros where the row has no real token."""
  picked = jnp.take_along_axis(hidden, index[:, None, None], axis=1)[:, 0]
  return jnp.where(has_token[:, None], picked, jnp.zeros_like(picked))


def _masked_weighted_mean(hidden: Array, weights: Array, mask: Array) -> Array:
  """Sum of `weights * hidden` over real tokens divided by the weight sum, in float32."""
  weights = jnp.where(mask, weights.astype(jnp.float32), 0.0)
  # Select (not multiply) so that inf/NaN garbage at padded positions cannot leak in.
  values = jnp.where(mask[..., None], hidden.astype(jnp.float32), 0.0)
  # Elementwise multiply-and-sum, not einsum: TPU matmuls default to bf16 passes.
  total = (weights[..., None] * values).sum(axis=1)
  denom = jnp.maximum(weights.sum(axis=1, keepdims=True), _MIN_COUNT)
  return (total / denom).astype(hidden.dtype)


# ----------------------------------------------------------------------------------------------
# Parameter-free poolers.
# ----------------------------------------------------------------------------------------------


def cls_pool(hidden: Array, mask: Array) -> Array:
  """The first real token's state (BERT's [CLS]).

  With right padding this is position 0; with left padding the first token is padding, so the
  first *real* position is used instead, which keeps the result padding-invariant.

  Args:
    hidden: `[B, L, D]` token states.
    mask: `[B, L]`, nonzero for real tokens.

  Returns:
    `[B, D]` in `hidden.dtype`; zeros for rows without real tokens.
  """
  mask = _check_inputs(hidden, mask)
  first = jnp.argmax(mask, axis=1)
  return _gather_position(hidden, first, mask.any(axis=1))


def mean_pool(hidden: Array, mask: Array) -> Array:
  """Mean over real tokens (sentence-transformers' default); all-pad rows give zeros.

  Args:
    hidden: `[B, L, D]` token states.
    mask: `[B, L]`, nonzero for real tokens.

  Returns:
    `[B, D]` in `hidden.dtype` (accumulated in float32).
  """
  mask = _check_inputs(hidden, mask)
  return _masked_weighted_mean(hidden, jnp.ones(mask.shape, jnp.float32), mask)


def max_pool(hidden: Array, mask: Array) -> Array:
  """Element-wise max over real tokens; all-pad rows give zeros.

  Args:
    hidden: `[B, L, D]` token states.
    mask: `[B, L]`, nonzero for real tokens.

  Returns:
    `[B, D]` in `hidden.dtype`.
  """
  mask = _check_inputs(hidden, mask)
  lowest = jnp.finfo(hidden.dtype).min
  pooled = jnp.where(mask[..., None], hidden, lowest).max(axis=1)
  return jnp.where(mask.any(axis=1)[:, None], pooled, jnp.zeros_like(pooled))


def weighted_mean_pool(hidden: Array, mask: Array) -> Array:
  """SGPT position-weighted mean (Muennighoff 2022): the i-th real token gets weight i / sum.

  Positions are counted over real tokens only (1-based), so left padding does not shift them.

  Args:
    hidden: `[B, L, D]` token states.
    mask: `[B, L]`, nonzero for real tokens.

  Returns:
    `[B, D]` in `hidden.dtype` (accumulated in float32); zeros for all-pad rows.
  """
  mask = _check_inputs(hidden, mask)
  positions = jnp.cumsum(mask.astype(jnp.float32), axis=1)
  return _masked_weighted_mean(hidden, positions, mask)


def last_token_pool(hidden: Array, mask: Array) -> Array:
  """The last real token's state (decoder embedders); correct for left and right padding.

  Args:
    hidden: `[B, L, D]` token states.
    mask: `[B, L]`, nonzero for real tokens.

  Returns:
    `[B, D]` in `hidden.dtype`; zeros for rows without real tokens.
  """
  mask = _check_inputs(hidden, mask)
  length = mask.shape[1]
  last = length - 1 - jnp.argmax(mask[:, ::-1], axis=1)
  return _gather_position(hidden, last, mask.any(axis=1))


POOLING_FUNCTIONS: dict[str, Callable[[Array, Array], Array]] = {
    "cls": cls_pool,
    "mean": mean_pool,
    "max": max_pool,
    "weighted_mean": weighted_mean_pool,
    "last_token": last_token_pool,
}


def _pooling_function(name: str) -> Callable[[Array, Array], Array]:
  if name not in POOLING_FUNCTIONS:
    raise ValueError(f"unknown base pooler {name!r}; expected one of {sorted(POOLING_FUNCTIONS)}")
  return POOLING_FUNCTIONS[name]


# ----------------------------------------------------------------------------------------------
# Trainable poolers.
# ----------------------------------------------------------------------------------------------


def _linear(in_dim: int, out_dim: int, names: tuple[str | None, str | None], *, use_bias: bool,
            dtype, param_dtype, rngs: nnx.Rngs) -> nnx.Linear:
  """`nnx.Linear` whose kernel (and bias) carry logical axis names."""
  return nnx.Linear(
      in_dim, out_dim, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
      kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), names),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (names[1],)),
      rngs=rngs)


class LatentAttentionPooling(nnx.Module):
  """NV-Embed latent-attention pooling (Lee et al. 2024, "NV-Embed", Sec. 3.2).

  Each token state is a query into a trainable latent array that serves as both keys and values
  (multi-head cross-attention, K = V = latents), followed by a 2-layer GELU MLP; both blocks are
  residual, as in the released NV-Embed code. The result is mean-pooled over real tokens. Each
  token attends only to the latents, never to other tokens, so padding cannot leak in.

  Computes in `dtype` (attention softmax in float32) and returns `[B, D]` in `dtype`.
  """

  def __init__(self, dim: int, *, num_latents: int = 512, num_heads: int = 8,
               mlp_dim: int | None = None, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    """Builds the pooler.

    Args:
      dim: model width D of the token states.
      num_latents: number of latent vectors (NV-Embed uses 512).
      num_heads: attention heads; must divide `dim`.
      mlp_dim: hidden width of the MLP; defaults to `4 * dim`.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      rngs: random streams for initialisation.
    """
    for name, value in (("dim", dim), ("num_latents", num_latents), ("num_heads", num_heads)):
      if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    if dim % num_heads:
      raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
    mlp_dim = 4 * dim if mlp_dim is None else mlp_dim
    if mlp_dim < 1:
      raise ValueError(f"mlp_dim must be a positive integer, got {mlp_dim}")
    self.dim, self.num_heads, self.mlp_dim = dim, num_heads, mlp_dim
    self.dtype = dtype
    # Unit-variance latents, as NV-Embed's torch.randn init: with lecun-initialised projections
    # the attention logits start O(1), neither saturated nor uniform.
    latent_init = nnx.with_partitioning(nnx.initializers.normal(1.0), ("latents", "embed"))
    self.latents = nnx.Param(latent_init(rngs.params(), (num_latents, dim), param_dtype))
    proj = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.query = _linear(dim, dim, ("embed", None), **proj)
    self.key = _linear(dim, dim, ("embed", None), **proj)
    self.value = _linear(dim, dim, ("embed", None), **proj)
    self.out = _linear(dim, dim, (None, "embed"), **proj)
    mlp = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.mlp_in = _linear(dim, mlp_dim, ("embed", "mlp"), **mlp)
    self.mlp_out = _linear(mlp_dim, dim, ("mlp", "embed"), **mlp)

  def _attend(self, hidden: Array) -> Array:
    """Cross-attention of token queries `[B, L, D]` over the latents."""
    batch, length, _ = hidden.shape
    head_dim = self.dim // self.num_heads
    latents = jnp.asarray(self.latents[...], self.dtype)
    q = self.query(hidden).reshape(batch, length, self.num_heads, head_dim)
    k = self.key(latents).reshape(-1, self.num_heads, head_dim)
    v = self.value(latents).reshape(-1, self.num_heads, head_dim)
    logits = jnp.einsum("blhk,rhk->bhlr", q, k, preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(logits / math.sqrt(head_dim), axis=-1).astype(self.dtype)
    attended = jnp.einsum("bhlr,rhk->blhk", probs, v).reshape(batch, length, self.dim)
    return self.out(attended)

  def __call__(self, hidden: Array, mask: Array) -> Array:
    """Pools `hidden: [B, L, D]` under `mask: [B, L]` into `[B, D]`."""
    bool_mask = _check_inputs(hidden, mask)
    if hidden.shape[-1] != self.dim:
      raise ValueError(f"hidden width must be dim={self.dim}, got shape {hidden.shape}")
    # Zero padded states up front so garbage there cannot overflow into NaN gradients.
    x = jnp.where(bool_mask[..., None], hidden, 0).astype(self.dtype)
    x = x + self._attend(x)
    # Exact (erf) GELU, as in the paper's FeedForward.
    x = x + self.mlp_out(jax.nn.gelu(self.mlp_in(x), approximate=False))
    return mean_pool(x, bool_mask)


class MultiLayerPooling(nnx.Module):
  """Trainable attention over layers: pool every layer, then softmax-weight the layers.

  Each layer's states are pooled with a base pooler, giving `p_n: [B, D]`; the output is
  `sum_n softmax_n(q . p_n / sqrt(D)) p_n` with a trainable query `q: [D]`. The query starts at
  zero, so at init the result is the plain average of the pooled layers.
  """

  def __init__(self, num_layers: int, dim: int, *, base: str = "mean",
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    """Builds the pooler.

    Args:
      num_layers: number of stacked layers expected in `all_hidden`.
      dim: model width D.
      base: name of the per-layer pooler, a key of `POOLING_FUNCTIONS`.
      param_dtype: dtype of the query.
      rngs: random streams (unused by the zero init; kept for a uniform constructor).
    """
    if num_layers < 1:
      raise ValueError(f"num_layers must be a positive integer, got {num_layers}")
    if dim < 1:
      raise ValueError(f"dim must be a positive integer, got {dim}")
    _pooling_function(base)
    self.num_layers, self.dim, self.base = num_layers, dim, base
    query_init = nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",))
    self.query = nnx.Param(query_init(rngs.params(), (dim,), param_dtype))

  def __call__(self, all_hidden: Array, mask: Array) -> Array:
    """Pools `all_hidden: [num_layers, B, L, D]` under `mask: [B, L]` into `[B, D]`."""
    if all_hidden.ndim != 4 or all_hidden.shape[0] != self.num_layers \
        or all_hidden.shape[-1] != self.dim:
      raise ValueError(f"all_hidden must have shape [num_layers={self.num_layers}, B, L, "
                       f"dim={self.dim}], got shape {all_hidden.shape}")
    base = _pooling_function(self.base)
    pooled = jax.vmap(base, in_axes=(0, None))(all_hidden, mask)  # [N, B, D]
    pooled = pooled.astype(jnp.float32)
    # Elementwise products, not einsum: these are tiny and TPU matmuls default to bf16 passes.
    scores = (pooled * self.query[...].astype(jnp.float32)).sum(-1) / math.sqrt(self.dim)
    weights = jax.nn.softmax(scores, axis=0)  # [N, B], over layers
    return (weights[..., None] * pooled).sum(0).astype(all_hidden.dtype)


# ----------------------------------------------------------------------------------------------
# Uniform entry point.
# ----------------------------------------------------------------------------------------------

POOLER_KINDS: tuple[str, ...] = (*POOLING_FUNCTIONS, "latent_attention", "multi_layer")


class Pooler(nnx.Module):
  """One pooling head chosen by name, with a single call signature for every kind.

  `kind` is one of `POOLER_KINDS`. Parameter-free kinds take no extra arguments;
  "latent_attention" forwards `**kwargs` to `LatentAttentionPooling`; "multi_layer" needs
  `num_layers` and forwards `**kwargs` (e.g. `base="cls"`) to `MultiLayerPooling`.
  """

  def __init__(self, kind: str, dim: int, *, num_layers: int | None = None, rngs: nnx.Rngs,
               **kwargs):
    """Builds the head; raises `ValueError` for an unknown kind or misplaced options."""
    if kind not in POOLER_KINDS:
      raise ValueError(f"unknown pooling kind {kind!r}; expected one of {list(POOLER_KINDS)}")
    if num_layers is not None and kind != "multi_layer":
      raise ValueError(f"num_layers={num_layers} is only used by kind 'multi_layer', got {kind!r}")
    self.kind = kind
    self.dim = dim
    head = None
    if kind == "latent_attention":
      head = LatentAttentionPooling(dim, rngs=rngs, **kwargs)
    elif kind == "multi_layer":
      if num_layers is None:
        raise ValueError("kind 'multi_layer' needs num_layers, got None")
      head = MultiLayerPooling(num_layers, dim, rngs=rngs, **kwargs)
    elif kwargs:
      raise ValueError(f"kind {kind!r} takes no options, got {sorted(kwargs)}")
    # Marked as data even when None so the attribute's pytree status is the same for all kinds.
    self.head = nnx.data(head)

  def __call__(self, last_hidden: Array, mask: Array, all_hidden: Array | None = None) -> Array:
    """Pools to `[B, D]`.

    Args:
      last_hidden: `[B, L, D]` final token states.
      mask: `[B, L]`, nonzero for real tokens.
      all_hidden: `[num_layers, B, L, D]` per-layer states; required by "multi_layer" only.
    """
    if self.kind in POOLING_FUNCTIONS:
      return POOLING_FUNCTIONS[self.kind](last_hidden, mask)
    if self.kind == "latent_attention":
      return self.head(last_hidden, mask)
    if all_hidden is None:
      raise ValueError("kind 'multi_layer' needs all_hidden [num_layers, B, L, D], got None")
    if all_hidden.shape[1:] != last_hidden.shape:
      raise ValueError(f"all_hidden must have shape [num_layers, *last_hidden.shape] = "
                       f"[N, {', '.join(map(str, last_hidden.shape))}], got {all_hidden.shape}")
    return self.head(all_hidden, mask)
