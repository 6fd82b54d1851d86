"""LCWA (1-N) training of the `kge` recipe: the query rows, the multi-hot labels and the loss of
one batch against a float64 numpy loop (DistMult scores and BCE written out by hand), and a
runlocal run through the loop."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb import functional
from jaxemb.data import kg
from jaxemb.objectives import kge as kge_obj
from jaxemb.recipes.kge import KGERecipe
from jaxemb.train import loop
from jaxemb.train.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_lcwa_queries_by_hand():
  t = np.array([[0, 1, 2], [0, 1, 3], [4, 0, 2], [0, 1, 2]])  # one duplicate
  np.testing.assert_array_equal(kg.lcwa_queries(t), [[0, 0, 1, 2, 3], [0, 4, 0, 2, -1]])
  np.testing.assert_array_equal(kg.lcwa_queries(t, "both"), [
      [0, 0, 1, 2, 3], [0, 4, 0, 2, -1], [1, 2, 0, 4, -1], [1, 2, 1, 0, -1], [1, 3, 1, 0, -1]])
  with pytest.raises(ValueError, match="target"):
    kg.lcwa_queries(t, "head")
  with pytest.raises(ValueError, match=r"\[N, 3\]"):
    kg.lcwa_queries(np.zeros((2, 2)))


def test_config_query_counts_match_the_graphs():
  import importlib.util
  spec = importlib.util.spec_from_file_location("kge_configs", REPO / "configs" / "kge.py")
  configs = importlib.util.module_from_spec(spec)
  sys.path.insert(0, str(REPO / "configs"))  # for its `import common`
  try:
    spec.loader.exec_module(configs)
  finally:
    sys.path.remove(str(REPO / "configs"))
  for (graph, target), count in configs.TRAIN_QUERIES.items():
    assert len(kg.lcwa_queries(kg.load(graph).train, target)) == count, (graph, target)


def test_multi_hot():
  got = kge_obj.multi_hot(jnp.array([[2, 0, -1], [-1, -1, -1]]), 4)
  np.testing.assert_array_equal(got, [[1, 0, 1, 0], [0, 0, 0, 0]])
  with pytest.raises(ValueError, match="unknown LCWA loss"):
    kge_obj.lcwa_loss("nssa", jnp.zeros((1, 2)), jnp.zeros((1, 2)))


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory):
  g = kg.synthetic(16, 3, 120, seed=1, valid_fraction=0.1, test_fraction=0.1)
  d = tmp_path_factory.mktemp("graph")
  kg.write_directory(g, str(d))
  # The built TFDS dataset beside the files: built once for the module.
  return str(d), str(tmp_path_factory.mktemp("tfds"))


def _config(graph_dir, tmp_path, **objective):
  del tmp_path
  c = load_config(f"{REPO}/configs/kge.py:complex_umls_lcwa,runlocal")
  c.data.graph, c.data.data_dir = graph_dir
  c.model.interaction = "distmult"
  c.objective.update(objective)
  return c


@pytest.mark.parametrize("loss,target", [("bce", "both"), ("cross_entropy", "tail")])
def test_lcwa_loss_matches_numpy_loop(graph_dir, tmp_path, loss, target):
  recipe = KGERecipe(_config(graph_dir, tmp_path, loss=loss, target=target,
                             regularizer_weight=0.0))
  model = recipe.model(nnx.Rngs(0))
  src = recipe.train_data().source
  batch = {"query": jnp.asarray(np.stack([src[i]["query"] for i in range(2)]))}
  got = float(recipe.loss(model, {}, batch, jax.random.key(0))[0])
  ent = np.asarray(model.entity[...], np.float64)
  rel = np.asarray(model.relation[...], np.float64)
  n = len(ent)
  want = []
  for side, e, r, *answers in np.asarray(batch["query"]).reshape(-1, batch["query"].shape[-1]):
    assert target == "both" or side == 0
    truth = {a for a in answers if a >= 0}
    # DistMult: sum_i h_i r_i t_i, the query's entity as head (side 0) or tail (side 1).
    s = [sum(ent[e, i] * rel[r, i] * ent[x, i] for i in range(ent.shape[1])) for x in range(n)]
    y = [1.0 if x in truth else 0.0 for x in range(n)]
    if loss == "bce":
      want += [yx * np.log1p(np.exp(-sx)) + (1 - yx) * np.log1p(np.exp(sx))
               for sx, yx in zip(s, y)]
    else:
      lse = np.log(sum(np.exp(sx) for sx in s))
      want.append(-sum(yx / len(truth) * (sx - lse) for sx, yx in zip(s, y)))
  assert got == pytest.approx(np.mean(want), rel=1e-5)


def test_lcwa_regularizer_counts_the_whole_entity_table(graph_dir, tmp_path):
  base = KGERecipe(_config(graph_dir, tmp_path, regularizer_weight=0.0))
  reg = KGERecipe(_config(graph_dir, tmp_path, regularizer_weight=0.5, regularizer_p=2.0,
                          regularizer_normalize=False))
  model = base.model(nnx.Rngs(0))
  q = np.asarray(base.train_data().source[0]["query"])
  batch = {"query": jnp.asarray(q[None])}
  plain = float(base.loss(model, {}, batch, jax.random.key(0))[0])
  total, metrics = reg.loss(model, {}, batch, jax.random.key(0))
  ent, rel = np.asarray(model.entity[...]), np.asarray(model.relation[...])
  norm = lambda x: np.mean(np.linalg.norm(x, axis=-1))
  want = 0.5 * (norm(ent[q[:, 1]]) + norm(rel[q[:, 2]]) + norm(ent))
  assert float(metrics["regularizer"]) == pytest.approx(want, rel=1e-5)
  assert float(total) == pytest.approx(plain + want, rel=1e-5)


@pytest.mark.slow
def test_lcwa_runlocal_through_the_loop(graph_dir, tmp_path):
  c = _config(graph_dir, tmp_path)
  summary = loop.run(c, str(tmp_path / "run"))
  assert summary["step"] == c.total_steps and summary["compilations"] == 1
  assert np.isfinite(summary["metrics"]["loss"]) and "test/mrr" in summary["eval_end"]


def test_bad_lcwa_options_raise(graph_dir, tmp_path):
  with pytest.raises(ValueError, match="objective.loss"):
    KGERecipe(_config(graph_dir, tmp_path, loss="nssa"))
  with pytest.raises(ValueError, match="objective.target"):
    KGERecipe(_config(graph_dir, tmp_path, target="relation"))
  with pytest.raises(ValueError, match="objective.training"):
    KGERecipe(_config(graph_dir, tmp_path, training="1-n"))
