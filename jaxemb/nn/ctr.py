"""DLRM-style click-through-rate model over any embedding table of `jaxemb.nn.tables`.

    logit = top_mlp([bottom(dense), dots])      dots = <e_i, e_j> for i < j over
                                                [bottom(dense), table(sparse)_1..F]

(Naumov et al. 2019). The bottom MLP maps log1p(dense counts) to the tables' width D, so the dense
vector takes part in the pairwise dot interactions like one more field.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class MLP(nnx.Module):
  """Linear layers with ReLU between them (and after the last one when `final_relu`)."""

  def __init__(self, sizes: Sequence[int], *, rngs: nnx.Rngs, final_relu: bool = False):
    if len(sizes) < 2 or min(sizes) < 1:
      raise ValueError(f"MLP sizes must be >= 2 positive ints (in, ..., out), got {list(sizes)}")
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.final_relu = final_relu

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1 or self.final_relu:
        x = jax.nn.relu(x)
    return x


def pairwise_dots(x: jax.Array) -> jax.Array:
  """[B, N, D] -> [B, N(N-1)/2]: <x_i, x_j> for i < j (row-major upper triangle)."""
  n = x.shape[1]
  i, j = np.triu_indices(n, k=1)
  gram = jnp.einsum("bnd,bmd->bnm", x, x)
  return gram[:, i, j]


class DLRM(nnx.Module):
  """Bottom MLP on dense features, pairwise dot interactions, top MLP -> one logit per row.

  Args:
    tables: an embedding table module (`ids [B, F] -> [B, F, D]`, attributes `dim`, `cards`).
    num_dense: number of dense features.
    bottom: hidden sizes of the bottom MLP (its output is D).
    top: hidden sizes of the top MLP (its output is 1).
  """

  def __init__(self, tables: nnx.Module, num_dense: int, bottom: Sequence[int] = (64,),
               top: Sequence[int] = (64, 32), *, rngs: nnx.Rngs):
    self.tables = tables
    self.num_dense = int(num_dense)
    dim = int(tables.dim)
    fields = len(tables.cards) + 1
    self.bottom = MLP([self.num_dense, *bottom, dim], rngs=rngs, final_relu=True)
    self.top = MLP([dim + fields * (fields - 1) // 2, *top, 1], rngs=rngs)

  def __call__(self, dense: jax.Array, sparse: jax.Array, **table_kwargs: Any) -> jax.Array:
    """Logits [B] for dense counts [B, num_dense] and ids [B, F] (`table_kwargs`, e.g. OptEmbed's
    `dims`, go to the table)."""
    if dense.ndim != 2 or dense.shape[1] != self.num_dense:
      raise ValueError(f"dense must be [batch, {self.num_dense}], got {dense.shape}")
    x = self.bottom(jnp.log1p(jnp.maximum(dense.astype(jnp.float32), 0.0)))
    emb = self.tables(sparse, **table_kwargs)
    feats = jnp.concatenate([x[:, None, :], emb.astype(x.dtype)], axis=1)
    z = jnp.concatenate([x, pairwise_dots(feats)], axis=-1)
    return self.top(z)[:, 0]


def bce_with_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean binary cross-entropy of `logits` against 0/1 `labels` (stable softplus form)."""
  labels = labels.astype(logits.dtype)
  return jnp.mean(jax.nn.softplus(logits) - labels * logits)
