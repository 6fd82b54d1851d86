"""The training step: `step(state, batch) -> (state, metrics)`, jitted once per run.

The step knows no model and no loss: it merges the recipe's module from the parameters,
calls `recipe.loss` on the global batch (leading dimension sharded over the mesh's batch axes),
updates with the recipe's optimiser, applies `recipe.post_update`, and skips non-finite
updates. A model with training-time state (`nnx.BatchStat`, e.g. BatchNorm's running
statistics) gets it from `state["model_state"]` and the values its loss left are carried on.
In-batch negatives cross devices without explicit collectives: XLA inserts the collectives
the sharded computation needs.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxemb import functional
from jaxemb.functional import Graph
from jaxemb.objectives.gradcache import split_strided

State = dict[str, Any]
# Metrics key under which `pure_loss` hands the model's updated state to the step (popped there).
MODEL_STATE = "_model_state"


def leading_dim(batch: dict) -> int:
  """The batch size: the common leading dimension of every array in `batch`."""
  sizes = {x.shape[0] for x in jax.tree.leaves(batch) if getattr(x, "ndim", 0)}
  if len(sizes) != 1:
    raise ValueError(f"batch arrays need one common leading (batch) dimension, got "
                     f"{ {k: getattr(v, 'shape', None) for k, v in batch.items()} }")
  return sizes.pop()


def pure_loss(recipe, graph: Graph, model_state: dict | None = None) -> Callable:
  """The recipe's loss as a pure function `(params, batch, key) -> (loss, metrics)`.

  `params` = {"model": model params (pure dict), "extra": the recipe's extra params}; the
  module's dropout streams are reseeded from `key`, so every step/chunk draws fresh masks.
  With `model_state` (see `jaxemb.functional.model_state`) the module starts from it and the
  metrics carry its values after the loss under `MODEL_STATE` (auxiliary output, no gradient).
  """

  def loss(params, batch, key):
    model = graph.merge(params["model"], model_state)
    nnx.reseed(model, default=key)
    value, metrics = recipe.loss(model, params["extra"], batch, key)
    if model_state:
      metrics = {**metrics, MODEL_STATE: functional.model_state(model)}
    return value, metrics

  return loss


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else (
      jnp.bool_(True))


def _microbatched(value_and_grad: Callable, microbatches: int) -> Callable:
  """Averages loss, metrics and grads over strided parts of the batch (lax.scan)."""

  def compute(loss_fn, params, batch, key):
    parts = split_strided(batch, leading_dim(batch) // microbatches)
    keys = jax.random.split(key, microbatches)

    def body(acc, xs):
      part, k = xs
      (loss, metrics), grads = value_and_grad(loss_fn, params, part, k)
      return jax.tree.map(jnp.add, acc, (loss, metrics, grads)), None

    shapes = jax.eval_shape(lambda p, b, k: value_and_grad(loss_fn, p, b, k), params,
                            jax.tree.map(lambda x: x[0], parts), keys[0])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         (shapes[0][0], shapes[0][1], shapes[1]))
    (loss, metrics, grads), _ = jax.lax.scan(body, zeros, (parts, keys))
    mean = lambda tree: jax.tree.map(lambda x: x / microbatches, tree)
    return (mean(loss), mean(metrics)), mean(grads)

  return compute


def make_train_step(recipe, graph: Graph, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, microbatches: int = 1) -> Callable:
  """Builds `step(state, batch) -> (state, metrics)` (pure; jit it with donated state).

  `state` = {"params": {"model", "extra"}, "opt_state", "step", "rng" (uint32 key data),
  "skipped"} and "model_state" for a model with training-time state. A step whose loss or
  gradients are not finite leaves params, optimiser and model state unchanged and counts
  itself in "skipped" (metric "nonfinite" = 1). With microbatches the model state is the mean
  of the parts' (e.g. running statistics averaged over the parts).

  microbatches: split the batch (strided, so each part spans every device) and average the
    gradients; for a contrastive loss each part is a separate problem with fewer negatives.
  """
  plain = lambda fn, params, batch, key: recipe.value_and_grad(graph, fn, params, batch,
                                                                key)
  compute = _microbatched(plain, microbatches) if microbatches > 1 else plain

  def step(state: State, batch: dict) -> tuple[State, dict]:
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    model_state = state.get("model_state")
    loss_fn = pure_loss(recipe, graph, model_state)
    (loss, metrics), grads = compute(loss_fn, state["params"], batch, key)
    metrics = dict(metrics)
    # A recipe whose own gradient code bypasses `loss_fn` (GradCache) leaves the state as is.
    new_model_state = metrics.pop(MODEL_STATE, model_state)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = recipe.post_update(optax.apply_updates(state["params"], updates))
    finite = jnp.isfinite(loss) & _all_finite(grads)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = {
        "params": keep(params, state["params"]),
        "opt_state": keep(opt_state, state["opt_state"]),
        "step": state["step"] + 1,
        "rng": state["rng"],
        "skipped": state["skipped"] + (~finite).astype(jnp.int32),
    }
    if model_state is not None:
      new_state["model_state"] = keep(new_model_state, model_state)
    metrics = {
        # The optimiser's own count skips non-finite steps, so its schedule sits at
        # (steps - skipped): log the rate actually applied.
        **metrics, "loss": loss, "lr": schedule(state["step"] - state["skipped"]),
        "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params),
        "nonfinite": (~finite).astype(jnp.int32), "skipped_total": new_state["skipped"],
    }
    return new_state, metrics

  return step
