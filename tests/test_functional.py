"""The functional API: `jaxemb.split` / `jaxemb.apply` under the user's own jit, grad and mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxemb
from jaxemb.nn.build import build_embedder

OPTIONS = dict(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
               max_position_embeddings=16)


@pytest.fixture(scope="module")
def model():
  return build_embedder("transformer", OPTIONS, rngs=nnx.Rngs(0))


def _batch():
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 64, (8, 12)).astype(np.int32)
  mask = (np.arange(12)[None] < rng.integers(2, 13, (8, 1))).astype(np.int32)
  return {"input_ids": ids, "attention_mask": mask}


def _loss(emb):
  return jnp.sum(emb[:, :4] ** 2) - jnp.sum(emb[0] * emb[1])


def test_apply_equals_the_module_call(model):
  graphdef, params = jaxemb.split(model)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(params))
  batch = _batch()
  want = model(batch["input_ids"], batch["attention_mask"])
  got = jaxemb.apply(graphdef, params, batch)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
  # merge gives the module back without touching the inputs.
  again = jaxemb.merge(graphdef, params)
  np.testing.assert_allclose(np.asarray(again(batch["input_ids"], batch["attention_mask"])),
                             np.asarray(want), atol=1e-6)


def test_jit_grad_on_a_user_mesh_equals_the_module(model):
  """jit + grad of apply, params and batch sharded over the user's 8-device mesh."""
  graphdef, params = jaxemb.split(model)
  batch = _batch()
  mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
  # Shard the batch over 'x' and every parameter's first dimension where it divides.
  shard = lambda x: jax.device_put(x, NamedSharding(
      mesh, P("x") if x.ndim and x.shape[0] % 8 == 0 else P()))
  params_s, batch_s = jax.tree.map(shard, params), jax.tree.map(shard, batch)

  @jax.jit
  def value_and_grad(graphdef, params, batch):
    return jax.value_and_grad(lambda p: _loss(jaxemb.apply(graphdef, p, batch)))(params)

  value, grads = value_and_grad(graphdef, params_s, batch_s)
  # The reference: NNX's own grad of the module call, unsharded.
  ref_value, ref_grads = nnx.value_and_grad(
      lambda m: _loss(m(batch["input_ids"], batch["attention_mask"])))(model)
  assert float(value) == pytest.approx(float(ref_value), rel=1e-5)
  ref = nnx.State(ref_grads).to_pure_dict() if not isinstance(ref_grads, dict) else ref_grads
  flat_ref = dict(jax.tree_util.tree_leaves_with_path(ref))
  flat = dict(jax.tree_util.tree_leaves_with_path(grads))
  assert flat.keys() == flat_ref.keys()
  for path, g in flat.items():
    np.testing.assert_allclose(np.asarray(g), np.asarray(flat_ref[path]), atol=2e-5,
                               err_msg=jax.tree_util.keystr(path))
  assert any(float(jnp.max(jnp.abs(g))) > 1e-3 for g in flat.values())
