"""BERT-compatible transformer encoder in Flax NNX.

One module family covers BERT/MiniLM (post-LN, absolute positions, the layout of Hugging Face
`BertModel`, so checkpoints map one-to-one) and modern encoders (pre-LN, rotary positions with
position-interpolation or NTK scaling for long-context extension).

Every parameter carries logical axis names (see `jaxemb/nn/__init__.py`):
  vocab  - token vocabulary rows        embed - model width
  qkv    - concatenated attention heads mlp   - feed-forward width
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxemb.nn import layers, long_context
from jaxemb.nn.layers import ACTIVATIONS, DTYPES, check_choice

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters of `TransformerEncoder`. Defaults are all-MiniLM-L6-v2's."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  norm_position: str = "post"  # "post" (BERT) or "pre"
  position_embedding: str = "absolute"  # "absolute" or "rotary"
  rope_theta: float = 10000.0
  # Long-context extension of rotary models: None, "linear" (position interpolation,
  # Chen et al. 2023) or "ntk" (NTK-aware base scaling); `rope_scaling_factor` = new/old length.
  rope_scaling: str | None = None
  rope_scaling_factor: float = 1.0
  # SelfExtend for rotary models (rope_scaling="self_extend"): exact positions within
  # `self_extend_window` tokens, grouped by `self_extend_group` beyond (nn/long_context.py).
  self_extend_group: int = 1
  self_extend_window: int = 0
  # Long context for absolute positions: None, "gp", "rp" or "pi" with factor s (see
  # jaxemb/nn/long_context.py); under "pi" the position table already has s x trained rows.
  position_scaling: str | None = None
  position_scaling_factor: int = 1
  # Attention scaling for long inputs (Su 2021; on in LongEmbed's evaluations): with L > 0, a
  # row of n real tokens multiplies its attention logits by max(1, log n / log L), so a
  # text of at most L tokens is encoded exactly as without it. 0: off.
  attention_scale_length: int = 0
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"
  pad_token_id: int = 0

  def __post_init__(self):
    check_choice("norm_position", self.norm_position, ("post", "pre"))
    check_choice("position_embedding", self.position_embedding, ("absolute", "rotary"))
    check_choice("rope_scaling", self.rope_scaling, (None, "linear", "ntk", "self_extend"))
    check_choice("position_scaling", self.position_scaling,
                 (None, *long_context.ABSOLUTE_METHODS))
    if self.position_scaling and self.position_embedding != "absolute":
      raise ValueError(f"position_scaling={self.position_scaling!r} needs absolute positions; "
                       f"this encoder has {self.position_embedding!r} (use rope_scaling)")
    if self.rope_scaling and self.position_embedding != "rotary":
      raise ValueError(f"rope_scaling={self.rope_scaling!r} needs rotary positions; this "
                       f"encoder has {self.position_embedding!r} (use position_scaling)")
    if self.position_scaling_factor < 1 or (
        self.position_scaling == "pi"
        and self.max_position_embeddings % self.position_scaling_factor):
      raise ValueError(f"position_scaling_factor must be a positive integer (dividing "
                       f"max_position_embeddings under 'pi'), got {self.position_scaling_factor}")
    if self.rope_scaling == "self_extend" and (
        self.self_extend_group < 1 or self.self_extend_window < 1):
      raise ValueError(f"self_extend needs self_extend_group >= 1 and self_extend_window >= 1, "
                       f"got {self.self_extend_group} and {self.self_extend_window}")
    check_choice("hidden_act", self.hidden_act, tuple(ACTIVATIONS))
    check_choice("dtype", self.dtype, tuple(DTYPES))
    check_choice("param_dtype", self.param_dtype, tuple(DTYPES))
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                 "max_position_embeddings"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
    if self.hidden_size % self.num_heads:
      raise ValueError(
          f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
    if self.position_embedding == "rotary" and (self.hidden_size // self.num_heads) % 2:
      raise ValueError(f"rotary positions need an even head size, got "
                       f"{self.hidden_size // self.num_heads}")
    if self.attention_scale_length < 0 or self.attention_scale_length == 1:
      raise ValueError(f"attention_scale_length must be 0 (off) or >= 2, got "
                       f"{self.attention_scale_length}")
    if self.rope_scaling_factor < 1.0:
      raise ValueError(f"rope_scaling_factor must be >= 1, got {self.rope_scaling_factor}")

  @property
  def max_length(self) -> int | None:
    """The longest input (None: any): the table rows, times s under grouped/recurrent positions."""
    if self.position_embedding != "absolute":
      return None
    if self.position_scaling in ("gp", "rp"):
      return self.max_position_embeddings * self.position_scaling_factor
    return self.max_position_embeddings

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def params_dtype(self):
    return DTYPES[self.param_dtype]


class EncoderOutput(NamedTuple):
  last_hidden_state: Array  # [B, L, D]
  hidden_states: tuple[Array, ...] | None  # embeddings + each layer, when requested


def _dense(cfg: TransformerConfig, din: int, dout: int, names: tuple, rngs: nnx.Rngs):
  return layers.dense(din, dout, names, dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype,
                      rngs=rngs)  # BERT's init, normal(0.02)


def _layer_norm(cfg: TransformerConfig, rngs: nnx.Rngs):
  return layers.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, dtype=cfg.compute_dtype,
                           param_dtype=cfg.params_dtype, rngs=rngs)


def rotary_frequencies(cfg: TransformerConfig) -> Array:
  """Inverse frequencies [head_dim/2] after the configured long-context scaling."""
  dim = cfg.head_dim
  theta = cfg.rope_theta
  if cfg.rope_scaling == "ntk":
    # NTK-aware: stretch the base so the lowest frequency covers the longer context while the
    # highest (local) ones are nearly unchanged.
    theta = theta * cfg.rope_scaling_factor ** (dim / (dim - 2))
  inv_freq = 1.0 / theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  if cfg.rope_scaling == "linear":
    inv_freq = inv_freq / cfg.rope_scaling_factor  # position interpolation: positions / factor
  return inv_freq


def apply_rotary(x: Array, positions: Array, inv_freq: Array) -> Array:
  """Rotates pairs (x[..., :d/2], x[..., d/2:]) of x [B, L, H, d] by position-dependent angles."""
  angles = positions[:, :, None].astype(jnp.float32) * inv_freq  # [B, L, d/2]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x.dtype)


class Embeddings(nnx.Module):
  """Token + (absolute position) + token-type embeddings, then LayerNorm (post-LN) and dropout."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    kw = dict(dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype, rngs=rngs)
    self.word = layers.token_embedding(cfg.vocab_size, cfg.hidden_size, **kw)
    embed = lambda rows: layers.token_embedding(rows, cfg.hidden_size, row_axis=None, **kw)
    # Optional parts are None when unused (a module attribute is data only if it holds a module).
    self.position = (embed(cfg.max_position_embeddings)
                     if cfg.position_embedding == "absolute" else None)
    self.token_type = embed(cfg.type_vocab_size) if cfg.type_vocab_size else None
    self.norm = _layer_norm(cfg, rngs) if cfg.norm_position == "post" else None
    self.dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)

  def __call__(self, input_ids, positions, token_type_ids, *, deterministic: bool):
    x = self.word(input_ids)
    if self.position is not None:
      x = x + self.position(positions)
    if self.token_type is not None:
      x = x + self.token_type(token_type_ids)
    if self.norm is not None:
      x = self.norm(x)
    return self.dropout(x, deterministic=deterministic)


