"""The one training loop: `run(config, workdir)` serves every experiment.

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
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxemb.data import registry as data_registry
from jaxemb.nn.build import build_embedder
from jaxemb.nn.transformer import TransformerEncoder
from jaxemb.train import mesh as mesh_lib
from jaxemb.train.checkpoint import Checkpointer, abstract_like
from jaxemb.train.evaluation import make_evaluator
from jaxemb.train.metrics import MetricsWriter, to_python
from jaxemb.train.optim import make_optimizer
from jaxemb.train.step import make_train_step, objective_params

log = logging.getLogger("jaxemb.train")

# Top-level keys a config may have; anything else is a typo and raises.
CONFIG_KEYS = {
    "seed", "model", "data", "objective", "optim", "mesh", "logical_axis_rules", "batch_size",
    "total_steps", "stop_at_step", "log_every", "checkpoint_every", "keep_checkpoints",
    "best_metric", "best_mode", "async_checkpoint", "microbatches", "gradcache_chunk",
    "nonfinite", "eval_every", "evaluators", "final_evaluators", "export", "config_spec",
    "progress",
}
SECTION_KEYS = {
    "model": {"encoder", "encoder_options", "pooling", "pooling_options", "normalize",
              "pretrained", "tokenizer", "dtype", "max_seq_length"},
    "optim": {"lr", "warmup_steps", "decay", "end_factor", "weight_decay", "b1", "b2", "eps",
              "clip_norm"},
    "objective": {"name", "scale", "learnable_scale", "max_scale", "bias", "symmetric",
                  "label_smoothing"},
}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming unknown keys and values out of range."""
  unknown = sorted(set(config.keys()) - CONFIG_KEYS)
  if unknown:
    raise ValueError(f"unknown config key(s) {unknown}; valid: {sorted(CONFIG_KEYS)}")
  for section, keys in SECTION_KEYS.items():
    bad = sorted(set(config[section].keys()) - keys)
    if bad:
      raise ValueError(f"unknown config key(s) {[f'{section}.{k}' for k in bad]}; "
                       f"valid: {sorted(keys)}")
  for key in ("batch_size", "total_steps", "log_every", "checkpoint_every", "microbatches",
              "keep_checkpoints"):
    if int(config[key]) < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config[key]}")
  if config.nonfinite not in ("skip", "stop"):
    raise ValueError(f"config.nonfinite={config.nonfinite!r} is not 'skip' or 'stop'")
  if config.stop_at_step and not 0 < config.stop_at_step <= config.total_steps:
    raise ValueError(f"config.stop_at_step={config.stop_at_step} must be in "
                     f"[1, total_steps={config.total_steps}]")
  if config.get("export") and not config.model.get("pretrained") and (
      config.model.encoder != "transformer"):
    raise ValueError(f"config.export is set but encoder {config.model.encoder!r} has no "
                     "sentence-transformers format; set export=False")
  if config.batch_size % config.microbatches:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by "
                     f"config.microbatches={config.microbatches}")


# ---------------------------------------------------------------------------------------------
# Model and state.
# ---------------------------------------------------------------------------------------------

