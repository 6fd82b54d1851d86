"""The train step on its own: accumulation, GradCache, objectives, dtypes, non-finite steps.

A tiny encoder on one device keeps each compile short; the state comes from the loop's own
`init_state`, the step from `make_train_step`, so this is the code `run` executes.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from jaxemb.data.synthetic import SyntheticPairs
from jaxemb.recipes.base import Recipe
from jaxemb.train import loop
from jaxemb.train import mesh as mesh_lib
from jaxemb.train import step as step_lib
from jaxemb.train.config import load_config
from jaxemb.train.optim import make_optimizer

HIDDEN = 16


def _config(dropout=0.0, dtype="float32", **objective):
  c = load_config("configs/smoke.py:runlocal")
  c.model.encoder_options = dict(
      vocab_size=64, hidden_size=HIDDEN, num_layers=1, num_heads=2, intermediate_size=32,
      max_position_embeddings=16, dropout_rate=dropout, attention_dropout_rate=0.0, dtype=dtype)
  c.optim.warmup_steps = 0  # the first update already moves the params
  c.objective.update(objective)
  return c


def _setup(config):
  """(recipe, graph, state, tx, schedule) on a one-device mesh, from the loop's init_state."""
  mesh = mesh_lib.make_mesh({"data": 1}, devices=jax.devices()[:1])
  recipe = loop.make_recipe(config)
  tx, schedule = recipe.optimizer()
  graph, state, _ = loop.init_state(config, mesh, tx, recipe)
  return recipe, graph, state, tx, schedule


# Same program, less LLVM optimisation: halves each compile, which dominates these tests.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _step(setup, config, **step_options):
  """The loop's step for `config` with `microbatches` / `gradcache_chunk` overridden."""
  _, graph, _, tx, schedule = setup
  config = config.copy_and_resolve_references()
  config.update(step_options)
  step = step_lib.make_train_step(loop.make_recipe(config), graph, tx, schedule,
                                  microbatches=config.microbatches)
  # Not donated: the tests reuse the initial state.
  return jax.jit(step, compiler_options=FAST_COMPILE)


@pytest.fixture(scope="module")
def plain():
  """Shared by several tests: each init costs compiles."""
  config = _config()
  return config, _setup(config)


@pytest.fixture(scope="module")
def learnable():
  config = _config(learnable_scale=True, scale=20.0)
  return config, _setup(config)


def _batch(size, start=0):
  source = SyntheticPairs(num_examples=512, seq_len=12, vocab_size=64)
  rows = [source[i] for i in range(start, start + size)]
  return {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}


def _max_abs(a, b):
  return jnp.max(jnp.stack([jnp.max(jnp.abs(x - y)) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]))


def _max_diff(a, b):
  return float(jax.jit(_max_abs)(a, b))


def _hand_loss(recipe, graph):
  """Loss of (params, batch): the recipe's pure loss (dropout is 0, so the key is moot)."""
  loss_fn = step_lib.pure_loss(recipe, graph)
  return lambda params, batch: loss_fn(params, batch, jax.random.key(0))[0]


def test_microbatches_average_the_half_batch_gradients(plain):
  config, setup = plain
  recipe, graph, state, tx, _ = setup
  batch = _batch(16)
  new_state, metrics = _step(setup, config, microbatches=2)(state, batch)

  # By hand: the step splits strided (rows 0::2 and 1::2) and averages the two gradients.
  loss = _hand_loss(recipe, graph)

  @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
  def by_hand(params, opt_state, batch):
    halves = [jax.tree.map(lambda x, j=j: x[j::2], batch) for j in range(2)]
    values, grads = zip(*[jax.value_and_grad(loss)(params, h) for h in halves])
    mean_grads = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
    updates, _ = tx.update(mean_grads, opt_state, params)
    full = jax.grad(loss)(params, batch)
    return (sum(values) / 2, optax.tree.norm(mean_grads), optax.apply_updates(params, updates),
            _max_abs(full, mean_grads))

  mean_loss, grad_norm, expected, full_vs_mean = by_hand(state["params"], state["opt_state"],
                                                         batch)
  assert float(metrics["loss"]) == pytest.approx(float(mean_loss), rel=1e-5)
  assert float(metrics["grad_norm"]) == pytest.approx(float(grad_norm), rel=1e-4)
  assert _max_diff(new_state["params"], expected) < 1e-6
  # The check can tell: the full-batch gradient (more negatives) is a different one.
  assert float(full_vs_mean) > 1e-3


