"""Recipe `poincare` end to end through the shared loop (`configs/poincare.py:mammals,runlocal`)."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.geometry import poincare
from jaxemb.recipes.poincare import PoincareRecipe
from jaxemb.train import loop
from jaxemb.train import mesh as mesh_lib
from jaxemb.train.config import load_config
from jaxemb.train.metrics import read_metrics
from conftest import persistent_compile_cache

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
  """A persistent XLA cache for this module: the resumed runs reuse the reference's programs."""
  with persistent_compile_cache(str(tmp_path_factory.mktemp("jax_cache"))):
    yield


def _config(arg="", **overrides):
  config = load_config(f"{REPO}/configs/poincare.py:mammals,runlocal{arg}")
  config.async_checkpoint = False
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("poincare_ref"))
  return workdir, loop.run(_config(), workdir)


def _losses(workdir):
  return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}


def test_runlocal_trains_and_evaluates(reference):
  workdir, summary = reference
  for ev in (summary["eval_start"], summary["eval_end"], summary["eval"]):
    assert set(ev) == {"test/mean_rank", "test/map"}
    assert 1.0 <= ev["test/mean_rank"] < 1180 and 0.0 < ev["test/map"] <= 1.0
  assert len(_losses(workdir)) == 3 and summary["compilations"] == 1
  points = np.asarray(summary["state"]["params"]["model"]["points"], np.float64)
  assert points.shape == (1180, 2)
  assert np.linalg.norm(points, axis=-1).max() <= 1 - 1e-5 + 1e-7


@pytest.mark.slow
def test_resume_after_stop_at_step_is_bitwise(reference, tmp_path):
  _, summary = reference
  loop.run(_config(stop_at_step=3), str(tmp_path))
  resumed = loop.run(_config(), str(tmp_path))
  assert resumed["step"] == 6
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               resumed["state"]["params"], summary["state"]["params"])
  assert resumed["eval_end"] == summary["eval_end"]


@pytest.mark.slow
def test_one_device_trains_the_same(reference, tmp_path, monkeypatch):
  workdir_ref, summary = reference
  make_mesh = mesh_lib.make_mesh
  monkeypatch.setattr(mesh_lib, "make_mesh",
                      lambda config=None, devices=None: make_mesh(config, jax.devices()[:1]))
  got = loop.run(_config(), str(tmp_path))
  want_l, got_l = _losses(workdir_ref), _losses(str(tmp_path))
  assert sorted(got_l) == sorted(want_l)
  for step in want_l:
    assert got_l[step] == pytest.approx(want_l[step], rel=1e-5)
  np.testing.assert_allclose(got["state"]["params"]["model"]["points"],
                             summary["state"]["params"]["model"]["points"], rtol=1e-5,
                             atol=1e-7)


def test_loss_matches_float64_formula_and_skips_related_negatives():
  recipe = PoincareRecipe(_config())
  model = recipe.model(nnx.Rngs(3))
  # Spread the points so distances differ (the init is near the origin).
  model.points[...] = poincare.project(model.points[...] * 500)
  edges = recipe.graph.edges[:12]
  key = jax.random.key(7)
  loss, _ = recipe.loss(model, {}, {"edge": jnp.asarray(edges[None])}, key)
  k = recipe.config.objective.num_negatives
  neg = np.asarray(jax.random.randint(key, (12, k), 0, recipe.graph.num_nodes, jnp.int32))
  pts = np.asarray(model.points[...], np.float64)
  related = {(int(a), int(b)) for a, b in recipe.graph.edges}

  def d(a, b):
    x, y = pts[a], pts[b]
    return np.arccosh(1 + 2 * ((x - y) ** 2).sum() / ((1 - (x * x).sum()) * (1 - (y * y).sum())))

  total, skipped = 0.0, 0
  for (u, v), ns in zip(edges, neg):
    keep = [n for n in ns if n != u and (u, n) not in related and (n, u) not in related]
    skipped += k - len(keep)
    logits = np.asarray([-d(u, v)] + [-d(u, n) for n in keep])
    total += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0]
  np.testing.assert_allclose(float(loss), total / 12, rtol=1e-5)
  # mammal.n.01 is every node's ancestor: as u's negative it is always skipped.
  root = recipe.graph.names.index("mammal.n.01")
  assert recipe.related[edges[:, 0], root].all()