def _model_factory(config: ml_collections.ConfigDict) -> tuple[Callable[[jax.Array], Any], Any]:
  """(make(key) -> SentenceEmbedder, EmbeddingModel giving the tokenizer, or None).

  `model.pretrained` loads weights and tokenizer; otherwise the encoder is built from
  `model.encoder` + `model.encoder_options` with random weights, and `model.tokenizer` (a model
  name or directory) may lend it a tokenizer for text datasets and evaluators.
  """
  from jaxemb.pretrained.sentence_transformers import load_pretrained
  m = config.model
  if m.get("pretrained"):
    pretrained = load_pretrained(m.pretrained, dtype=m.get("dtype", "float32"),
                                 max_seq_length=m.get("max_seq_length") or None)
    graphdef, params = nnx.split(pretrained.module)
    return (lambda key: nnx.merge(graphdef, params)), pretrained
  # model.dtype is the compute dtype of either path; encoder_options.dtype wins if given.
  options = {"dtype": m.get("dtype", "float32"), **m.encoder_options.to_dict()}
  make = lambda key: build_embedder(
      m.encoder, options, pooling=m.get("pooling", "mean"),
      pooling_options=m.get("pooling_options", {}), normalize=m.get("normalize", True),
      rngs=nnx.Rngs(key))
  if not m.get("tokenizer"):
    return make, None
  lender = load_pretrained(m.tokenizer, max_seq_length=m.get("max_seq_length") or None)
  vocab = lender.tokenizer.get_vocab_size()
  if m.encoder_options.get("vocab_size", vocab) < vocab:
    raise ValueError(f"model.encoder_options.vocab_size={m.encoder_options.vocab_size} is "
                     f"smaller than the {vocab} tokens of tokenizer {m.tokenizer!r}")
  # Only the lender's tokenizer, limits and pad id are used, never its weights.
  return make, lender


def _logical_names(params: nnx.State) -> dict:
  """Pure-dict tree of each parameter's logical axis names (None where untagged)."""
  out: dict = {}
  for path, var in params.flat_state():
    node = out
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = var.get_metadata().get("out_sharding")
  return out


def init_state(config, mesh, tx, make_model) -> tuple[Any, Any, dict, Any]:
  """(graphdef, rest, state, state_shardings) with the state created directly sharded."""
  abstract_model = nnx.eval_shape(lambda: make_model(jax.random.key(0)))
  graphdef, abstract_params, rest = nnx.split(abstract_model, nnx.Param, ...)
  rules = tuple(tuple(r) for r in config.get("logical_axis_rules") or mesh_lib.DEFAULT_RULES)
  param_shardings = {
      "model": mesh_lib.param_shardings(abstract_params.to_pure_dict(),
                                        _logical_names(abstract_params), mesh, rules),
      "objective": jax.tree.map(lambda _: mesh_lib.replicated(mesh),
                                objective_params(config.objective)),
  }

  def init(seed_key):
    model = make_model(seed_key)
    _, params, _ = nnx.split(model, nnx.Param, ...)
    params = {"model": params.to_pure_dict(), "objective": objective_params(config.objective)}
    return {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
            "rng": jax.random.key_data(jax.random.fold_in(seed_key, 1)),
            "skipped": jnp.int32(0)}

  seed_key = jax.random.key(config.seed)
  abstract_state = jax.eval_shape(init, seed_key)
  opt_shardings = optax.tree_map_params(
      tx, lambda _, sharding: sharding, abstract_state["opt_state"], param_shardings,
      transform_non_params=lambda _: mesh_lib.replicated(mesh))
  shardings = {"params": param_shardings, "opt_state": opt_shardings,
               **{k: mesh_lib.replicated(mesh) for k in ("step", "rng", "skipped")}}
  state = jax.jit(init, out_shardings=shardings)(seed_key)
  # The RNG streams (dropout) are reseeded every step; take them from a concrete model.
  _, _, rest = nnx.split(make_model(seed_key), nnx.Param, ...)
  return graphdef, rest.to_pure_dict(), state, shardings


def embedder_from_state(graphdef, rest, state) -> nnx.Module:
  """The current `SentenceEmbedder` (for evaluation and export)."""
  return nnx.merge(graphdef, nnx.State(state["params"]["model"]), nnx.State(rest))


