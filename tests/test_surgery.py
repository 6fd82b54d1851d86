"""Pretrained-model edits (jaxemb.nn.surgery) and the pooling-ablation config."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.nn import surgery
from jaxemb.nn.pooling import POOLING_FUNCTIONS
from jaxemb.train.config import load_config
from tiny_tokenizer import tiny_model

REPO = Path(__file__).resolve().parents[1]


def _batch():
  ids = np.array([[2, 10, 11, 12, 3, 0], [2, 20, 21, 3, 0, 0]], np.int32)
  return jnp.asarray(ids), jnp.asarray((ids > 0).astype(np.int32))


def test_keep_first_layers_equals_running_the_first_layers():
  module = tiny_model().module
  ids, mask = _batch()
  # Reference: the full 2-layer encoder stopped after layer 1, mean-pooled by hand (float64).
  states = np.asarray(module.encoder(ids, mask, num_layers=1).last_hidden_state, np.float64)
  m = np.asarray(mask, np.float64)[..., None]
  pooled = (states * m).sum(1) / m.sum(1)
  expected = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
  cut = surgery.keep_first_layers(module, 1)
  assert cut.encoder.cfg.num_layers == 1 and len(cut.encoder.layers) == 1
  assert cut.num_layers == 1
  np.testing.assert_allclose(np.asarray(cut(ids, mask)), expected, atol=1e-5)


@pytest.mark.parametrize("bad", [0, 3, 1.5, True])
def test_keep_first_layers_bad_count(bad):
  with pytest.raises(ValueError, match="num_layers"):
    surgery.keep_first_layers(tiny_model().module, bad)


@pytest.mark.parametrize("kind", ["cls", "last_token", "latent_attention", "multi_layer"])
def test_replace_pooler(kind):
  module = tiny_model().module
  ids, mask = _batch()
  options = {"num_latents": 4, "num_heads": 2} if kind == "latent_attention" else {}
  out = surgery.adapt_pretrained(module, {"pooling": kind, "pooling_options": options},
                                 nnx.Rngs(1))
  assert out.pooler.kind == kind
  emb = np.asarray(out(ids, mask))
  assert emb.shape == (2, 32) and np.allclose(np.linalg.norm(emb, axis=-1), 1, atol=1e-5)
  if kind == "multi_layer":  # embeddings + 2 layers
    assert out.pooler.head.num_layers == 3
  if kind in POOLING_FUNCTIONS:  # a parameter-free head is that function of the last states
    states = out.encoder(ids, mask).last_hidden_state
    ref = np.asarray(POOLING_FUNCTIONS[kind](states, mask), np.float64)
    np.testing.assert_allclose(emb, ref / np.linalg.norm(ref, axis=-1, keepdims=True),
                               atol=1e-5)


def test_adapt_pretrained_keeps_the_pretrained_head_by_default():
  module = tiny_model().module
  head = module.pooler
  assert surgery.adapt_pretrained(module, {"pooling": "mean"}, nnx.Rngs(0)).pooler is head
  assert surgery.adapt_pretrained(module, {}, nnx.Rngs(0)).pooler is head
  with pytest.raises(ValueError, match="unknown pooling kind 'bogus'"):
    surgery.adapt_pretrained(module, {"pooling": "bogus"}, nnx.Rngs(0))


@pytest.mark.parametrize("kind", ["mean", "cls", "last_token", "latent_attention",
                                  "multi_layer"])
def test_pooling_config(kind):
  c = load_config(f"{REPO}/configs/codesearch_pooling.py:{kind}")
  base = load_config(f"{REPO}/configs/codesearch_minilm.py")
  assert c.model.pooling == kind and c.model.pretrained == base.model.pretrained
  assert c.total_steps == 15 and c.batch_size == base.batch_size
  assert c.optim.lr == base.optim.lr and c.data.split == base.data.split
  assert c.evaluators == [dict(task="stdlib_code_search", split="test")]
  assert c.eval_every == c.total_steps and not c.final_evaluators
  assert c.export == (kind in ("mean", "cls", "last_token"))
  local = load_config(f"{REPO}/configs/codesearch_pooling.py:runlocal,{kind}")
  assert local.model.pooling == kind and local.total_steps < 10
  assert load_config(f"{REPO}/configs/codesearch_pooling.py:{kind},steps=100").total_steps == 100


@pytest.mark.parametrize("arg", ["", "runlocal", "cls,mean"])
def test_pooling_config_needs_one_head(arg):
  with pytest.raises(ValueError, match="exactly one pooling head"):
    load_config(f"{REPO}/configs/codesearch_pooling.py:{arg}")
