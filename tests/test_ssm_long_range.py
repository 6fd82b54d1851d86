"""Long-range learning check for the S4D encoder: delayed recall over 1,024 tokens.

Each sequence starts with one of K signal tokens, followed by 1,023 random noise tokens (from a
separate vocabulary). A *causal* SSM encoder must name the signal token from its state at the
last position, so the information has to survive 1,023 steps of noise inside the recurrence:
nothing else connects the two ends (no attention, no pooling over positions). Chance is 1/K.

Run alone with `pytest -s -m slow tests/test_ssm_long_range.py` to see accuracy and timing.
"""

import time

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxemb.nn.pooling import last_token_pool
from jaxemb.nn.ssm import SSMConfig, SSMEncoder

LENGTH = 1024
NUM_CLASSES = 8  # signal tokens 1..K; chance = 1/K
NUM_NOISE = 4  # noise tokens K+1..K+NUM_NOISE
BATCH = 32
MAX_STEPS = 700
TARGET_TRAIN_ACC = 0.97  # stop early once the running train accuracy reaches this


def delayed_recall(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
  """`n` sequences `[n, LENGTH]` (signal token, then noise) and their labels `[n]`."""
  labels = rng.integers(0, NUM_CLASSES, n)
  ids = rng.integers(1 + NUM_CLASSES, 1 + NUM_CLASSES + NUM_NOISE, (n, LENGTH))
  ids[:, 0] = 1 + labels
  return ids.astype(np.int32), labels.astype(np.int32)


class Classifier(nnx.Module):
  """Causal SSM encoder, the last position's state, a linear head."""

  def __init__(self, *, rngs: nnx.Rngs):
    cfg = SSMConfig(vocab_size=1 + NUM_CLASSES + NUM_NOISE, hidden_size=32, num_layers=1,
                    state_size=64, bidirectional=False, dropout_rate=0.0,
                    dt_min=1e-4)  # slower channels than the default 1e-3: 1k-step memory
    self.encoder = SSMEncoder(cfg, rngs=rngs)
    self.head = nnx.Linear(32, NUM_CLASSES, rngs=rngs)

  def __call__(self, ids, mask):
    hidden = self.encoder(ids, mask).last_hidden_state
    return self.head(last_token_pool(hidden, mask))


@pytest.mark.slow
def test_s4d_recalls_a_token_across_1024_steps():
  start = time.perf_counter()
  model = Classifier(rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  # No weight decay: decaying log_dt / A would change the memory length (S4 uses none there).
  opt = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 1e-2, 20, MAX_STEPS),
                    weight_decay=0.0)
  opt_state = opt.init(params)

  # Masks are arguments, not constants built under jit: XLA would spend seconds constant-folding
  # the pooler's argmax over an all-ones mask.
  def loss_fn(params, ids, mask, labels):
    logits = nnx.merge(graphdef, params, rest)(ids, mask)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits.argmax(-1) == labels).mean()

  @jax.jit
  def train_step(params, opt_state, ids, mask, labels):
    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, ids, mask, labels)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, acc

  rng = np.random.default_rng(0)
  mask = np.ones((BATCH, LENGTH), np.int32)
  accs = []
  for step in range(MAX_STEPS):
    ids, labels = delayed_recall(rng, BATCH)
    params, opt_state, loss, acc = train_step(params, opt_state, ids, mask, labels)
    accs.append(float(acc))
    assert np.isfinite(float(loss)), f"loss became {float(loss)} at step {step}"
    if len(accs) >= 20 and np.mean(accs[-20:]) >= TARGET_TRAIN_ACC:
      break
  train_time = time.perf_counter() - start

  ids, labels = delayed_recall(np.random.default_rng(12345), 512)  # held-out sequences
  predict = jax.jit(lambda p, ids, mask: nnx.merge(graphdef, p, rest)(ids, mask))
  logits = predict(params, ids, np.ones_like(ids))
  accuracy = float((np.asarray(logits).argmax(-1) == labels).mean())
  chance = 1.0 / NUM_CLASSES
  print(f"\ndelayed recall L={LENGTH}: held-out accuracy {accuracy:.3f} (chance {chance:.3f}) "
        f"after {step + 1} steps, {train_time:.0f}s training, "
        f"{time.perf_counter() - start:.0f}s total")
  assert accuracy >= 0.8, f"held-out accuracy {accuracy:.3f}, chance {chance:.3f}"
