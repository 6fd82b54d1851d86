"""GradCache equals plain full-batch value_and_grad; its activation memory tracks chunk size."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxemb.objectives import chunked_contrastive_value_and_grad
from jaxemb.objectives import chunked_value_and_grad
from jaxemb.objectives import compiled_temp_bytes
from jaxemb.objectives import info_nce

TOL = 1e-5


def mlp_params(key, dims):
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
    key, sub = jax.random.split(key)
    params[f"w{i}"] = jax.random.normal(sub, (fan_in, fan_out)) / np.sqrt(fan_in)
    params[f"b{i}"] = jnp.full((fan_out,), 0.01 * (i + 1))
  return params


def embed(params, batch):
  """Tiny MLP over a pytree batch; the mask leaf checks non-trivial batch pytrees."""
  x = batch["x"] * batch["mask"][:, None]
  n = len(params) // 2
  for i in range(n):
    x = x @ params[f"w{i}"] + params[f"b{i}"]
    if i < n - 1:
      x = jnp.tanh(x)
  return x


def loss_fn(q, d):
  # Normalisation lives in the loss, so its gradient flows through the GradCache split too.
  unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  return info_nce(unit(q), unit(d), scale=20.0)


def full_value_and_grad(params, q_batch, d_batch):
  f = lambda p: loss_fn(embed(p, q_batch), embed(p, d_batch))
  return jax.value_and_grad(f, has_aux=True)(params)


def make_batch(key, b, din):
  kx, km = jax.random.split(key)
  return {"x": jax.random.normal(kx, (b, din)), "mask": (jax.random.uniform(km, (b,)) > 0.1) * 1.0}


@pytest.fixture(scope="module")
def setup():
  params = mlp_params(jax.random.key(0), [6, 16, 8])
  q = make_batch(jax.random.key(1), 32, 6)
  d = make_batch(jax.random.key(2), 32, 6)
  return params, q, d, full_value_and_grad(params, q, d)


def _assert_same(result, expected):
  (loss, metrics), grads = result
  (loss_e, metrics_e), grads_e = expected
  np.testing.assert_allclose(loss, loss_e, rtol=TOL, atol=TOL)
  for name in metrics_e:
    np.testing.assert_allclose(metrics[name], metrics_e[name], rtol=TOL, atol=TOL)
  assert jax.tree.structure(grads) == jax.tree.structure(grads_e)
  for name in grads_e:
    assert grads[name].dtype == grads_e[name].dtype
    np.testing.assert_allclose(grads[name], grads_e[name], rtol=TOL, atol=TOL, err_msg=name)


@pytest.mark.parametrize("chunk_size", [4, 8, 32])
def test_equals_full_batch_value_and_grad(setup, chunk_size):
  params, q, d, expected = setup
  result = chunked_contrastive_value_and_grad(
      embed, params, q, d, loss_fn=loss_fn, chunk_size=chunk_size
  )
  _assert_same(result, expected)
  assert any(float(jnp.abs(g).max()) > 1e-3 for g in jax.tree.leaves(result[1]))


@pytest.mark.parametrize("chunk_size", [4, 16])
def test_one_batch_of_both_sides_equals_full_batch(setup, chunk_size):
  """Queries and documents in one batch (as packed pair rows arrive), split in the loss."""
  params, q, d, expected = setup
  both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), q, d)
  result = chunked_value_and_grad(embed, params, {"both": both}, chunk_size=2 * chunk_size,
                                  loss_fn=lambda e: loss_fn(e[:32], e[32:]))
  _assert_same(result, expected)
  with pytest.raises(ValueError, match="num_texts has 2 entries for 1 batches"):
    chunked_value_and_grad(embed, params, {"both": both}, chunk_size=8, num_texts=(64, 64),
                           loss_fn=loss_fn)
  with pytest.raises(ValueError, match="at least one batch"):
    chunked_value_and_grad(embed, params, {}, chunk_size=8, loss_fn=loss_fn)


@pytest.mark.parametrize("chunk_size", [4, 8])
def test_jit_with_batch_sharded_over_8_devices(setup, chunk_size):
  params, q, d, expected = setup
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  put = lambda x: jax.device_put(x, NamedSharding(mesh, P("data", *([None] * (x.ndim - 1)))))
  qs, ds = jax.tree.map(put, q), jax.tree.map(put, d)
  params_r = jax.device_put(params, NamedSharding(mesh, P()))
  fn = jax.jit(
      functools.partial(
          chunked_contrastive_value_and_grad, embed, loss_fn=loss_fn, chunk_size=chunk_size
      )
  )
  result = fn(params_r, qs, ds)
  assert len(qs["x"].sharding.device_set) == 8
  _assert_same(result, expected)


def test_bad_chunk_size_raises(setup):
  params, q, d, _ = setup
  with pytest.raises(ValueError, match="not divisible by chunk_size 5"):
    chunked_contrastive_value_and_grad(embed, params, q, d, loss_fn=loss_fn, chunk_size=5)
  with pytest.raises(ValueError, match="chunk_size must be a positive int"):
    chunked_contrastive_value_and_grad(embed, params, q, d, loss_fn=loss_fn, chunk_size=0)
  ragged = {"x": q["x"], "mask": q["mask"][:16]}
  with pytest.raises(ValueError, match="same leading batch dim"):
    chunked_contrastive_value_and_grad(embed, params, ragged, d, loss_fn=loss_fn, chunk_size=4)


def test_compiled_temp_bytes_flat_in_batch_at_fixed_chunk():
  """Compile only (abstract shapes), so wide layers and big batches cost no memory here."""
  width, depth, din, dout, chunk = 1024, 6, 64, 64, 32
  dims = [din] + [width] * (depth - 1) + [dout]
  params = jax.eval_shape(lambda: mlp_params(jax.random.key(0), dims))
  chunked = functools.partial(
      chunked_contrastive_value_and_grad, embed, loss_fn=loss_fn, chunk_size=chunk
  )
  full, gc = {}, {}
  for b in (64, 256, 1024):
    batch = {
        "x": jax.ShapeDtypeStruct((b, din), jnp.float32),
        "mask": jax.ShapeDtypeStruct((b,), jnp.float32),
    }
    full[b] = compiled_temp_bytes(full_value_and_grad, params, batch, batch)
    gc[b] = compiled_temp_bytes(chunked, params, batch, batch)
  print(f"\ntemp bytes (width {width}, depth {depth}, chunk {chunk}): full {full}, chunked {gc}")
  # The loss itself needs a few B x B float32 buffers in both versions; everything else in the
  # chunked version (activations) is per chunk, so its growth is a small part of full's.
  full_growth, gc_growth = full[1024] - full[64], gc[1024] - gc[64]
  assert full[1024] > 4 * full[64]
  assert gc_growth < 0.3 * full_growth
  loss_matrices = 3 * 4 * (1024**2 - 64**2)
  assert gc_growth < loss_matrices
  assert gc[256] < 1.2 * gc[64]  # below the size where the B x B loss buffers matter


def test_bf16_params_keep_dtype(setup):
  params, q, d, _ = setup
  params16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  (loss, _), grads = chunked_contrastive_value_and_grad(
      embed, params16, q, d, loss_fn=loss_fn, chunk_size=8
  )
  (loss_e, _), grads_e = full_value_and_grad(params16, q, d)
  assert loss.dtype == jnp.float32
  for name in grads_e:
    assert grads[name].dtype == jnp.bfloat16
    np.testing.assert_allclose(
        grads[name].astype(np.float32), grads_e[name].astype(np.float32), rtol=0.05, atol=0.02
    )
