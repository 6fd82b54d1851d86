"""AdamW set-up: schedules against closed forms, decay mask, gradient clipping."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxemb.nn.build import build_embedder
from jaxemb.train.optim import decay_mask, learning_rate_schedule, make_optimizer

LR, TOTAL, WARMUP = 0.5, 100, 10


def _values(schedule, steps):
  return np.array([float(schedule(t)) for t in steps])


def test_warmup_is_linear_from_zero():
  schedule = learning_rate_schedule(LR, TOTAL, WARMUP, "constant")
  steps = range(WARMUP + 1)
  np.testing.assert_allclose(_values(schedule, steps), [LR * t / WARMUP for t in steps],
                             rtol=1e-6)


@pytest.mark.parametrize("end_factor", [0.0, 0.1])
def test_cosine_decay_closed_form(end_factor):
  schedule = learning_rate_schedule(LR, TOTAL, WARMUP, "cosine", end_factor)
  steps = range(WARMUP, TOTAL + 5)  # past the end it stays at the floor
  end = LR * end_factor
  expected = [end + (LR - end) * 0.5 * (1 + math.cos(math.pi * min(t - WARMUP, TOTAL - WARMUP)
                                                     / (TOTAL - WARMUP))) for t in steps]
  np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("end_factor", [0.0, 0.2])
def test_linear_decay_closed_form(end_factor):
  schedule = learning_rate_schedule(LR, TOTAL, WARMUP, "linear", end_factor)
  steps = range(WARMUP, TOTAL + 5)
  expected = [LR + (LR * end_factor - LR) * min(t - WARMUP, TOTAL - WARMUP) / (TOTAL - WARMUP)
              for t in steps]
  np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5, atol=1e-7)


def test_no_warmup_starts_at_peak():
  schedule = learning_rate_schedule(LR, TOTAL, 0, "cosine")
  assert float(schedule(0)) == pytest.approx(LR)
  assert float(schedule(TOTAL)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("args, fragment", [
    ((LR, 0, 0, "cosine"), "total_steps"),
    ((LR, 10, 11, "cosine"), "warmup_steps=11"),
    ((LR, 10, 0, "step"), "'step'"),
])
def test_bad_schedule_arguments_raise(args, fragment):
  with pytest.raises(ValueError, match=fragment):
    learning_rate_schedule(*args)


@pytest.fixture(scope="module")
def encoder_params():
  """Pure-dict params (abstract) of a small real encoder with a learnable pooling head."""
  model = nnx.eval_shape(lambda: build_embedder(
      "transformer", dict(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2,
                          intermediate_size=32, max_position_embeddings=16),
      rngs=nnx.Rngs(0)))
  return nnx.split(model, nnx.Param, ...)[1].to_pure_dict()


def test_decay_mask_excludes_biases_and_norm_scales(encoder_params):
  mask = decay_mask({"model": encoder_params})
  flat = {jax.tree_util.keystr(path): m for path, m in jax.tree_util.tree_leaves_with_path(mask)}
  no_decay = {k for k, m in flat.items() if not m}
  decay = {k for k, m in flat.items() if m}
  assert no_decay and decay
  for key in no_decay:
    assert key.endswith("['bias']") or key.endswith("['scale']"), key
  for key in decay:
    assert key.endswith("['kernel']") or key.endswith("['embedding']"), key
  # The LayerNorm scales specifically (they are what decay would shrink towards zero).
  assert not flat["['model']['encoder']['embeddings']['norm']['scale']"]
  assert not flat["['model']['encoder']['layers'][0]['ffn_norm']['scale']"]
  assert flat["['model']['encoder']['embeddings']['word']['embedding']"]


def test_weight_decay_applies_only_where_the_mask_says(encoder_params):
  params = {"model": jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), encoder_params)}
  tx, _ = make_optimizer(dict(lr=1.0, decay="constant", weight_decay=0.1), 10)
  zeros = jax.tree.map(jnp.zeros_like, params)  # no gradient: the update is decay alone
  updates, _ = tx.update(zeros, tx.init(params), params)
  mask = decay_mask(params)
  for u, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mask), strict=True):
    np.testing.assert_allclose(u, -0.1 if m else 0.0, rtol=1e-6)


@pytest.mark.parametrize("grad_scale, clip_norm, expected_norm", [
    (50.0, 1.0, 1.0),   # clipped to the bound
    (0.5, 1.0, 0.5),    # below the bound: untouched
    (50.0, 0.0, 50.0),  # clipping off
])
def test_clipping_bounds_the_gradient_adam_sees(grad_scale, clip_norm, expected_norm):
  params = {"w": jnp.ones((3, 4)), "b": jnp.ones((4,))}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 1.0), params)
  grads = jax.tree.map(lambda g: g * grad_scale / optax.tree.norm(grads), grads)
  tx, _ = make_optimizer(dict(lr=1e-3, decay="constant", b1=0.9, clip_norm=clip_norm), 10)
  _, state = tx.update(grads, tx.init(params), params)
  adam = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(
      s, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)][0]
  # After one step mu = (1 - b1) * (the gradient Adam received).
  seen = optax.tree.norm(adam.mu) / (1 - 0.9)
  assert float(seen) == pytest.approx(expected_norm, rel=1e-5)
