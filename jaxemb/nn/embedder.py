"""Sentence embedder: an encoder plus a pooling head (plus optional L2 normalisation).

Any encoder with the `TransformerEncoder` calling convention works here:
`encoder(input_ids, attention_mask, *, deterministic, output_hidden_states) -> EncoderOutput`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

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

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, *,
               deterministic: bool = True, normalize: bool | None = None) -> jax.Array:
    """Embeds a padded batch: float32 `[B, D]`.

    Args:
      input_ids: int `[B, L]` token ids.
      attention_mask: `[B, L]`, 1 for real tokens and 0 for padding.
      deterministic: disables dropout when True (inference).
      normalize: L2-normalise the pooled vectors; None uses the module's `normalize`.
    """
    normalize = self.normalize if normalize is None else normalize
    needs_all = self.pooler.kind == "multi_layer"
    out = self.encoder(input_ids, attention_mask, deterministic=deterministic,
                       output_hidden_states=needs_all)
    all_hidden = jnp.stack(out.hidden_states) if needs_all else None
    pooled = self.pooler(out.last_hidden_state, attention_mask, all_hidden)
    return l2_normalize(pooled) if normalize else pooled.astype(jnp.float32)
