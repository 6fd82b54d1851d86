"""Row-wise Adagrad for embedding tables (one accumulator per row), as an optax transformation.

For a table [R, D] with gradient g, row r keeps one scalar a_r (TorchRec / DLRM's
`EXACT_ROWWISE_ADAGRAD`):

    a_r <- a_r + mean_d g[r, d]^2
    update[r] = -lr * g[r] / (sqrt(a_r) + eps)

Rows absent from a batch have zero gradient, so neither their accumulator nor their values move:
the optimiser is sparse-friendly, and its state is R floats instead of Adam's 2 * R * D.
Leaves with fewer than 2 dimensions get plain (element-wise) Adagrad.

    tx = optax.multi_transform({"tables": rowwise_adagrad(0.05), "dense": optax.adam(1e-3)},
                               table_labels(params))
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class RowwiseAdagradState(NamedTuple):
  """Accumulated mean squared gradient: shape [R] for a [R, ...] leaf, the leaf's shape below."""
  accumulator: Any


def _acc_shape(x: jax.Array) -> tuple[int, ...]:
  return x.shape[:1] if x.ndim >= 2 else x.shape


def scale_by_rowwise_adagrad(initial_accumulator: float = 0.0,
                             eps: float = 1e-8) -> optax.GradientTransformation:
  """g[r] / (sqrt(a_r) + eps) with a_r += mean(g[r]^2) per row (see module docstring)."""
  if initial_accumulator < 0 or eps < 0:
    raise ValueError(f"initial_accumulator and eps must be >= 0, got {initial_accumulator}, {eps}")

  def init(params):
    return RowwiseAdagradState(jax.tree.map(
        lambda p: jnp.full(_acc_shape(p), initial_accumulator, jnp.float32), params))

  def update(updates, state, params=None):
    del params

    def row_sq(g):
      g32 = g.astype(jnp.float32)
      return jnp.mean(g32 ** 2, axis=tuple(range(1, g.ndim))) if g.ndim >= 2 else g32 ** 2

    acc = jax.tree.map(lambda a, g: a + row_sq(g), state.accumulator, updates)

    def scale(g, a):
      a = a.reshape(a.shape + (1,) * (g.ndim - a.ndim))
      return (g.astype(jnp.float32) / (jnp.sqrt(a) + eps)).astype(g.dtype)

    return jax.tree.map(scale, updates, acc), RowwiseAdagradState(acc)

  return optax.GradientTransformation(init, update)


def rowwise_adagrad(learning_rate: float | optax.Schedule, initial_accumulator: float = 0.0,
                    eps: float = 1e-8) -> optax.GradientTransformation:
  """Row-wise Adagrad with learning rate (or schedule) `learning_rate`."""
  return optax.chain(scale_by_rowwise_adagrad(initial_accumulator, eps),
                     optax.scale_by_learning_rate(learning_rate))


def table_labels(params: Any, table_names: tuple[str, ...] = ("table", "q_table", "r_table")
                 ) -> Any:
  """"tables" for leaves whose last path key is one of `table_names`, else "dense" (labels for
  `optax.multi_transform`)."""
  def label(path, _):
    last = path[-1]
    key = getattr(last, "key", getattr(last, "name", None))
    return "tables" if key in table_names else "dense"
  return jax.tree_util.tree_map_with_path(label, params)


def memory_per_device(rows: int, dim: int, devices: int, bytes_per: int = 4) -> dict[str, float]:
  """Bytes per device of a row-sharded [rows, dim] table plus optimiser state."""
  if rows < 1 or dim < 1 or devices < 1:
    raise ValueError(f"rows, dim, devices must be >= 1, got {rows}, {dim}, {devices}")
  table = rows * dim * bytes_per / devices
  return {"table": table, "rowwise_adagrad": rows * bytes_per / devices,
          "adagrad": table, "adam": 2 * table}
