"""The recipe interface, proven by a non-text recipe (tests/toy_recipes.py) on the one loop.

The matrix-factorisation recipe brings its own model, loss, host sampling, optimiser,
post-update projection and evaluator; nothing in `jaxemb/train/` knows about it.
"""

import jax
import numpy as np
import pytest

import toy_recipes
from jaxemb import recipes
from jaxemb.recipes import text_pairs
from jaxemb.train import loop
from jaxemb.train import mesh as mesh_lib
from jaxemb.train.metrics import read_metrics


def _losses(workdir):
  return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """One uninterrupted 20-step run on 8 devices: the reference."""
  workdir = str(tmp_path_factory.mktemp("mf_straight"))
  return workdir, loop.run(toy_recipes.config(), workdir)


def test_lookup_by_name_and_dotted_path():
  assert recipes.get("text_pairs") is text_pairs.TextPairs
  assert recipes.get("toy_recipes.MatrixFactorization") is toy_recipes.MatrixFactorization
  assert "text_pairs" in recipes.builtin()
  with pytest.raises(ValueError, match=r"unknown recipe 'nope'.*text_pairs"):
    recipes.get("nope")
  with pytest.raises(ValueError, match=r"unknown recipe 'toy_recipes.Nope'"):
    recipes.get("toy_recipes.Nope")
  with pytest.raises(ValueError, match="defines no RECIPE"):
    recipes.get("jaxemb.recipes.base")
  with pytest.raises(ValueError, match="config.recipe is missing"):
    loop.make_recipe(_without_recipe())


def _without_recipe():
  c = toy_recipes.config()
  del c["recipe"]
  return c


def test_unknown_keys_of_the_recipe_raise(tmp_path):
  config = toy_recipes.config(gradcache_chunk=4)  # a text_pairs key, not this recipe's
  with pytest.raises(ValueError, match=r"gradcache_chunk.*toy_recipes.MatrixFactorization"):
    loop.run(config, str(tmp_path))
  config = toy_recipes.config()
  config.model.rank = 3
  with pytest.raises(ValueError, match=r"model.rank"):
    loop.run(config, str(tmp_path))


def test_trains_with_its_optimizer_projection_and_evaluator(straight):
  workdir, summary = straight
  assert summary["compilations"] == 1 and summary["step"] == 20
  losses = _losses(workdir)
  assert losses[20] < 0.5 * losses[1], losses
  evals = [r["validation/mse"] for r in read_metrics(workdir) if "validation/mse" in r]
  assert len(evals) == 2 and evals[1] < evals[0]
  params = summary["state"]["params"]["model"]
  for table in params.values():  # the post-update projection held after every step
    assert float(np.max(np.linalg.norm(np.asarray(table), axis=-1))) <= 1.0 + 1e-6
  # The tables are sharded by rows over 'data' per the config's logical axis rules.
  assert params["users"].sharding.spec == jax.sharding.PartitionSpec("data", None)
  # SGD (the recipe's optimiser), not AdamW: the optimiser state holds no moments.
  assert all(x.ndim == 0 for x in jax.tree.leaves(summary["state"]["opt_state"]))


def test_resume_after_stop_at_step_is_bitwise_exact(straight, tmp_path):
  workdir, summary = straight
  loop.run(toy_recipes.config(stop_at_step=10), str(tmp_path))
  resumed = loop.run(toy_recipes.config(), str(tmp_path))
  assert resumed["step"] == 20
  want, got = _losses(workdir), _losses(str(tmp_path))
  assert [got[s] for s in range(1, 21)] == [want[s] for s in range(1, 21)]
  for a, b in zip(jax.tree.leaves(summary["state"]["params"]),
                  jax.tree.leaves(resumed["state"]["params"]), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_one_device_gives_the_same_losses(straight, tmp_path, monkeypatch):
  workdir, _ = straight
  make_mesh = mesh_lib.make_mesh
  monkeypatch.setattr(mesh_lib, "make_mesh",
                      lambda config=None, devices=None: make_mesh(config, jax.devices()[:1]))
  loop.run(toy_recipes.config(), str(tmp_path))
  want, got = _losses(workdir), _losses(str(tmp_path))
  np.testing.assert_allclose([got[s] for s in range(1, 21)], [want[s] for s in range(1, 21)],
                             rtol=1e-5)


def test_export_is_refused_by_a_recipe_without_one(tmp_path):
  with pytest.raises(ValueError, match="has no export"):
    loop.run(toy_recipes.config(export=True, total_steps=2, eval_every=0), str(tmp_path))
