"""The recipe interface: the one place that knows what kind of embedding model is trained.

`jaxemb.train.run(config, workdir)` looks up `config.recipe` (see `jaxemb.recipes.get`) and
asks the recipe, never the config, for everything model- or task-specific:

    recipe = get(config.recipe)(config)        # validates its own config sections
    model  = recipe.model(rngs)                # NNX module, logical axis names on its Params
    extra  = recipe.extra_params()             # trainable objective parameters (temperature)
    loss   = recipe.loss(model, extra, batch, key) -> (scalar, {name: scalar})
    data   = recipe.train_data()               # TrainData(source, transform(batch, index))
    tx     = recipe.optimizer()                # (optax transformation, lr schedule)
    params = recipe.post_update(params)        # after every update (e.g. project to a ball)
    ev     = recipe.evaluator(specs, mesh)     # evaluate(model, step) -> {name: value}
    recipe.export(model, directory)            # e.g. a sentence-transformers directory

Only `model`, `loss` and `train_data` are required; everything else has a default here.
A recipe whose config means several loop runs in sequence (OptEmbed's supernet, search and
retrain) may define a static `drive(config, workdir) -> summary | None`: `jaxemb train` calls
it first and runs the loop once itself when it returns None, so the loop stays single-run.
Batches reach the loss as dicts of global `jax.Array`s whose leading dimension is the global
batch (sharded over the mesh's batch axes); the loss sees the whole global batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import ml_collections
import optax
from flax import nnx

Batch = dict[str, Any]
Metrics = dict[str, Any]
# (host numpy batch, global batch index) -> host numpy batch. The index makes host-side
# sampling (negatives, tokenizers, ...) a pure function of the step, so it survives resume.
Transform = Callable[[Batch, int], Batch]
Evaluate = Callable[[nnx.Module, int], Metrics]


@dataclasses.dataclass
class TrainData:
  """Where training batches come from.

  source: random-access examples (`len()` and `[i]` -> dict of numpy arrays / objects), read
    in a seeded shuffled order, one global batch per step.
  transform: optional `(batch, index) -> batch` applied to each process's rows of global batch
    `index` before they are placed on devices (tokenise, pad, sample).
  shuffle: False reads the source in order (e.g. a source that is already random per index).
  """

  source: Any
  transform: Transform | None = None
  shuffle: bool = True


def check_keys(section: str, values: Mapping[str, Any], valid: set[str] | frozenset[str]) -> None:
  """Raises ValueError naming the keys of `config.<section>` that are not in `valid`."""
  bad = sorted(set(values) - set(valid))
  if bad:
    raise ValueError(f"unknown config key(s) {[f'{section}.{k}' for k in bad]}; "
                     f"valid: {sorted(valid)}")


def evaluator_specs(specs, valid: set[str] | frozenset[str]) -> list[dict[str, Any]]:
  """`config.evaluators` entries as plain dicts, each checked against the `valid` keys."""
  specs = [dict(s) for s in specs]
  for spec in specs:
    check_keys("evaluators[]", spec, valid)
  return specs


class Recipe:
  """Base class of every recipe; subclass it and override what differs.

  Attributes:
    config_keys: top-level config keys this recipe reads beyond the loop's own (e.g. "model",
      "data", "objective"); the loop rejects any other key.
    table_metrics: the metric names (without split) of the table printed after training.
    config: the experiment config.
  """

  config_keys: frozenset[str] = frozenset({"model", "data", "objective"})
  # Metrics of the final evaluation shown in the before/after table `jaxemb train` prints.
  table_metrics: tuple[str, ...] = ()

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # --- required -------------------------------------------------------------------------------

  def model(self, rngs: nnx.Rngs) -> nnx.Module:
    """A freshly initialised model. Called under `nnx.eval_shape` and inside a sharded jit,
    so it must be a pure function of `rngs` (load pretrained weights from host values)."""
    raise NotImplementedError

  def loss(self, model: nnx.Module, extra_params: dict, batch: Batch,
           key: jax.Array) -> tuple[jax.Array, Metrics]:
    """Scalar training loss and metrics (scalars) of `model` on the global `batch`.

    `key` is this step's key (already folded with the step); dropout streams of `model` are
    reseeded from it before the call.
    """
    raise NotImplementedError

  def train_data(self) -> TrainData:
    """The training batches' source and per-batch transform."""
    raise NotImplementedError

  # --- optional -------------------------------------------------------------------------------

  def extra_params(self) -> dict[str, jax.Array]:
    """Trainable parameters outside the model (e.g. a learnable temperature); replicated."""
    return {}

  def optimizer(self) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(transformation, learning-rate schedule); default AdamW per `config.optim`."""
    from jaxemb.train.optim import make_optimizer
    return make_optimizer(self.config.optim, self.config.total_steps)

  def post_update(self, params: dict) -> dict:
    """Pure function applied to {"model": ..., "extra": ...} after every accepted update."""
    return params

  def value_and_grad(self, graph, loss_fn: Callable, params: dict, batch: Batch,
                     key: jax.Array) -> tuple[tuple[jax.Array, Metrics], dict]:
    """((loss, metrics), grads) of the pure `loss_fn(params, batch, key)`.

    Override for a different gradient computation (e.g. GradCache); `graph` is the model's
    `jaxemb.functional.Graph` (`graph.merge(params["model"])` rebuilds the module).
    """
    return jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)

  def evaluator(self, specs: list[Mapping[str, Any]],
                mesh: jax.sharding.Mesh) -> Evaluate | None:
    """`evaluate(model, step) -> {"<split>/<metric>": value}` for `specs` (None when empty)."""
    if specs:
      raise ValueError(f"recipe {type(self).__name__} has no evaluators; got {list(specs)}")
    return None

  def export(self, model: nnx.Module, directory: str) -> str:
    """Writes the trained model to `directory` (process 0 only); returns the directory."""
    raise ValueError(f"recipe {type(self).__name__} has no export; set config.export=False")
