"""The training step: `step(state, batch) -> (state, metrics)`, jitted once per run.

Batches are dicts of global arrays (leading dim = global batch B, sharded over the mesh's batch
axes). Paired-text batches hold "query_ids"/"query_mask" and "doc_ids"/"doc_mask" [B, L];
optional "neg_ids"/"neg_mask" [B, K, L] (hard negatives), "score" [B] (CoSENT) and
"teacher" [B, D] (distillation).

The loss sees the *global* batch, so in-batch negatives cross devices without explicit
collectives: XLA inserts the all-gathers the sharded matmul needs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxemb import objectives
from jaxemb.objectives.gradcache import split_strided

State = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Objectives: batch + embeddings -> loss. Each has fixed options and optional trainable params.
# ---------------------------------------------------------------------------------------------

def objective_params(config: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Trainable parameters of the objective (learnable temperature / SigLIP bias)."""
  params = {}
  if config.get("learnable_scale"):
    params["log_scale"] = jnp.log(jnp.float32(config.get("scale", 20.0)))
  if config["name"] == "sigmoid" and config.get("learnable_scale"):
    params["bias"] = jnp.float32(config.get("bias", -10.0))
  return params


def make_loss(config: Mapping[str, Any]) -> Callable:
  """`loss(q_emb, d_emb, batch, obj_params) -> (loss, metrics)` for `config.name`."""
  name = config["name"]
  objectives.get_loss(name)  # raises ValueError listing the names for an unknown one

  def scale(obj_params):
    if "log_scale" in obj_params:
      return objectives.scale_from_log(obj_params["log_scale"], config.get("max_scale", 100.0))
    return config.get("scale", 20.0)

  def loss(q, d, batch, obj_params, negatives=None):
    if name == "info_nce":
      return objectives.info_nce(q, d, scale=scale(obj_params), hard_negatives=negatives,
                                 symmetric=config.get("symmetric", True),
                                 label_smoothing=config.get("label_smoothing", 0.0))
    if name == "sigmoid":
      return objectives.sigmoid_loss(q, d, scale=scale(obj_params),
                                     bias=obj_params.get("bias", config.get("bias", -10.0)))
    if name == "cosent":
      return objectives.cosent(q, d, batch["score"], scale=config.get("scale", 20.0))
    return objectives.mse_distillation(q, batch["teacher"])

  return loss


# ---------------------------------------------------------------------------------------------
# The step.
# ---------------------------------------------------------------------------------------------

def _embedder(graphdef, rest, params, key) -> nnx.Module:
  # Fresh Variables from pure values: the reseed below may then mutate them inside the trace.
  model = nnx.merge(graphdef, nnx.State(params), nnx.State(rest))
  nnx.reseed(model, default=key)  # fresh dropout masks per step / per chunk
  return model


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_step(graphdef: nnx.GraphDef, rest: nnx.State, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, objective: Mapping[str, Any], *,
                    microbatches: int = 1, gradcache_chunk: int = 0) -> Callable:
  """Builds `step(state, batch) -> (state, metrics)` (pure; jit it with donated state).

  `state` = {"params": {"model": ..., "objective": ...}, "opt_state", "step", "rng" (uint32
  key data), "skipped"}. A step whose loss or gradients are not finite leaves params and
  optimiser state unchanged and counts itself in "skipped" (metric "nonfinite" = 1).

  microbatches: split the batch (strided, so each part spans every device) and average the
    gradients; each part is a separate contrastive problem with fewer negatives.
  gradcache_chunk: instead, compute the exact full-batch contrastive gradient chunk by chunk
    (GradCache); for info_nce/sigmoid without hard negatives or learnable temperature.
  """
  loss_fn = make_loss(objective)
  if microbatches > 1 and gradcache_chunk:
    raise ValueError("choose microbatches or gradcache_chunk, not both")

  def forward(params, batch, key):
    model = _embedder(graphdef, rest, params["model"], key)
    q = model(batch["query_ids"], batch["query_mask"], deterministic=False)
    negatives = None
    if "neg_ids" in batch:
      b, k, l = batch["neg_ids"].shape
      negatives = model(batch["neg_ids"].reshape(b * k, l), batch["neg_mask"].reshape(b * k, l),
                        deterministic=False).reshape(b, k, -1)
    d = model(batch["doc_ids"], batch["doc_mask"], deterministic=False) if (
        "doc_ids" in batch) else None
    return loss_fn(q, d, batch, params["objective"], negatives)

  def grads_plain(params, batch, key):
    return jax.value_and_grad(forward, has_aux=True)(params, batch, key)

  def grads_microbatched(params, batch, key):
    parts = split_strided(batch, batch["query_ids"].shape[0] // microbatches)
    keys = jax.random.split(key, microbatches)

    def body(acc, xs):
      part, k = xs
      (loss, metrics), grads = grads_plain(params, part, k)
      return jax.tree.map(jnp.add, acc, (loss, metrics, grads)), None

    zeros = jax.eval_shape(grads_plain, params, jax.tree.map(lambda x: x[0], parts), keys[0])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (zeros[0][0], zeros[0][1],
                                                                  zeros[1]))
    (loss, metrics, grads), _ = jax.lax.scan(body, zeros, (parts, keys))
    scale = 1.0 / microbatches
    return (loss * scale, jax.tree.map(lambda m: m * scale, metrics)), jax.tree.map(
        lambda g: g * scale, grads)

  def grads_gradcache(params, batch, key):
    if "neg_ids" in batch or params["objective"]:
      raise ValueError("gradcache_chunk supports neither hard negatives nor learnable scale")
    b = batch["query_ids"].shape[0]
    q_key, d_key = jax.random.split(key)
    per_example = lambda k: jax.random.key_data(jax.random.split(k, b))

    def embed(model_params, chunk):
      model = _embedder(graphdef, rest, model_params, jax.random.wrap_key_data(chunk["rng"][0]))
      return model(chunk["ids"], chunk["mask"], deterministic=False)

    queries = {"ids": batch["query_ids"], "mask": batch["query_mask"], "rng": per_example(q_key)}
    docs = {"ids": batch["doc_ids"], "mask": batch["doc_mask"], "rng": per_example(d_key)}
    (loss, metrics), grads = objectives.chunked_contrastive_value_and_grad(
        embed, params["model"], queries, docs, chunk_size=gradcache_chunk,
        loss_fn=lambda q, d: loss_fn(q, d, batch, params["objective"]))
    return (loss, metrics), {"model": grads, "objective": {}}

  compute = (grads_gradcache if gradcache_chunk else
             grads_microbatched if microbatches > 1 else grads_plain)

  def step(state: State, batch: dict) -> tuple[State, dict]:
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    (loss, metrics), grads = compute(state["params"], batch, key)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = {
        "params": keep(params, state["params"]),
        "opt_state": keep(opt_state, state["opt_state"]),
        "step": state["step"] + 1,
        "rng": state["rng"],
        "skipped": state["skipped"] + (~finite).astype(jnp.int32),
    }
    metrics = {
        # The optimiser's own count skips non-finite steps, so its schedule sits at
        # (steps - skipped): log the rate actually applied.
        **metrics, "loss": loss, "lr": schedule(state["step"] - state["skipped"]),
        "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params),
        "nonfinite": (~finite).astype(jnp.int32), "skipped_total": new_state["skipped"],
    }
    if "log_scale" in state["params"]["objective"]:
      metrics["scale"] = jnp.exp(state["params"]["objective"]["log_scale"])
    return new_state, metrics

  return step
