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
               deterministic: bool = True) -> jax.Array:
    needs_all = self.pooler.kind == "multi_layer"
    out = self.encoder(input_ids, attention_mask, deterministic=deterministic,
                       output_hidden_states=needs_all)
    all_hidden = jnp.stack(out.hidden_states) if needs_all else None
    pooled = self.pooler(out.last_hidden_state, attention_mask, all_hidden)
    return l2_normalize(pooled) if self.normalize else pooled.astype(jnp.float32)


def embed(graphdef: nnx.GraphDef, params: nnx.State, batch: dict) -> jax.Array:
  """Functional form used under `jax.jit`: merges the module and embeds `batch`.

  `batch` holds "input_ids" and "attention_mask" ([B, L]); returns float32 [B, D].
  """
  model = nnx.merge(graphdef, params)
  return model(batch["input_ids"], batch["attention_mask"])
