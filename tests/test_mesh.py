"""Mesh construction, logical-axis rules, and a state initialised directly sharded."""

import pathlib
import tokenize

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxemb
from jaxemb.recipes import text_pairs
from jaxemb.train import loop
from jaxemb.train import mesh as mesh_lib
from jaxemb.train.config import load_config
from jaxemb.train.optim import make_optimizer


def test_default_mesh_puts_every_device_on_data():
  mesh = mesh_lib.make_mesh()
  assert dict(mesh.shape) == {"data": 8, "fsdp": 1, "tensor": 1}
  assert mesh_lib.data_parallel_size(mesh) == 8
  assert set(mesh.devices.flat) == set(jax.devices())


@pytest.mark.parametrize("config, expected", [
    ({"data": -1}, (8, 1, 1)),
    ({"fsdp": -1}, (1, 8, 1)),
    ({"data": 2, "fsdp": -1, "tensor": 2}, (2, 2, 2)),
    ({"tensor": 4, "data": -1}, (2, 1, 4)),
    ({"data": 1, "fsdp": 1, "tensor": 8}, (1, 1, 8)),
])
def test_mesh_shape_fills_the_minus_one_axis(config, expected):
  assert mesh_lib.mesh_shape(config, 8) == expected


@pytest.mark.parametrize("config, fragment", [
    ({"data": 4}, "has 4 devices, but there are 8"),
    ({"data": -1, "tensor": 3}, "does not divide"),
    ({"data": -1, "fsdp": -1}, "at most one"),
    ({"data": 0, "fsdp": -1}, "positive"),
    ({"model": 8}, "model"),
])
def test_bad_mesh_shapes_raise(config, fragment):
  with pytest.raises(ValueError, match=fragment):
    mesh_lib.mesh_shape(config, 8)


def test_explicit_devices_give_a_smaller_mesh():
  mesh = mesh_lib.make_mesh({"fsdp": -1}, devices=jax.devices()[:2])
  assert dict(mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 1}


@pytest.mark.parametrize("names, expected", [
    (None, P()),
    (("vocab", "embed"), P("tensor", "fsdp")),
    (("embed", "mlp"), P("fsdp", "tensor")),
    (("mlp", "embed"), P("tensor", "fsdp")),
    (("embed", "embed"), P("fsdp", None)),  # one mesh axis shards one dimension at most
    ((None, "embed"), P(None, "fsdp")),
    (("layers", "embed", "qkv"), P(None, "fsdp", "tensor")),
    (("latents", "unknown_name"), P(None, None)),
])
def test_logical_to_mesh_default_rules(names, expected):
  assert mesh_lib.logical_to_mesh(names) == expected


def test_logical_to_mesh_custom_rules_first_match_wins():
  rules = (("embed", "tensor"), ("embed", "fsdp"), ("vocab", "data"))
  assert mesh_lib.logical_to_mesh(("vocab", "embed"), rules) == P("data", "tensor")


def test_param_shardings_replicate_dimensions_the_axis_does_not_divide():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  params = {"a": jax.ShapeDtypeStruct((6, 4), np.float32),
            "b": jax.ShapeDtypeStruct((3, 4), np.float32),
            "c": jax.ShapeDtypeStruct((5,), np.float32)}
  names = {"a": ("vocab", "embed"), "b": ("vocab", "embed"), "c": None}
  out = mesh_lib.param_shardings(params, names, mesh)
  assert out["a"].spec == P("tensor", "fsdp")
  assert out["b"].spec == P(None, "fsdp")  # 3 rows cannot split over tensor=2
  assert out["c"].is_fully_replicated


@pytest.fixture(scope="module")
def sharded_state():
  """The smoke model's state on a (data=2, fsdp=2, tensor=2) mesh, initialised by `run`'s code."""
  config = load_config("configs/smoke.py:runlocal")
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  recipe = loop.make_recipe(config)
  tx, _ = recipe.optimizer()
  _, state, shardings = loop.init_state(config, mesh, tx, recipe)
  return mesh, state, shardings


def test_initialised_params_are_sharded_per_the_rules(sharded_state):
  mesh, state, _ = sharded_state
  model = state["params"]["model"]
  word = model["encoder"]["embeddings"]["word"]["embedding"]  # ("vocab", "embed"), [128, 32]
  assert word.sharding.spec == P("tensor", "fsdp")
  assert word.sharding.mesh.shape == mesh.shape
  # Each device really holds only its block: 128/2 rows x 32/2 columns.
  assert {s.data.shape for s in word.addressable_shards} == {(64, 16)}
  layer = model["encoder"]["layers"][0]
  assert layer["ffn_in"]["kernel"].sharding.spec == P("fsdp", "tensor")   # ("embed", "mlp")
  assert layer["ffn_out"]["kernel"].sharding.spec == P("tensor", "fsdp")  # ("mlp", "embed")
  assert {s.data.shape for s in layer["ffn_in"]["kernel"].addressable_shards} == {(16, 32)}
  assert layer["attention"]["query"]["kernel"].sharding.spec == P("fsdp", "tensor")
  assert layer["ffn_norm"]["scale"].sharding.spec == P("fsdp")
  # Every parameter with more than one element is sharded somewhere (coverage check).
  assert mesh_lib.unsharded_report(model) == []


def test_optimizer_moments_follow_their_params(sharded_state):
  _, state, shardings = sharded_state
  adam = state["opt_state"][1][0]  # chain(clip, adamw(scale_by_adam, ...))
  params = state["params"]
  for moments in (adam.mu, adam.nu):
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(moments), strict=True)
    for p, m in pairs:
      assert m.shape == p.shape
      assert m.sharding == p.sharding
  # The jit's declared out_shardings are what the arrays got.
  for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings), strict=True):
    assert x.sharding.is_equivalent_to(s, x.ndim)
  assert state["step"].sharding.is_fully_replicated


def test_no_pmap_anywhere_in_the_package():
  """pmap (and xmap) are gone: one jit over sharded arrays everywhere. Prose may mention them."""
  root = pathlib.Path(jaxemb.__file__).parent
  offenders = []
  for path in root.rglob("*.py"):
    with open(path, "rb") as f:
      for token in tokenize.tokenize(f.readline):
        if token.type == tokenize.NAME and token.string in ("pmap", "xmap"):
          offenders.append(f"{path}:{token.start[0]}")
  assert offenders == []


def test_init_builds_the_model_only_under_tracing(monkeypatch):
  """No concrete, unsharded copy of the model: every build is abstract or in the sharded jit."""
  built = []
  original = text_pairs.TextPairs.model

  def recording(self, rngs):
    module = original(self, rngs)
    word = module.encoder.embeddings.word.embedding.value
    built.append(isinstance(word, jax.core.Tracer))
    return module

  monkeypatch.setattr(text_pairs.TextPairs, "model", recording)
  config = load_config("configs/smoke.py:runlocal")
  mesh = mesh_lib.make_mesh({"data": 8})
  recipe = loop.make_recipe(config)
  tx, _ = recipe.optimizer()
  graph, state, _ = loop.init_state(config, mesh, tx, recipe)
  # eval_shape of the model, then the state's trace (shared by its eval_shape and the jit).
  assert len(built) >= 2 and all(built), built
  model = graph.merge(state["params"]["model"])  # and the state is complete: a usable module
  assert model(np.ones((2, 4), np.int32), np.ones((2, 4), np.int32)).shape == (2, 32)