class SelfAttention(nnx.Module):
  """Multi-head self-attention; softmax in float32 whatever the compute dtype."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.hidden_size
    self.query = _dense(cfg, d, d, ("embed", "qkv"), rngs)
    self.key = _dense(cfg, d, d, ("embed", "qkv"), rngs)
    self.value = _dense(cfg, d, d, ("embed", "qkv"), rngs)
    self.out = _dense(cfg, d, d, ("qkv", "embed"), rngs)
    self.dropout = nnx.Dropout(cfg.attention_dropout_rate, rngs=rngs)

  def __call__(self, x, bias, positions, *, deterministic: bool, logit_scale=None):
    cfg = self.cfg
    b, l, _ = x.shape
    split = lambda t: t.reshape(b, l, cfg.num_heads, cfg.head_dim)
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    if cfg.rope_scaling == "self_extend":
      rotate = lambda t, pos: apply_rotary(t, pos, rotary_frequencies(cfg))
      scores = long_context.self_extend_scores(q, k, positions, rotate, cfg.self_extend_group,
                                               cfg.self_extend_window)
    else:
      if cfg.position_embedding == "rotary":
        inv_freq = rotary_frequencies(cfg)
        q, k = apply_rotary(q, positions, inv_freq), apply_rotary(k, positions, inv_freq)
      scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    scores = scores / jnp.sqrt(jnp.float32(cfg.head_dim))
    if logit_scale is not None:  # [B, 1, 1, 1]: attention scaling of long rows
      scores = scores * logit_scale
    scores = scores + bias
    probs = jax.nn.softmax(scores, axis=-1)
    probs = self.dropout(probs, deterministic=deterministic).astype(v.dtype)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, l, cfg.hidden_size)
    return self.out(ctx)


class TransformerLayer(nnx.Module):
  """Attention + feed-forward block, post-LN (BERT) or pre-LN."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.attention = SelfAttention(cfg, rngs=rngs)
    self.attention_norm = _layer_norm(cfg, rngs)
    self.ffn_in = _dense(cfg, cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), rngs)
    self.ffn_out = _dense(cfg, cfg.intermediate_size, cfg.hidden_size, ("mlp", "embed"), rngs)
    self.ffn_norm = _layer_norm(cfg, rngs)
    self.dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)
    self.activation = ACTIVATIONS[cfg.hidden_act]

  def _ffn(self, x, deterministic):
    return self.dropout(self.ffn_out(self.activation(self.ffn_in(x))), deterministic=deterministic)

  def __call__(self, x, bias, positions, *, deterministic: bool, logit_scale=None):
    attend = lambda h: self.dropout(
        self.attention(h, bias, positions, deterministic=deterministic,
                       logit_scale=logit_scale),
        deterministic=deterministic)
    if self.cfg.norm_position == "post":
      x = self.attention_norm(x + attend(x))
      return self.ffn_norm(x + self._ffn(x, deterministic))
    x = x + attend(self.attention_norm(x))
    return x + self._ffn(self.ffn_norm(x), deterministic)