def test_burnin_schedule_and_bad_config():
  config = _config(total_steps=100)
  config.objective.burnin_epochs = 2
  recipe = PoincareRecipe(config)
  _, schedule = recipe.optimizer()
  burnin = 2 * recipe.steps_per_epoch
  lr = config.optim.lr
  assert float(schedule(0)) == pytest.approx(lr * 0.1)
  assert float(schedule(burnin - 1)) == pytest.approx(lr * 0.1)
  assert float(schedule(burnin)) == pytest.approx(lr)
  bad = _config()
  bad.objective.num_negatives = 0
  with pytest.raises(ValueError, match="num_negatives must be >= 1"):
    PoincareRecipe(bad)
  bad = _config()
  bad.data.closure = "birds"
  with pytest.raises(ValueError, match="closure='birds'"):
    PoincareRecipe(bad)
  bad = _config()
  bad.objective.typo = 1
  with pytest.raises(ValueError, match="objective.typo"):
    PoincareRecipe(bad)


def test_degree_negatives_during_burnin():
  config = _config(",burnin_negatives=degree", total_steps=300)
  config.objective.burnin_epochs = 2
  recipe = PoincareRecipe(config)
  n = recipe.graph.num_nodes
  # The reference's weights, by a plain loop: counts[h] += 1 per closure edge (t, h), ** 0.75.
  counts = np.zeros(n)
  for _, h in recipe.graph.edges:
    counts[h] += 1
  want = counts ** 0.75 / (counts ** 0.75).sum()
  key = jax.random.key(0)
  draws = np.asarray(recipe.negatives(key, (400_000,), True))
  freq = np.bincount(draws, minlength=n) / len(draws)
  assert counts[draws].min() > 0  # leaves (no descendants) are never drawn in burn-in
  np.testing.assert_allclose(freq, want, atol=4 * np.sqrt(want.max() / len(draws)))
  # after the burn-in: the same uniform draw as without the option
  np.testing.assert_array_equal(
      recipe.negatives(key, (64, 5), False), jax.random.randint(key, (64, 5), 0, n, jnp.int32))
  # the host transform flags the burn-in steps (batch index = step)
  transform = recipe.train_data().transform
  rows = {"edge": np.zeros((8, 8, 2), np.int32)}
  assert transform(rows, recipe.burnin_steps - 1)["burnin"].all()
  assert not transform(rows, recipe.burnin_steps)["burnin"].any()
  model = recipe.model(nnx.Rngs(0))
  batch = {"edge": jnp.asarray(recipe.graph.edges[None, :64]), "burnin": jnp.ones((1,), bool)}
  assert np.isfinite(float(recipe.loss(model, {}, batch, key)[0]))
  with pytest.raises(ValueError, match="burnin_negatives='zipf'"):
    PoincareRecipe(_config(",burnin_negatives=zipf"))


def test_closure_file_and_large_closure_path(tmp_path, monkeypatch):
  from jaxemb.data import hierarchy
  from jaxemb.recipes import poincare as recipe_mod
  path = str(tmp_path / "tiny.tsv")
  hierarchy.write_closure({("b", "a"), ("c", "a"), ("d", "b"), ("d", "a")}, path)
  config = _config()
  config.data.closure = path
  # Above DENSE_RELATED_MAX nodes negatives are not filtered (no [N, N] table).
  monkeypatch.setattr(recipe_mod, "DENSE_RELATED_MAX", 2)
  recipe = PoincareRecipe(config)
  assert recipe.graph.num_nodes == 4 and recipe.related is None
  model = recipe.model(nnx.Rngs(0))
  loss, _ = recipe.loss(model, {}, {"edge": jnp.asarray(recipe.graph.edges[None])},
                        jax.random.key(0))
  assert np.isfinite(float(loss)) and float(loss) > 0