def test_gradcache_step_equals_the_plain_step(plain):
  config, setup = plain
  state, batch = setup[2], _batch(32)
  plain_state, plain_metrics = _step(setup, config)(state, batch)
  cached_state, cached_metrics = _step(setup, config, gradcache_chunk=8)(state, batch)
  assert float(cached_metrics["loss"]) == pytest.approx(float(plain_metrics["loss"]), rel=1e-5)
  assert float(cached_metrics["grad_norm"]) == pytest.approx(float(plain_metrics["grad_norm"]),
                                                             rel=1e-4)
  assert _max_diff(cached_state["params"], plain_state["params"]) <= 1e-5
  assert _max_diff(plain_state["params"], state["params"]) > 1e-4  # the step did move them


def test_gradcache_rejects_a_learnable_temperature(learnable):
  config, setup = learnable
  with pytest.raises(ValueError, match="learnable scale"):
    _step(setup, config, gradcache_chunk=8)(setup[2], _batch(16))


def test_microbatches_and_gradcache_are_exclusive(plain):
  config, setup = plain
  with pytest.raises(ValueError, match="not both"):
    _step(setup, config, microbatches=2, gradcache_chunk=8)


def test_learnable_temperature_gets_a_gradient_and_changes(learnable):
  config, setup = learnable
  state = setup[2]
  log_scale = float(state["params"]["extra"]["log_scale"])
  assert log_scale == pytest.approx(np.log(20.0))
  new_state, metrics = _step(setup, config)(state, _batch(16))
  assert float(metrics["scale"]) == pytest.approx(20.0, rel=1e-5)
  # Adam's first step moves a parameter by about lr when its gradient is non-zero, and not at
  # all when it is zero (the temperature would then be constant).
  moved = float(new_state["params"]["extra"]["log_scale"]) - log_scale
  assert abs(moved) == pytest.approx(config.optim.lr, rel=0.05)


def test_sigmoid_objective_trains():
  config = _config(name="sigmoid", learnable_scale=True, scale=10.0, bias=-10.0)
  config.optim.lr = 1e-2
  setup = _setup(config)
  state, step = setup[2], _step(setup, config)
  batches = [_batch(16, 16 * i) for i in range(4)]
  bias = float(state["params"]["extra"]["bias"])
  losses = []
  for i in range(40):
    state, metrics = step(state, batches[i % 4])
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses
  assert float(state["params"]["extra"]["bias"]) != bias
  assert int(state["skipped"]) == 0


def test_bfloat16_compute_keeps_float32_params_and_optimizer_state(plain):
  config = _config(dtype="bfloat16")
  setup = _setup(config)
  graph, state = setup[1:3]
  new_state, metrics = _step(setup, config)(state, _batch(16))
  assert np.isfinite(float(metrics["loss"]))
  for tree in (state["params"], state["opt_state"], new_state["params"],
               new_state["opt_state"]):
    dtypes = {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}
  # The compute really is bfloat16: same params, visibly different (but close) embeddings.
  f32_graph = plain[1][1]
  batch = _batch(4)

  @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
  def embed_both(params):
    return [g.merge(params)(batch["query_ids"], batch["query_mask"]) for g in
            (graph, f32_graph)]

  bf16, f32 = embed_both(state["params"]["model"])
  assert 1e-4 < float(jnp.max(jnp.abs(bf16 - f32))) < 5e-2


