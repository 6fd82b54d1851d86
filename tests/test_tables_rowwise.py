"""Row-wise Adagrad against a float64 numpy loop; labels and memory figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxemb.optimizers import rowwise


def test_rowwise_adagrad_vs_numpy_loop():
  rng = np.random.default_rng(0)
  table = rng.normal(size=(6, 4))
  bias = rng.normal(size=(4,))
  lr, eps, init = 0.1, 1e-8, 0.01
  tx = rowwise.rowwise_adagrad(lr, initial_accumulator=init, eps=eps)
  params = {"table": jnp.asarray(table, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
  state = tx.init(params)
  acc_t, acc_b = np.full(6, init), np.full(4, init)
  want_t, want_b = table.copy(), bias.copy()
  for step in range(5):
    g_t = rng.normal(size=(6, 4))
    g_t[rng.random(6) < 0.5] = 0.0     # rows absent from the batch
    g_b = rng.normal(size=(4,))
    upd, state = tx.update({"table": jnp.asarray(g_t, jnp.float32),
                            "bias": jnp.asarray(g_b, jnp.float32)}, state, params)
    params = optax.apply_updates(params, upd)
    for r in range(6):
      acc_t[r] += np.mean(g_t[r] ** 2)
      want_t[r] -= lr * g_t[r] / (np.sqrt(acc_t[r]) + eps)
    for i in range(4):
      acc_b[i] += g_b[i] ** 2
      want_b[i] -= lr * g_b[i] / (np.sqrt(acc_b[i]) + eps)
  np.testing.assert_allclose(np.asarray(params["table"]), want_t, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(params["bias"]), want_b, rtol=1e-5, atol=1e-6)
  acc = state[0].accumulator
  assert acc["table"].shape == (6, 1) and acc["bias"].shape == (4,)
  np.testing.assert_allclose(np.asarray(acc["table"])[:, 0], acc_t, rtol=1e-5)


def test_untouched_rows_do_not_move():
  tx = rowwise.rowwise_adagrad(1.0)
  params = {"table": jnp.ones((4, 3))}
  state = tx.init(params)
  g = jnp.zeros((4, 3)).at[1].set(1.0)
  upd, state = tx.update({"table": g}, state)
  out = np.asarray(optax.apply_updates(params, upd)["table"])
  np.testing.assert_array_equal(out[[0, 2, 3]], 1.0)
  np.testing.assert_allclose(out[1], 0.0, atol=1e-6)  # 1 - 1 * 1 / sqrt(1)


def test_table_labels_and_multi_transform():
  params = {"tables": {"table": jnp.ones((4, 2))}, "mlp": {"kernel": jnp.ones((2, 2))}}
  labels = rowwise.table_labels(params)
  assert labels == {"tables": {"table": "tables"}, "mlp": {"kernel": "dense"}}
  tx = optax.multi_transform({"tables": rowwise.rowwise_adagrad(0.1),
                              "dense": optax.adam(0.1)}, labels)
  state = tx.init(params)
  upd, _ = tx.update(params, state, params)
  assert upd["tables"]["table"].shape == (4, 2)


def test_memory_per_device():
  m = rowwise.memory_per_device(10**7, 64, 8)
  assert m["table"] == 10**7 * 64 * 4 / 8
  assert m["rowwise_adagrad"] == m["table"] / 64 and m["adam"] == 2 * m["table"]
  with pytest.raises(ValueError, match="devices"):
    rowwise.memory_per_device(10, 4, 0)
  with pytest.raises(ValueError, match="initial_accumulator"):
    rowwise.scale_by_rowwise_adagrad(-1.0)


def test_rowwise_adagrad_adam_vs_numpy_loop():
  rng = np.random.default_rng(1)
  params = {"tables": {"table": rng.normal(size=(5, 3))}, "mlp": {"kernel": rng.normal(size=(3, 2)),
                                                                  "bias": rng.normal(size=(2,))}}
  tx = rowwise.rowwise_adagrad_adam(0.1, lambda step: 0.01 * (step + 1), b1=0.9, b2=0.99)
  jp = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = tx.init(jp)
  # every state leaf keeps its parameter's leading dimension and rank (shardable like it)
  for s in (state.acc, state.mu, state.nu):
    jax.tree.map(lambda a, p: (a.ndim == p.ndim and a.shape[0] == p.shape[0]) or pytest.fail(
        f"{a.shape} vs {p.shape}"), s, jp)
  want = jax.tree.map(np.copy, params)
  acc = np.zeros(5)
  mu = {k: np.zeros_like(v) for k, v in params["mlp"].items()}
  nu = {k: np.zeros_like(v) for k, v in params["mlp"].items()}
  for step in range(4):
    grads = jax.tree.map(lambda x: rng.normal(size=x.shape), params)
    upd, state = tx.update(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads), state, jp)
    jp = optax.apply_updates(jp, upd)
    g = grads["tables"]["table"]
    acc += (g ** 2).mean(axis=1)
    want["tables"]["table"] -= 0.1 * g / (np.sqrt(acc)[:, None] + 1e-8)
    for k in mu:
      gk = grads["mlp"][k]
      mu[k] = 0.9 * mu[k] + 0.1 * gk
      nu[k] = 0.99 * nu[k] + 0.01 * gk ** 2
      mhat, vhat = mu[k] / (1 - 0.9 ** (step + 1)), nu[k] / (1 - 0.99 ** (step + 1))
      want["mlp"][k] -= 0.01 * (step + 1) * mhat / (np.sqrt(vhat) + 1e-8)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6),
               jp, want)


def test_sparse_update_equals_dense_rowwise_adagrad():
  rng = np.random.default_rng(3)
  table = jnp.asarray(rng.normal(size=(20, 4)), jnp.float32)
  tx = rowwise.rowwise_adagrad(0.1)
  state = tx.init({"t": table})
  dense_table, acc = table, jnp.zeros((20, 1))
  sparse_table = table
  for _ in range(3):
    rows = rng.integers(0, 20, 12)
    rows[:3] = rows[3]  # repeats within a batch
    rows[-1] = 25       # another shard's id: ignored
    grads = rng.normal(size=(12, 4)).astype(np.float32)
    keep = rows < 20
    dense_grad = np.zeros((20, 4), np.float32)
    np.add.at(dense_grad, rows[keep], grads[keep])
    upd, state = tx.update({"t": jnp.asarray(dense_grad)}, state)
    dense_table = dense_table + upd["t"]
    sparse_table, acc = rowwise.sparse_rowwise_adagrad_update(
        sparse_table, acc, jnp.asarray(rows), jnp.asarray(grads), 0.1)
  np.testing.assert_allclose(np.asarray(sparse_table), np.asarray(dense_table), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(acc), np.asarray(state[0].accumulator["t"]), rtol=1e-5)
