"""The one training loop: `run(config, workdir)` serves every recipe (`jaxemb.recipes`).

    recipe -> model, loss, batches, evaluators, optimiser, post-update, export
    mesh  -> state initialised directly sharded (eval_shape, then jit with out_shardings)
          -> restore the latest checkpoint (params, optimiser, step, RNG, data position)
    loop: state, metrics = step(state, batch)    # jitted once, state donated
          metrics -> metrics.jsonl + progress bar; evaluators; checkpoints
    SIGTERM (preemption): finish the step, save, return normally (exit code 0).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxemb import functional, recipes
from jaxemb.data.pipeline import GlobalBatches
from jaxemb.functional import Graph
from jaxemb.recipes.base import Recipe, check_keys
from jaxemb.train import host_memory
from jaxemb.train import mesh as mesh_lib
from jaxemb.train.checkpoint import Checkpointer, abstract_like
from jaxemb.train.metrics import MetricsWriter, to_python
from jaxemb.train.step import make_train_step

log = logging.getLogger("jaxemb.train")

# The loop's own top-level config keys; a recipe adds its sections (`Recipe.config_keys`).
LOOP_KEYS = frozenset({
    "recipe", "seed", "optim", "mesh", "logical_axis_rules", "batch_size", "total_steps",
    "stop_at_step", "log_every", "checkpoint_every", "keep_checkpoints", "best_metric",
    "best_mode", "async_checkpoint", "microbatches", "nonfinite", "eval_every", "evaluators",
    "final_evaluators", "export", "config_spec", "progress", "prefetch", "final_from_best",
})
OPTIM_KEYS = frozenset({"lr", "warmup_steps", "decay", "end_factor", "weight_decay", "b1", "b2",
                        "eps", "clip_norm", "trainable"})


def validate_config(config: ml_collections.ConfigDict, recipe_keys=frozenset()) -> None:
  """Raises ValueError naming unknown keys and values out of range (the loop's keys)."""
  valid = LOOP_KEYS | set(recipe_keys)
  unknown = sorted(set(config.keys()) - valid)
  if unknown:
    raise ValueError(f"unknown config key(s) {unknown} for recipe {config.get('recipe')!r}; "
                     f"valid: {sorted(valid)}")
  if "optim" in config:
    check_keys("optim", config.optim, OPTIM_KEYS)
  for key in ("batch_size", "total_steps", "log_every", "checkpoint_every", "microbatches",
              "keep_checkpoints"):
    if int(config.get(key, 1)) < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config[key]}")
  if config.get("nonfinite", "skip") not in ("skip", "stop"):
    raise ValueError(f"config.nonfinite={config.nonfinite!r} is not 'skip' or 'stop'")
  if config.get("stop_at_step") and not 0 < config.stop_at_step <= config.total_steps:
    raise ValueError(f"config.stop_at_step={config.stop_at_step} must be in "
                     f"[1, total_steps={config.total_steps}]")
  if config.get("final_from_best") and not config.get("best_metric"):
    raise ValueError("config.final_from_best=True needs config.best_metric (e.g. "
                     "'validation/mrr') to choose the checkpoint")
  if config.batch_size % config.get("microbatches", 1):
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by "
                     f"config.microbatches={config.microbatches}")


def make_recipe(config: ml_collections.ConfigDict) -> Recipe:
  """The recipe named by `config.recipe`, built from (and validating) the config."""
  if "recipe" not in config:
    raise ValueError("config.recipe is missing: name a recipe (one of "
                     f"{recipes.builtin()}) or a dotted import path")
  cls = recipes.get(config.recipe)
  validate_config(config, cls.config_keys)
  return cls(config)


# ---------------------------------------------------------------------------------------------
# Model and state.
# ---------------------------------------------------------------------------------------------

def _logical_names(params: nnx.State) -> dict:
  """Pure-dict tree of each parameter's logical axis names (None where untagged)."""
  out: dict = {}
  for path, var in params.flat_state():
    node = out
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = var.get_metadata().get("out_sharding")
  return out


