"""The functional API: any jaxemb model as a pure function of its parameters.

    graphdef, params = jaxemb.split(model)          # params: pure dict of arrays
    out = jaxemb.apply(graphdef, params, batch)      # == model(**batch)
    jax.jit(jax.grad(lambda p: loss(jaxemb.apply(graphdef, p, batch))))(params)

`graphdef` is a pytree whose leaves are the model's non-parameter state (RNG streams), so it
can be passed straight through `jax.jit`; `params` shard like any pytree.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx


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

  def merge(self, params: Any) -> nnx.Module:
    """A module with `params` (pure dict) and this graph's other state."""
    return nnx.merge(self.graphdef, nnx.State(params), nnx.State(self.rest))


def split(model: nnx.Module) -> tuple[Graph, dict]:
  """(graph, params): the module's structure and its `nnx.Param` values as a pure dict."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return Graph(graphdef, rest.to_pure_dict()), params.to_pure_dict()


def merge(graph: Graph, params: Any) -> nnx.Module:
  """The module back from `split` (new Variables; the inputs are not modified)."""
  return graph.merge(params)


def apply(graph: Graph, params: Any, batch: dict, **kwargs) -> Any:
  """`model(**batch, **kwargs)` as a pure function of `params`; jit/grad/shard it freely."""
  return graph.merge(params)(**batch, **kwargs)
