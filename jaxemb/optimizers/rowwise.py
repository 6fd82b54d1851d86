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
  """Accumulated mean squared gradient: shape [R, 1, ...] for a [R, ...] leaf (same rank, so the
  leaf's sharding applies to it as is), the leaf's shape for 1-D and scalar leaves."""
  accumulator: Any


def _acc_shape(x: jax.Array) -> tuple[int, ...]:
  return x.shape[:1] + (1,) * (x.ndim - 1) if x.ndim >= 2 else x.shape


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
      return (jnp.mean(g32 ** 2, axis=tuple(range(1, g.ndim)), keepdims=True) if g.ndim >= 2
              else g32 ** 2)

    acc = jax.tree.map(lambda a, g: a + row_sq(g), state.accumulator, updates)

    def scale(g, a):
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
  """Bytes per device of a row-sharded [rows, dim] table and of each optimiser's state for it
  (row-wise Adagrad: one float per row; Adagrad: one per entry; Adam: two per entry)."""
  if rows < 1 or dim < 1 or devices < 1:
    raise ValueError(f"rows, dim, devices must be >= 1, got {rows}, {dim}, {devices}")
  table = rows * dim * bytes_per / devices
  return {"table": table, "rowwise_adagrad": rows * bytes_per / devices,
          "adagrad": table, "adam": 2 * table}


class RowwiseAdagradAdamState(NamedTuple):
  """Three trees shaped like the params, so a training loop can give every state leaf its
  parameter's sharding (`optax.tree_map_params`): `acc` (table leaves: [R, 1, ...] row-wise
  accumulators; others: [d0, 1, ...] unused), `mu`, `nu` (others: Adam moments, shaped like the
  leaf; table leaves: [R, 1, ...] unused), and the step `count`."""
  count: jax.Array
  acc: Any
  mu: Any
  nu: Any


def rowwise_adagrad_adam(table_lr: float | optax.Schedule, lr: float | optax.Schedule, *,
                         labels: Any = None, b1: float = 0.9, b2: float = 0.999,
                         eps: float = 1e-8, initial_accumulator: float = 0.0
                         ) -> optax.GradientTransformation:
  """Row-wise Adagrad for the embedding tables, Adam for everything else, in ONE transformation
  whose state mirrors the params tree (unlike `optax.multi_transform`, whose masked states do
  not), at the cost of R unused floats per table for the Adam slots.

  `labels(params)` (default `table_labels`) says which leaves are tables ("tables") and which
  are dense ("dense").
  """
  labels = labels or table_labels
  table_lr = table_lr if callable(table_lr) else (lambda _, v=table_lr: v)
  lr = lr if callable(lr) else (lambda _, v=lr: v)

  def thin(x):
    return x.shape[:1] + (1,) * (x.ndim - 1) if x.ndim >= 1 else ()

  def init(params):
    kinds = labels(params)
    acc = jax.tree.map(lambda p, k: jnp.full(thin(p) if k == "tables" else thin(p),
                                             initial_accumulator, jnp.float32), params, kinds)
    moment = lambda p, k: jnp.zeros(thin(p) if k == "tables" else p.shape, jnp.float32)
    return RowwiseAdagradAdamState(jnp.zeros((), jnp.int32), acc,
                                   jax.tree.map(moment, params, kinds),
                                   jax.tree.map(moment, params, kinds))

  def update(updates, state, params=None):
    kinds = labels(updates)
    count = state.count + 1
    t = count.astype(jnp.float32)
    a_lr, d_lr = table_lr(state.count), lr(state.count)

    def leaf(g, acc, mu, nu, kind):
      g32 = g.astype(jnp.float32)
      if kind == "tables":
        axes = tuple(range(1, g.ndim))
        acc = acc + (jnp.mean(g32 ** 2, axis=axes, keepdims=True) if axes else g32 ** 2)
        return (-a_lr * g32 / (jnp.sqrt(acc) + eps)).astype(g.dtype), acc, mu, nu
      mu = b1 * mu + (1 - b1) * g32
      nu = b2 * nu + (1 - b2) * g32 ** 2
      step = (mu / (1 - b1 ** t)) / (jnp.sqrt(nu / (1 - b2 ** t)) + eps)
      return (-d_lr * step).astype(g.dtype), acc, mu, nu

    out = jax.tree.map(leaf, updates, state.acc, state.mu, state.nu, kinds)
    pick = lambda i: jax.tree.map(lambda o: o[i], out, is_leaf=lambda o: isinstance(o, tuple))
    return pick(0), RowwiseAdagradAdamState(count, pick(1), pick(2), pick(3))

  return optax.GradientTransformation(init, update)


def sparse_rowwise_adagrad_update(table: jax.Array, acc: jax.Array, rows: jax.Array,
                                  grads: jax.Array, lr: float | jax.Array, eps: float = 1e-8
                                  ) -> tuple[jax.Array, jax.Array]:
  """Row-wise Adagrad applied to the touched rows only: O(batch) instead of O(table) per step.

  `rows` [N] (repeats allowed; ids outside [0, R) are ignored, which is how a row shard skips
  other shards' ids) and `grads` [N, D] (gradients of the looked-up embeddings) stand for the
  dense gradient `zeros([R, D]).at[rows].add(grads)`; the result equals `rowwise_adagrad(lr)` on
  that dense gradient. `acc` is [R] or [R, 1]. Returns (table, acc), same shapes as given.
  """
  n, r = rows.shape[0], table.shape[0]
  rows = jnp.where((rows >= 0) & (rows < r), rows, r).astype(jnp.int32)
  uniq, inverse = jnp.unique(rows, size=n, fill_value=r, return_inverse=True)
  g = jax.ops.segment_sum(grads.astype(jnp.float32), inverse.reshape(-1), num_segments=n)
  flat = acc.reshape(r)
  flat = flat.at[uniq].add(jnp.mean(g * g, axis=1), mode="drop")
  denom = jnp.sqrt(jnp.take(flat, jnp.minimum(uniq, r - 1))) + eps
  table = table.at[uniq].add((-lr * g / denom[:, None]).astype(table.dtype), mode="drop")
  return table, flat.reshape(acc.shape)