def init_state(config, mesh, tx, recipe: Recipe) -> tuple[Graph, dict, Any]:
  """(graph, state, state_shardings) with the state created directly sharded.

  The model exists concretely only inside the sharded jit: the abstract model gives the
  structure and logical names, the jit's outputs are the (sharded) parameters, optimiser
  state and the model's other state (RNG streams), so no unsharded copy is ever built (a
  pretrained model's host weights go in as the program's arguments).
  """
  make_model = lambda key: recipe.model(nnx.Rngs(key))
  abstract_model = nnx.eval_shape(lambda: make_model(jax.random.key(0)))
  graphdef, abstract_params, _ = nnx.split(abstract_model, nnx.Param, ...)
  rules = tuple(tuple(r) for r in config.get("logical_axis_rules") or mesh_lib.DEFAULT_RULES)
  extra = jax.eval_shape(recipe.extra_params)
  param_shardings = {
      "model": mesh_lib.param_shardings(abstract_params.to_pure_dict(),
                                        _logical_names(abstract_params), mesh, rules),
      "extra": jax.tree.map(lambda _: mesh_lib.replicated(mesh), extra),
  }

  def init(seed_key):
    model = make_model(seed_key)
    model_state = functional.model_state(model)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    params = {"model": params.to_pure_dict(), "extra": recipe.extra_params()}
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
             "rng": jax.random.key_data(jax.random.fold_in(seed_key, 1)),
             "skipped": jnp.int32(0)}
    if model_state:  # training-time state (BatchNorm statistics): carried and checkpointed
      state["model_state"] = model_state
    return state, rest.to_pure_dict()

  seed_key = jax.random.key(config.seed)
  # A pretrained model's weights are host arrays the model closes over: traced as they are,
  # they would be constants of the compiled program (83 MB for all-MiniLM-L6-v2: seconds more
  # to compile, and an entry that size in the persistent compilation cache for every model).
  # The traced program takes them as arguments instead.
  closed, (abstract_state, abstract_rest) = jax.make_jaxpr(init, return_shape=True)(seed_key)
  out_tree = jax.tree.structure((abstract_state, abstract_rest))
  consts = [_host(c) for c in closed.consts]

  def init_from_arguments(consts, key):
    return jax.tree.unflatten(out_tree, jax.core.eval_jaxpr(closed.jaxpr, consts, key))

  opt_shardings = optax.tree_map_params(
      tx, lambda _, sharding: sharding, abstract_state["opt_state"], param_shardings,
      transform_non_params=lambda _: mesh_lib.replicated(mesh))
  shardings = {"params": param_shardings, "opt_state": opt_shardings,
               **{k: mesh_lib.replicated(mesh) for k in ("step", "rng", "skipped")}}
  if "model_state" in abstract_state:
    shardings["model_state"] = jax.tree.map(lambda _: mesh_lib.replicated(mesh),
                                            abstract_state["model_state"])
  rest_shardings = jax.tree.map(lambda _: mesh_lib.replicated(mesh), abstract_rest)
  state, rest = jax.jit(init_from_arguments,
                        out_shardings=(shardings, rest_shardings))(consts, seed_key)
  return Graph(graphdef, rest), state, shardings


def _host(x: Any) -> Any:
  """A traced program's constant as a host array (a jax.Array placed on one device would not
  pass into a program on the whole mesh); PRNG keys stay as they are."""
  if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return np.asarray(x)
  return x


def model_from_state(graph: Graph, state: dict) -> nnx.Module:
  """The recipe's module with the current parameters and model state (for evaluation and
  export)."""
  return graph.merge(state["params"]["model"], state.get("model_state"))


# ---------------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------------

