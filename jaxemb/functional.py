"""The functional API: any jaxemb model as a pure function of its parameters.

    graphdef, params = jaxemb.split(model)          # params: pure dict of arrays
    out = jaxemb.apply(graphdef, params, batch)      # == model(**batch)
    jax.jit(jax.grad(lambda p: loss(jaxemb.apply(graphdef, p, batch))))(params)

`graphdef` is a pytree whose leaves are the model's non-parameter state (RNG streams, batch
statistics), so it can be passed straight through `jax.jit`; `params` shard like any pytree.
State that changes in training (`nnx.BatchStat`, e.g. BatchNorm's running statistics) is read
with `model_state(model)` and given back to `merge(graph, params, state)`.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

# Parameters carry *logical* axis names ("vocab", "embed", ...) as metadata only; the training
# mesh maps them to mesh axes (jaxemb.train.mesh). Flax 0.12 would otherwise shard each variable
# eagerly on creation, which needs a mesh named by those logical names. Set here, in the module
# every model and training path imports (jaxemb.nn, the loop), so a recipe's own module needs
# nothing of its own.
nnx.use_eager_sharding(False)


@jax.tree_util.register_pytree_node_class
class Graph:
  """A model's structure (static) plus its non-parameter state (leaves)."""

  def __init__(self, graphdef: nnx.GraphDef, rest: Any):
    self.graphdef = graphdef
    self.rest = rest

  def tree_flatten(self):
    return (self.rest,), self.graphdef

  @classmethod
  def tree_unflatten(cls, graphdef, children):
    return cls(graphdef, children[0])

  def merge(self, params: Any, state: Any = None) -> nnx.Module:
    """A module with `params` (pure dict) and this graph's other state, where `state` (a pure
    dict such as `model_state` returns) replaces the values it holds."""
    rest = _overlay(self.rest, state) if state else self.rest
    return nnx.merge(self.graphdef, nnx.State(params), nnx.State(rest))


def _overlay(base: Any, top: Any) -> Any:
  if not isinstance(base, dict) or not isinstance(top, dict):
    return top
  return {k: _overlay(v, top[k]) if k in top else v for k, v in base.items()}


def model_state(model: nnx.Module) -> dict:
  """The module's training-time state (`nnx.BatchStat` values) as a pure dict; empty when it
  has none. The loop carries it through the step and checkpoints it beside the parameters."""
  return nnx.state(model, nnx.BatchStat).to_pure_dict()


def split(model: nnx.Module) -> tuple[Graph, dict]:
  """(graph, params): the module's structure and its `nnx.Param` values as a pure dict."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return Graph(graphdef, rest.to_pure_dict()), params.to_pure_dict()


def merge(graph: Graph, params: Any, state: Any = None) -> nnx.Module:
  """The module back from `split` (new Variables; the inputs are not modified), with
  `model_state` values `state` when given."""
  return graph.merge(params, state)


def apply(graph: Graph, params: Any, batch: dict, **kwargs) -> Any:
  """`model(**batch, **kwargs)` as a pure function of `params`; jit/grad/shard it freely."""
  return graph.merge(params)(**batch, **kwargs)