def export(graphdef, rest, state, pretrained, directory: str) -> str:
  """Writes the trained model as a sentence-transformers directory (process 0 only)."""
  if pretrained is None:
    raise ValueError("config.export needs config.model.pretrained or model.tokenizer")
  from jaxemb.model import EmbeddingModel
  from jaxemb.pretrained.sentence_transformers import save_pretrained
  embedder = embedder_from_state(graphdef, rest, {"params": jax.device_get(state["params"])})
  if not isinstance(embedder.encoder, TransformerEncoder):
    raise ValueError(f"config.export: a {type(embedder.encoder).__name__} has no "
                     "sentence-transformers format; only transformer encoders export")
  model = EmbeddingModel(embedder, pretrained.tokenizer, pretrained.max_seq_length,
                         name=directory, encoder_config=pretrained.encoder_config)
  if jax.process_index() == 0:
    save_pretrained(model, directory)
  return directory


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
  """Trains per `config`, writing metrics.jsonl, config.json and checkpoints to `workdir`.

  Resumes from the latest checkpoint in `workdir` when there is one. Returns a summary:
  "step" (last step run), "metrics" (last logged), "eval" (last periodic evaluation),
  "eval_start" / "eval_end" (final evaluators before and after training), "preempted",
  "compilations" (of the train step), "export" (directory, when exported), and "state",
  "model" (graphdef, rest) and "pretrained" for callers that continue in Python.
  """
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = mesh_lib.make_mesh(config.mesh.to_dict() if config.get("mesh") else None)
  dp = mesh_lib.data_parallel_size(mesh)
  if config.batch_size % dp:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                     f"data-parallel size {dp} (mesh {dict(mesh.shape)})")
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  tx, schedule = make_optimizer(config.optim, config.total_steps)
  make_model, pretrained = _model_factory(config)
  # Initialised outside `set_mesh`: NNX would read the logical names as mesh axes there.
  graphdef, rest, state, shardings = init_state(config, mesh, tx, make_model)
  with jax.set_mesh(mesh):
    for name, size in mesh_lib.unsharded_report(state["params"]["model"]):
      log.debug("replicated parameter %s (%d elements)", name, size)
    data = data_registry.make_train_batches(config, mesh_lib.batch_sharding(mesh), pretrained)
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

    def traced_step(state, batch):
      traces.append(1)  # runs once per compilation
      return make_train_step(graphdef, rest, tx, schedule, config.objective,
                             microbatches=config.microbatches,
                             gradcache_chunk=config.gradcache_chunk)(state, batch)

    step_fn = jax.jit(traced_step, donate_argnums=0, out_shardings=(shardings, None))
    evaluate = make_evaluator(config.get("evaluators"), pretrained)
    evaluate_final = make_evaluator(config.get("final_evaluators"), pretrained)

    start = int(state["step"])
    skipped_at_start = int(state["skipped"])
    stop = config.stop_at_step or config.total_steps
    writer = MetricsWriter(workdir, stop, start, show_progress=config.get("progress", True))
    summary = {"step": start, "metrics": {}, "eval": {}, "preempted": False,
               "eval_start": {}, "eval_end": {}}
    try:
      if evaluate_final is not None and start == 0:
        log.info("evaluating the initial model")
        summary["eval_start"] = evaluate_final(embedder_from_state(graphdef, rest, state), 0)
        writer.write(0, summary["eval_start"])
      with _Preemption() as preemption:
        tick, tick_step = time.perf_counter(), start
        for step in range(start + 1, stop + 1):
          state, metrics = step_fn(state, next(data))
          last = step == stop or preemption.requested
          eval_metrics = None
          if step % config.log_every == 0 or last:
            metrics = {k: to_python(v) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            metrics["examples_per_sec"] = (step - tick_step) * config.batch_size / (now - tick)
            tick, tick_step = now, step
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
            eval_metrics = evaluate(embedder_from_state(graphdef, rest, state), step)
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
        log.info("evaluating the final model")
        summary["eval_end"] = evaluate_final(embedder_from_state(graphdef, rest, state),
                                             summary["step"])
        writer.write(summary["step"], summary["eval_end"])
      if finished and config.get("export"):
        summary["export"] = export(graphdef, rest, state, pretrained,
                                   os.path.join(workdir, "export"))
    finally:
      ckpt.close()
      writer.close()
    if len(traces) > 1:
      log.warning("the train step was compiled %d times", len(traces))
    summary["compilations"] = len(traces)
    summary["state"] = state
    summary["model"] = (graphdef, rest)
    summary["pretrained"] = pretrained
  return summary