class _Preemption:
  """Turns SIGTERM into a flag checked after every step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config.recipe` per `config`, writing metrics.jsonl, config.json and checkpoints.

  Resumes from the latest checkpoint in `workdir` when there is one. Returns a summary:
  "step" (last step run), "metrics" (last logged), "eval" (last periodic evaluation),
  "eval_start" / "eval_end" (final evaluators before and after training; after: of the step
  best by `config.best_metric` when `config.final_from_best`, that step in "final_from_step"),
  "preempted",
  "compilations" (of the train step), "export" (directory, when exported), and "state",
  "graph" (`jaxemb.functional.Graph`: `model_from_state(graph, state)` is the model) and
  "recipe" for callers that continue in Python.
  """
  recipe = make_recipe(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = mesh_lib.make_mesh(config.mesh.to_dict() if config.get("mesh") else None)
  dp = mesh_lib.data_parallel_size(mesh)
  if config.batch_size % dp:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                     f"data-parallel size {dp} (mesh {dict(mesh.shape)})")
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  tx, schedule = recipe.optimizer()
  if (message := host_memory.hint(jax.default_backend())) is not None:
    log.info(message)
  # Initialised outside `set_mesh`: NNX would read the logical names as mesh axes there.
  graph, state, shardings = init_state(config, mesh, tx, recipe)
  with jax.set_mesh(mesh):
    for name, size in mesh_lib.unsharded_report(state["params"]["model"]):
      log.debug("replicated parameter %s (%d elements)", name, size)
    train_data = recipe.train_data()
    data = GlobalBatches(train_data.source, config.batch_size, seed=config.seed,
                         sharding=mesh_lib.batch_sharding(mesh), transform=train_data.transform,
                         shuffle=train_data.shuffle, prefetch=config.get("prefetch", 2))
    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints,
                        best_metric=config.get("best_metric") or None,
                        best_mode=config.get("best_mode", "max"),
                        async_save=config.get("async_checkpoint", True))
    restored = ckpt.restore(abstract_like(state))
    if restored is not None:
      state, data_state, _ = restored
      data.set_state(data_state)
      log.info("resumed from step %d", int(state["step"]))

    traces = []
    train_step = make_train_step(recipe, graph, tx, schedule,
                                 microbatches=config.get("microbatches", 1))

    def traced_step(state, batch):
      traces.append(1)  # runs once per compilation
      return train_step(state, batch)

    step_fn = jax.jit(traced_step, donate_argnums=0, out_shardings=(shardings, None))
    evaluate = recipe.evaluator(list(config.get("evaluators") or []), mesh)
    evaluate_final = recipe.evaluator(list(config.get("final_evaluators") or []), mesh)

    start = int(state["step"])
    skipped_at_start = int(state["skipped"])
    stop = config.stop_at_step or config.total_steps
    writer = MetricsWriter(workdir, stop, start, show_progress=config.get("progress", True))
    summary = {"step": start, "metrics": {}, "eval": {}, "preempted": False,
               "eval_start": {}, "eval_end": {}}
    try:
      if evaluate_final is not None and start == 0:
        log.info("evaluating the initial model")
        summary["eval_start"] = evaluate_final(model_from_state(graph, state), 0)
        writer.write(0, summary["eval_start"])
      with _Preemption() as preemption:
        tick, tick_step, waited = time.perf_counter(), start, 0.0
        cpu_tick = time.process_time()
        for step in range(start + 1, stop + 1):
          before = time.perf_counter()
          batch = next(data)
          waited += time.perf_counter() - before
          state, metrics = step_fn(state, batch)
          last = step == stop or preemption.requested
          eval_metrics = None
          if step % config.log_every == 0 or last:
            metrics = {k: to_python(v) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            metrics["examples_per_sec"] = (step - tick_step) * config.batch_size / (now - tick)
            # Share of the wall time spent waiting for input batches (not prepared in time).
            metrics["data_wait_frac"] = waited / (now - tick)
            # Process CPU seconds (user + system, all threads) per step: on a shared machine
            # this moves less with the load than the wall-clock rate.
            cpu_now = time.process_time()
            metrics["cpu_sec_per_step"] = (cpu_now - cpu_tick) / (step - tick_step)
            tick, tick_step, waited, cpu_tick = now, step, 0.0, cpu_now
            writer.write(step, metrics)
            writer.progress(step, loss=metrics["loss"], lr=metrics["lr"],
                            ex_per_s=metrics["examples_per_sec"])
            summary["metrics"] = metrics
            # The cumulative count also catches skipped steps between two logged steps.
            skipped = metrics["skipped_total"] - skipped_at_start
            if skipped and config.nonfinite == "stop":
              raise FloatingPointError(
                  f"non-finite loss or gradients at {skipped} step(s) up to step {step} "
                  f"(loss={metrics['loss']}); stopping as configured")
          if evaluate is not None and config.eval_every and (
              step % config.eval_every == 0 or last):
            eval_metrics = evaluate(model_from_state(graph, state), step)
            writer.write(step, eval_metrics)
            summary["eval"] = eval_metrics
          # Also checkpoint at evaluations, so best-by-metric can pick any evaluated step.
          if step % config.checkpoint_every == 0 or last or eval_metrics is not None:
            ckpt.save(step, state, data.get_state(), eval_metrics)
          summary["step"] = step
          if preemption.requested:
            summary["preempted"] = True
            log.warning("SIGTERM: saved step %d, exiting", step)
            break
      # Only a run that trained in this invocation evaluates and exports: rerunning a finished
      # workdir changes nothing.
      finished = (summary["step"] == config.total_steps and not summary["preempted"]
                  and start < config.total_steps)
      if finished and evaluate_final is not None:
        # final_from_best: evaluate the checkpoint best by config.best_metric (early stopping)
        # instead of the last step; logged at the last step with "final_from_step".
        final, final_step = state, summary["step"]
        best = ckpt.best_step() if config.get("final_from_best") else None
        if best is not None and best != final_step:
          final, final_step = ckpt.restore(abstract_like(state), best)[0], best
        log.info("evaluating the model of step %d", final_step)
        summary["eval_end"] = evaluate_final(model_from_state(graph, final), summary["step"])
        summary["final_from_step"] = final_step
        writer.write(summary["step"], {**summary["eval_end"], "final_from_step": final_step}
                     if config.get("final_from_best") else summary["eval_end"])
      if finished and config.get("export"):
        directory = os.path.join(workdir, "export")
        host = jax.device_get({"params": state["params"],
                               "model_state": state.get("model_state")})
        summary["export"] = recipe.export(model_from_state(graph, host), directory)
    finally:
      data.close()
      ckpt.close()
      writer.close()
    if len(traces) > 1:
      log.warning("the train step was compiled %d times", len(traces))
    summary["compilations"] = len(traces)
    summary["state"] = state
    summary["graph"] = graph
    summary["recipe"] = recipe
  return summary