def test_nonfinite_step_is_skipped_counted_and_leaves_the_state_unchanged():
  config = _config(name="mse_distillation")
  setup = _setup(config)
  state, step = setup[2], _step(setup, config)
  batch = {k: v for k, v in _batch(8).items() if k.startswith("query")}
  teacher = jnp.zeros((8, HIDDEN)).at[3, 5].set(jnp.nan)  # one bad target poisons the loss
  bad_state, metrics = step(state, {**batch, "teacher": teacher})
  assert not np.isfinite(float(metrics["loss"]))
  assert int(metrics["nonfinite"]) == 1 and int(metrics["skipped_total"]) == 1
  assert int(bad_state["step"]) == 1 and int(bad_state["skipped"]) == 1
  for key in ("params", "opt_state"):
    for old, new in zip(jax.tree.leaves(state[key]), jax.tree.leaves(bad_state[key]),
                        strict=True):
      np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
  # A finite batch afterwards trains normally; the count stays.
  good_state, metrics = step(bad_state, {**batch, "teacher": jnp.zeros((8, HIDDEN))})
  assert int(metrics["nonfinite"]) == 0 and int(good_state["skipped"]) == 1
  assert _max_diff(good_state["params"], state["params"]) > 1e-4


# ---------------------------------------------------------------------------------------------
# Training-time model state (nnx.BatchStat) through the step.


class _Counting(nnx.Module):
  """One weight and a BatchStat that accumulates the batch mean each training call."""

  def __init__(self, rngs):
    del rngs
    self.w = nnx.Param(jnp.ones((2,)))
    self.seen = nnx.BatchStat(jnp.zeros((2,)))

  def __call__(self, x):
    self.seen[...] = self.seen[...] + jnp.mean(x, axis=0)
    return x @ self.w[...]


class _CountingRecipe(Recipe):
  config_keys = frozenset()

  def model(self, rngs):
    return _Counting(rngs)

  def loss(self, model, extra_params, batch, key):
    value = jnp.mean(model(batch["x"]) ** 2) * batch["scale"][0]
    return value, {}


def test_model_state_is_carried_through_the_step_and_kept_on_nonfinite():
  config = ml_collections.ConfigDict(dict(recipe="x", seed=0, total_steps=3))
  recipe = _CountingRecipe(config)
  mesh = mesh_lib.make_mesh({"data": 1}, devices=jax.devices()[:1])
  tx = optax.sgd(0.1)
  graph, state, _ = loop.init_state(config, mesh, tx, recipe)
  np.testing.assert_array_equal(state["model_state"]["seen"], [0.0, 0.0])
  step = jax.jit(step_lib.make_train_step(recipe, graph, tx, optax.constant_schedule(0.1)))
  x = jnp.asarray([[1.0, 2.0], [3.0, 6.0]])
  state, _ = step(state, {"x": x, "scale": jnp.ones((2,))})
  state, _ = step(state, {"x": 2 * x, "scale": jnp.ones((2,))})
  np.testing.assert_allclose(state["model_state"]["seen"], [2.0 + 4.0, 4.0 + 8.0])
  np.testing.assert_allclose(  # the model the loop evaluates sees the carried state
      loop.model_from_state(graph, state).seen[...], [6.0, 12.0])
  state, metrics = step(state, {"x": x, "scale": jnp.full((2,), jnp.nan)})
  assert int(metrics["nonfinite"]) == 1
  np.testing.assert_allclose(state["model_state"]["seen"], [6.0, 12.0])
  # Microbatches: each part starts from the same state, the step keeps the parts' mean.
  step2 = jax.jit(step_lib.make_train_step(recipe, graph, tx, optax.constant_schedule(0.1),
                                           microbatches=2))
  state, _ = step2(state, {"x": x, "scale": jnp.ones((2,))})
  np.testing.assert_allclose(state["model_state"]["seen"], [6.0 + 2.0, 12.0 + 4.0])
