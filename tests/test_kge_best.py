"""`config.final_from_best` (a loop option): the final evaluators see the checkpoint best by
`config.best_metric`, here a kge runlocal run with validation every 2 steps."""

from __future__ import annotations

import json
import os
import pathlib

import jax
import pytest

from jaxemb.data import kg
from jaxemb.evaluate import link_prediction
from jaxemb.train import loop
from jaxemb.train.checkpoint import Checkpointer, abstract_like
from jaxemb.train.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  g = kg.synthetic(24, 3, 300, seed=2, valid_fraction=0.1, test_fraction=0.1)
  d = tmp_path_factory.mktemp("graph")
  kg.write_directory(g, str(d))
  c = load_config(f"{REPO}/configs/kge.py:rotate_nations_nssa64,runlocal")
  c.data.graph, c.data.data_dir = str(d), str(tmp_path_factory.mktemp("tfds"))
  c.objective.num_negatives = 4
  c.eval_every, c.checkpoint_every, c.keep_checkpoints = 2, 6, 1
  c.optim.lr = 0.1  # big steps, so validation MRR moves between evaluations
  return c


def test_final_evaluation_uses_the_best_checkpoint(config, tmp_path):
  assert config.final_from_best and config.best_metric == "validation/mrr"
  workdir = str(tmp_path / "run")
  summary = loop.run(config, workdir)
  rows = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
  valid = {r["step"]: r["validation/mrr"] for r in rows if "validation/mrr" in r}
  assert sorted(valid) == [2, 4, 6]
  best = max(sorted(valid), key=lambda s: valid[s])  # the earliest of equal values
  assert summary["final_from_step"] == best
  assert [r["final_from_step"] for r in rows if "final_from_step" in r] == [best]
  # Independently: the best step's checkpoint (kept beside the latest), evaluated here.
  ckpt = Checkpointer(workdir, keep=1, best_metric="validation/mrr")
  state = ckpt.restore(abstract_like(summary["state"]), best)[0]
  ckpt.close()
  model = summary["graph"].merge(state["params"]["model"])
  g = summary["recipe"].graph
  want = link_prediction.evaluate(
      lambda p, h, r: model.score_t_matmul(h, r), lambda p, r, t: model.score_h_matmul(r, t),
      None, g.test, g.all_triples(), g.num_entities)
  for k, v in want.items():
    assert summary["eval_end"][f"test/{k}"] == pytest.approx(v, rel=1e-6)


def test_final_from_best_needs_a_metric(config):
  c = config.copy_and_resolve_references()
  c.best_metric = ""
  with pytest.raises(ValueError, match="best_metric"):
    loop.make_recipe(c)
