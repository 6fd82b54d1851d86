"""Tests for jaxemb.nn.layers: the shared factories and the scanned layer stack."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.nn import layers


def _axes(module):
  """{param path: logical axis names} of a module."""
  specs = nnx.get_partition_spec(nnx.state(module, nnx.Param))
  return {".".join(map(str, p)): tuple(v) for p, v in nnx.to_flat_state(specs)}


def test_factories_name_axes_and_set_dtypes():
  rngs = nnx.Rngs(0)
  d = layers.dense(4, 6, ("embed", "mlp"), dtype=jnp.bfloat16, rngs=rngs)
  assert _axes(d) == {"kernel": ("embed", "mlp"), "bias": ("mlp",)}
  assert d.kernel[...].dtype == jnp.float32  # stored in param_dtype, computed in dtype
  assert d(jnp.ones((2, 4))).dtype == jnp.bfloat16
  assert _axes(layers.layer_norm(6, 1e-5, rngs=rngs)) == {"scale": ("embed",), "bias": ("embed",)}
  assert _axes(layers.token_embedding(10, 6, rngs=rngs)) == {"embedding": ("vocab", "embed")}
  assert _axes(layers.token_embedding(2, 6, row_axis=None, rngs=rngs)) == {
      "embedding": (None, "embed")}


def test_layer_norm_matches_formula():
  norm = layers.layer_norm(5, 1e-6, rngs=nnx.Rngs(0))
  x = np.random.default_rng(0).standard_normal((3, 5))
  want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(norm(jnp.asarray(x, jnp.float32)), want, atol=1e-5)


def test_activations_match_closed_forms():
  x = np.linspace(-4, 4, 33)
  erf_gelu = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
  tanh_gelu = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
  want = {"gelu": erf_gelu, "gelu_new": tanh_gelu, "gelu_pytorch_tanh": tanh_gelu,
          "gelu_tanh": tanh_gelu, "relu": np.maximum(x, 0), "silu": x / (1 + np.exp(-x)),
          "identity": x}
  assert set(want) == set(layers.ACTIVATIONS)
  for name, ref in want.items():
    np.testing.assert_allclose(layers.activation(name)(jnp.asarray(x, jnp.float32)), ref,
                               atol=1e-5, err_msg=name)


def test_bad_names_raise_value_error_listing_choices():
  with pytest.raises(ValueError, match=r"activation='swish2' is not one of \('gelu'"):
    layers.activation("swish2")
  with pytest.raises(ValueError, match=r"dtype='float8' is not one of \('float32'"):
    layers.dtype("float8")
  assert layers.dtype("bfloat16") == jnp.bfloat16


def _stack(n, seed=0):
  rngs = nnx.Rngs(seed)
  return [layers.dense(4, 4, ("embed", "mlp"), rngs=rngs) for _ in range(n)]


def _numpy_loop(stack, x):
  """float64 reference: h <- tanh(h W + b) layer by layer."""
  states = []
  for layer in stack:
    x = np.tanh(x @ np.asarray(layer.kernel[...], np.float64)
                + np.asarray(layer.bias[...], np.float64))
    states.append(x)
  return states


@pytest.mark.parametrize("scan", [True, False])
def test_run_layers_matches_a_plain_loop(scan):
  stack = _stack(3)
  x = np.random.default_rng(1).standard_normal((2, 4))
  call = lambda layer, h: jnp.tanh(layer(h))
  last, states = jax.jit(lambda x: layers.run_layers(
      stack, x, call, deterministic=True, want_states=True, scan=scan))(
          jnp.asarray(x, jnp.float32))
  want = _numpy_loop(stack, x)
  assert len(states) == 3
  for got, ref in zip(states, want):
    np.testing.assert_allclose(got, ref, atol=1e-6)
  np.testing.assert_array_equal(last, states[-1])


def test_run_layers_scans_only_when_asked():
  call = lambda layer, h: jnp.tanh(layer(h))
  x = jnp.ones((2, 4))
  jaxpr = lambda **kw: str(jax.make_jaxpr(lambda x: layers.run_layers(
      _stack(3), x, call, deterministic=True, want_states=False, **kw)[0])(x))
  assert "scan" in jaxpr(scan=True)
  assert "scan" not in jaxpr()  # the default: a plain loop (see run_layers for why)


def test_scan_needs_layers_of_one_structure():
  rngs = nnx.Rngs(0)
  mixed = [layers.dense(4, 4, ("embed", "mlp"), rngs=rngs),
           layers.dense(4, 4, ("embed", "mlp"), rngs=rngs, dtype=jnp.bfloat16)]
  with pytest.raises(ValueError, match="layers of one structure"):
    layers.run_layers(mixed, jnp.ones((1, 4)), lambda l, h: l(h), deterministic=True,
                      want_states=False, scan=True)


def test_scan_refuses_dropout():
  with pytest.raises(ValueError, match="scan=True needs deterministic=True"):
    layers.run_layers(_stack(2), jnp.ones((1, 4)), lambda l, h: l(h), deterministic=False,
                      want_states=False, scan=True)


@pytest.mark.parametrize("bad", [0, 4, -1, 2.0, True, "2"])
def test_check_num_layers_names_value_and_range(bad):
  with pytest.raises(ValueError, match=rf"num_layers={bad!r} must be an integer in \[1, 3\]"):
    layers.check_num_layers(bad, 3)


def test_check_num_layers_defaults_to_all():
  assert layers.check_num_layers(None, 3) == 3
  assert layers.check_num_layers(np.int64(2), 3) == 2
