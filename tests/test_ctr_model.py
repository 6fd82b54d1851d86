"""DLRM (nn/ctr.py) against a float64 numpy forward pass."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.nn import tables as T
from jaxemb.nn.ctr import DLRM, bce_with_logits, pairwise_dots


def test_pairwise_dots_vs_loop():
  x = np.random.default_rng(0).normal(size=(3, 5, 4))
  got = np.asarray(pairwise_dots(jnp.asarray(x, jnp.float32)))
  want = [[x[b, i] @ x[b, j] for i in range(5) for j in range(i + 1, 5)] for b in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _mlp_np(layers, x, final_relu):
  for i, layer in enumerate(layers):
    x = x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)
    if i < len(layers) - 1 or final_relu:
      x = np.maximum(x, 0)
  return x


def test_dlrm_vs_numpy():
  cards = [4, 30, 7]
  model = DLRM(T.FullTables(cards, 6, rngs=nnx.Rngs(0)), 5, bottom=(8,), top=(10, 4),
               rngs=nnx.Rngs(1))
  rng = np.random.default_rng(0)
  dense = rng.integers(-1, 50, (9, 5)).astype(np.float32)
  sparse = np.stack([rng.integers(0, c, 9) for c in cards], 1).astype(np.int32)
  got = np.asarray(model(dense, sparse))
  x = _mlp_np(model.bottom.layers, np.log1p(np.maximum(dense, 0)).astype(np.float64), True)
  table = np.asarray(model.tables.table[...], np.float64)
  offsets = np.array([0, 4, 34])
  emb = table[sparse + offsets]                      # [B, F, D]
  feats = np.concatenate([x[:, None], emb], axis=1)  # [B, F+1, D]
  dots = np.stack([[feats[b, i] @ feats[b, j] for i in range(4) for j in range(i + 1, 4)]
                   for b in range(9)])
  want = _mlp_np(model.top.layers, np.concatenate([x, dots], axis=1), False)[:, 0]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match=r"dense must be \[batch, 5\]"):
    model(dense[:, :4], sparse)


def test_bce_vs_numpy():
  z = np.random.default_rng(1).normal(size=50) * 4
  y = (np.random.default_rng(2).random(50) < 0.3).astype(np.int32)
  p = 1 / (1 + np.exp(-z))
  want = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
  assert float(bce_with_logits(jnp.asarray(z, jnp.float32), jnp.asarray(y))) == pytest.approx(
      want, rel=1e-5)
