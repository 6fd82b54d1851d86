"""Hypernetworks that produce embeddings.

`TokenHyperNetwork` (ZeTT, Minixhofer et al. 2024): the embedding of any token is predicted from
its decomposition by the source tokenizer. The source embeddings of its <= k pieces (frozen,
passed in) go through an input projection, a small transformer over the k positions, and an
output projection of the first position:

    pieces [N, k] --E_source--> [N, k, D] -> proj_in -> +pos -> layers -> [:, 0] -> proj_out -> [N, D]

With `residual="mean"` the output is added to the mean of the piece embeddings (FVT's `mean`
initialiser) and the output projection starts at zero, so the untrained hypernetwork *is*
`mean` and training learns a correction to it; "none" is ZeTT's plain prediction.

Special tokens are not predicted (the caller copies their source rows). Logical axes: the
projections are ("embed", "embed_out") / ("embed_out", "embed"); the layers use the
transformer's names.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxemb.nn.pooling import mean_pool
from jaxemb.nn.transformer import TransformerConfig, TransformerLayer


RESIDUALS = ("none", "mean")


@dataclasses.dataclass(frozen=True)
class HyperConfig:
  """Shape of a `TokenHyperNetwork`. `hidden_size` must be the source model's width."""

  hidden_size: int = 384
  num_layers: int = 3
  num_heads: int = 12
  intermediate_size: int = 1536
  max_pieces: int = 7
  dropout_rate: float = 0.0
  residual: str = "none"

  def __post_init__(self):
    for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_pieces"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
    if self.residual not in RESIDUALS:
      raise ValueError(f"residual={self.residual!r} is not one of {RESIDUALS}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size={self.hidden_size} must be divisible by "
                       f"num_heads={self.num_heads}")

  def layer_config(self) -> TransformerConfig:
    return TransformerConfig(
        vocab_size=1, hidden_size=self.hidden_size, num_layers=self.num_layers,
        num_heads=self.num_heads, intermediate_size=self.intermediate_size,
        max_position_embeddings=self.max_pieces, dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.dropout_rate, norm_position="pre", type_vocab_size=0)


def _dense(din: int, dout: int, names: tuple, rngs: nnx.Rngs, *,
           kernel_init=nnx.initializers.normal(0.02)) -> nnx.Linear:
  return nnx.Linear(din, dout, kernel_init=nnx.with_partitioning(
      kernel_init, names), bias_init=nnx.with_partitioning(
          nnx.initializers.zeros_init(), names[1:]), rngs=rngs)


class TokenHyperNetwork(nnx.Module):
  """`(piece_embeddings [N, k, D], piece_mask [N, k]) -> predicted token embeddings [N, D]`."""

  def __init__(self, cfg: HyperConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.hidden_size
    self.proj_in = _dense(d, d, ("embed", "embed_out"), rngs)
    self.position = nnx.Param(nnx.with_partitioning(nnx.initializers.normal(0.02),
                                                    (None, "embed"))(rngs.params(),
                                                                     (cfg.max_pieces, d)))
    layer_cfg = cfg.layer_config()
    self.layers = nnx.List([TransformerLayer(layer_cfg, rngs=rngs)
                            for _ in range(cfg.num_layers)])
    self.norm = nnx.LayerNorm(d, epsilon=1e-12, rngs=rngs)
    self.proj_out = _dense(d, d, ("embed_out", "embed"), rngs, kernel_init=(
        nnx.initializers.zeros_init() if cfg.residual == "mean"
        else nnx.initializers.normal(0.02)))

  def __call__(self, piece_embeddings: jax.Array, piece_mask: jax.Array, *,
               deterministic: bool = True) -> jax.Array:
    n, k, d = piece_embeddings.shape
    if k > self.cfg.max_pieces or d != self.cfg.hidden_size:
      raise ValueError(f"piece embeddings have shape {piece_embeddings.shape}; expected "
                       f"[N, <= {self.cfg.max_pieces}, {self.cfg.hidden_size}]")
    x = self.proj_in(piece_embeddings.astype(jnp.float32)) + self.position[:k]
    # Rows without any piece (padding rows) attend to position 0 so softmax stays finite.
    mask = jnp.asarray(piece_mask).astype(bool).at[:, 0].set(True)
    bias = jnp.where(mask[:, None, None, :], 0.0, -1e9).astype(jnp.float32)
    positions = jnp.broadcast_to(jnp.arange(k), (n, k))
    for layer in self.layers:
      x = layer(x, bias, positions, deterministic=deterministic)
    out = self.proj_out(self.norm(x[:, 0]))
    if self.cfg.residual == "mean":
      out = out + mean_pool(piece_embeddings.astype(jnp.float32), piece_mask)
    return out


def predict_embeddings(hyper: TokenHyperNetwork, source_table: jax.Array, pieces: jax.Array,
                       piece_mask: jax.Array, copy_ids: jax.Array, *,
                       deterministic: bool = True) -> jax.Array:
  """Embeddings of tokens given by their source decompositions.

  Args:
    source_table: [V_source, D] source token embeddings.
    pieces: [..., k] source ids (anything where `piece_mask` is 0).
    piece_mask: [..., k] 1 for real pieces.
    copy_ids: [...] a source id to copy verbatim (special tokens), or -1 to predict.

  Returns:
    [..., D] float32.
  """
  lead, k = pieces.shape[:-1], pieces.shape[-1]
  flat = jnp.take(source_table, pieces.reshape(-1, k), axis=0)
  predicted = hyper(flat, piece_mask.reshape(-1, k), deterministic=deterministic)
  predicted = predicted.reshape(*lead, -1)
  copied = jnp.take(source_table, jnp.maximum(copy_ids, 0), axis=0)
  return jnp.where((copy_ids >= 0)[..., None], copied.astype(jnp.float32), predicted)