def attention_logit_scale(attention_mask: Array, length: int) -> Array:
  """[B, 1, 1, 1] max(1, log n / log `length`) for rows of n real tokens (attention scaling)."""
  n = jnp.maximum(attention_mask.astype(jnp.float32).sum(1), 1.0)
  return jnp.maximum(1.0, jnp.log(n) / jnp.log(jnp.float32(length)))[:, None, None, None]


def _positions(attention_mask: Array) -> Array:
  """Position ids that count real tokens only, so left padding does not shift positions."""
  return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1, 0)


def _segment_positions(segment_ids: Array) -> Array:
  """Positions counted from each segment's first token (packed rows); 0 on padding."""
  index = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)[None]
  starts = jnp.concatenate([jnp.ones_like(segment_ids[:, :1], bool),
                            segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)
  start = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)
  return jnp.where(segment_ids > 0, index - start, 0)


class TransformerEncoder(nnx.Module):
  """BERT-family encoder: `(input_ids, attention_mask) -> EncoderOutput`."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs)
    self.layers = nnx.List([TransformerLayer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.final_norm = _layer_norm(cfg, rngs) if cfg.norm_position == "pre" else None

  @property
  def hidden_size(self) -> int:
    return self.cfg.hidden_size

  @property
  def num_hidden_states(self) -> int:
    """How many states `output_hidden_states=True` returns (embeddings + each layer)."""
    return self.cfg.num_layers + 1

  def __call__(self, input_ids: Array, attention_mask: Array, token_type_ids: Array | None = None,
               *, deterministic: bool = True, output_hidden_states: bool = False,
               num_layers: int | None = None, scan: bool = False,
               position_ids: Array | None = None,
               segment_ids: Array | None = None) -> EncoderOutput:
    """Encodes a padded batch.

    Args:
      input_ids: int [B, L] token ids.
      attention_mask: [B, L], 1 for real tokens and 0 for padding (left or right).
      token_type_ids: optional int [B, L]; zeros when omitted.
      deterministic: disables dropout when True (inference).
      output_hidden_states: also return the embedding output and every layer's output.
      num_layers: run only the first `num_layers` layers (1 .. cfg.num_layers; all by default).
        The output is then that layer's hidden state, `hidden_states[num_layers]` of a full
        run; the final norm of pre-LN models belongs to the last layer only.
      scan: run the layers under `jax.lax.scan` (inference only; off by default, see
        `jaxemb.nn.layers.run_layers` for why).
      position_ids: optional int [B, L] positions to use instead of counting real tokens: for
        absolute positions the table rows read as they are (no long-context map), for rotary
        ones the rotation positions; e.g. PoSE's skipped positions when tuning position rows
        (`jaxemb.long_context.pose_positions`). Values must be below the table's rows.
      segment_ids: optional int [B, L] for packed rows (`jaxemb.data.packing`): 1, 2, ... for
        the texts laid end to end in a row, 0 for padding. Tokens attend only within their
        segment and positions count from each segment's start, so each text is encoded as if
        alone; `attention_mask` must then be `segment_ids > 0`.
    """
    if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
      raise ValueError(f"expected input_ids and attention_mask of the same shape [B, L], got "
                       f"{input_ids.shape} and {attention_mask.shape}")
    if self.cfg.max_length is not None and input_ids.shape[1] > self.cfg.max_length:
      scaled = (f" x position_scaling_factor={self.cfg.position_scaling_factor} "
                f"({self.cfg.position_scaling})" if self.cfg.max_length != \
                self.cfg.max_position_embeddings else "")
      raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings="
                       f"{self.cfg.max_position_embeddings}{scaled}")
    num_layers = layers.check_num_layers(num_layers, self.cfg.num_layers)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    # HF BERT numbers positions 0..L-1 from the left edge; we count real tokens instead, which is
    # identical for right padding (sentence-transformers) and also correct for left padding.
    explicit = position_ids is not None
    if explicit and position_ids.shape != input_ids.shape:
      raise ValueError(f"position_ids must have the shape of input_ids {input_ids.shape}, got "
                       f"{position_ids.shape}")
    if segment_ids is not None:
      if segment_ids.shape != input_ids.shape or explicit or self.cfg.position_scaling:
        raise ValueError(f"segment_ids must have the shape of input_ids {input_ids.shape}, "
                         "without position_ids or a long-context position_scaling; got "
                         f"{segment_ids.shape}, position_ids={explicit}, "
                         f"position_scaling={self.cfg.position_scaling!r}")
      positions, keys = _segment_positions(segment_ids), segment_ids[:, None, None, :]
      allowed = (segment_ids[:, None, :, None] == keys) & (keys > 0)
    else:
      positions = position_ids.astype(jnp.int32) if explicit else _positions(attention_mask)
      allowed = attention_mask[:, None, None, :] > 0
    # Additive mask in float32: -inf-like for padded keys; a large finite value keeps an
    # all-padding row finite (its output is never used by the poolers).
    bias = jnp.where(allowed, 0.0, -1e9).astype(jnp.float32)
    rows = positions
    if self.cfg.position_scaling and not explicit:  # long context: the row each position reads
      rows = long_context.absolute_positions(
          positions, attention_mask.astype(jnp.int32).sum(1), self.cfg.position_scaling,
          self.cfg.max_position_embeddings, self.cfg.position_scaling_factor)
    logit_scale = None
    if self.cfg.attention_scale_length:
      if segment_ids is not None:
        raise ValueError("attention_scale_length scales whole rows; it does not apply to "
                         "packed rows (segment_ids)")
      logit_scale = attention_logit_scale(attention_mask, self.cfg.attention_scale_length)
    x = self.embeddings(input_ids, rows, token_type_ids, deterministic=deterministic)
    first = x
    x, states = layers.run_layers(
        self.layers[:num_layers], x,
        lambda layer, h: layer(h, bias, positions, deterministic=deterministic,
                               logit_scale=logit_scale),
        deterministic=deterministic, want_states=output_hidden_states, scan=scan)
    if self.final_norm is not None and num_layers == self.cfg.num_layers:
      x = self.final_norm(x)
      if states:
        states[-1] = x
    return EncoderOutput(x, (first, *states) if output_hidden_states else None)
