"""Sentence embedder: an encoder plus a pooling head (plus optional L2 normalisation).

Any encoder with the `TransformerEncoder` calling convention works here:
`encoder(input_ids, attention_mask, *, deterministic, output_hidden_states) -> EncoderOutput`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxemb.nn.layers import check_int_range
from jaxemb.nn.pooling import Pooler


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Row-wise L2 normalisation, in float32 (as torch.nn.functional.normalize, eps 1e-12)."""
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class SentenceEmbedder(nnx.Module):
  """`(input_ids, attention_mask) -> [B, D]` sentence embeddings."""

  def __init__(self, encoder: nnx.Module, pooler: Pooler, *, normalize: bool = True):
    self.encoder = encoder
    self.pooler = pooler
    self.normalize = normalize

  @property
  def dim(self) -> int:
    return self.encoder.hidden_size

  @property
  def num_layers(self) -> int:
    """Layers of the encoder (embeddings not counted): the valid `layer` values are 1 .. this."""
    return self.encoder.num_hidden_states - 1

  def check_size(self, layer: int | None, truncate_dim: int | None) -> None:
    """Raises ValueError unless `layer` / `truncate_dim` (None: the full model) are valid."""
    if layer is not None:
      check_int_range("layer", layer, 1, self.num_layers)
      if self.pooler.kind == "multi_layer" and layer != self.num_layers:
        raise ValueError(f"layer={layer} needs a pooler of one layer's states; 'multi_layer' "
                         f"pooling weighs all {self.num_layers} layers")
    if truncate_dim is not None:
      check_int_range("truncate_dim", truncate_dim, 1, self.dim)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, *,
               deterministic: bool = True, normalize: bool | None = None,
               layer: int | None = None, truncate_dim: int | None = None,
               position_ids: jax.Array | None = None) -> jax.Array:
    """Embeds a padded batch: float32 `[B, D]` (`[B, truncate_dim]` when truncated).

    Args:
      input_ids: int `[B, L]` token ids.
      attention_mask: `[B, L]`, 1 for real tokens and 0 for padding.
      deterministic: disables dropout when True (inference).
      normalize: L2-normalise the pooled vectors; None uses the module's `normalize`.
      layer: pool the hidden states of this layer (1-based, 1 .. `num_layers`) instead of the
        last one; the encoder stops there, so smaller layers cost less.
      truncate_dim: keep the first `truncate_dim` dimensions of the pooled vector, before
        normalisation (Matryoshka / 2D-Matryoshka embeddings).
      position_ids: explicit `[B, L]` positions for the encoder (transformer encoders; see
        `TransformerEncoder`), e.g. PoSE offsets when tuning long-context position rows.
    """
    kwargs = {} if position_ids is None else {"position_ids": position_ids}
    return self._embed(input_ids, attention_mask, attention_mask, None, deterministic,
                       normalize, layer, truncate_dim, **kwargs)

  def embed_packed(self, packed_ids: jax.Array, segment_ids: jax.Array, unpack: jax.Array,
                   mask: jax.Array, *, deterministic: bool = True, normalize: bool | None = None,
                   layer: int | None = None, truncate_dim: int | None = None) -> jax.Array:
    """Embeds texts packed several to a row (`jaxemb.data.packing.pack`): float32 `[B, D]`,
    equal to `self(ids, mask, ...)` on the unpacked padded batch.

    Args:
      packed_ids, segment_ids: int `[R, P]` packed rows and their segment numbers (0 = pad).
      unpack: int `[B, L]`, the flat index into the `R * P` packed tokens of text b's j-th
        token (any valid index where `mask` is 0).
      mask: `[B, L]`, 1 for text b's real tokens (right-padded).
      deterministic, normalize, layer, truncate_dim: as `__call__`.
    """
    return self._embed(packed_ids, segment_ids > 0, mask, unpack, deterministic, normalize,
                       layer, truncate_dim, segment_ids=segment_ids)

  def _embed(self, input_ids, encoder_mask, mask, unpack, deterministic: bool,
             normalize: bool | None, layer: int | None, truncate_dim: int | None,
             **encoder_kwargs) -> jax.Array:
    """Encoder, then the pooler on the `[B, L]` states of `mask`: the encoder's own when
    `unpack` is None, else gathered back from packed rows by `unpack`."""
    self.check_size(layer, truncate_dim)
    normalize = self.normalize if normalize is None else normalize
    needs_all = self.pooler.kind == "multi_layer"
    if layer is not None:
      encoder_kwargs["num_layers"] = layer
    out = self.encoder(input_ids, encoder_mask, deterministic=deterministic,
                       output_hidden_states=needs_all, **encoder_kwargs)
    # packed: back to the padded [B, L] layout, so every pooler reads what it reads unpacked
    padded = (lambda h: h) if unpack is None else (
        lambda h: jnp.take(h.reshape(-1, h.shape[-1]), unpack, axis=0))
    all_hidden = jnp.stack([padded(h) for h in out.hidden_states]) if needs_all else None
    pooled = self.pooler(padded(out.last_hidden_state), mask, all_hidden)
    if truncate_dim is not None:
      pooled = pooled[:, :truncate_dim]
    return l2_normalize(pooled) if normalize else pooled.astype(jnp.float32)


def layer_embeddings(embedder: SentenceEmbedder, input_ids: jax.Array, attention_mask: jax.Array,
                     *, deterministic: bool = True) -> jax.Array:
  """Pooled embeddings of every hidden state from one encoder pass: float32 `[L + 1, B, D]`.

  Index 0 pools the embedding-layer output and index `l` the output of layer `l`, as Hugging
  Face `hidden_states` (so `[-1]` is the full model before normalisation); the module's pooler
  is applied to each layer's states. Not normalised: the elastic objectives
  (`jaxemb.objectives.elastic`) normalise after truncating, as `SentenceEmbedder(...,
  layer=l, truncate_dim=d)` does. Row `l` equals `embedder(..., layer=l, normalize=False)`.
  """
  if embedder.pooler.kind == "multi_layer":
    raise ValueError("layer_embeddings needs a pooler of one layer's states; 'multi_layer' "
                     "pooling weighs all layers together")
  out = embedder.encoder(input_ids, attention_mask, deterministic=deterministic,
                         output_hidden_states=True)
  return jnp.stack([embedder.pooler(h, attention_mask).astype(jnp.float32)
                    for h in out.hidden_states])
