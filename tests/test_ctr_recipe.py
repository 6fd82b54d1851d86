"""Recipe `ctr` end to end through the shared loop (`configs/ctr.py:<table>,runlocal`)."""

from __future__ import annotations

import json
import os
import pathlib

import jax
import numpy as np
import pytest

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


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, arg="unified", **overrides):
  config = load_config(f"{REPO}/configs/ctr.py:{arg},runlocal")
  config.progress = False
  config.async_checkpoint = False
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    config[key] = value
  return config


def _losses(workdir):
  return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ctr_ref"))
  return workdir, loop.run(_config(data_dir), workdir)


def test_runlocal_trains_and_evaluates(reference):
  workdir, summary = reference
  end = summary["eval_end"]
  assert set(end) == {"params/embedding", "test/auc", "test/logloss", "test/oracle_auc"}
  model = summary["graph"].merge(summary["state"]["params"]["model"])
  assert end["params/embedding"] == model.tables.num_params
  assert 0.7 < end["test/oracle_auc"] < 1.0 and 0.0 < end["test/auc"] < 1.0
  assert 0.0 < end["test/logloss"] < 2.0
  losses = _losses(workdir)
  assert len(losses) == 4 and np.isfinite(list(losses.values())).all()
  # table rows sharded over the 8 devices of the data axis
  table = summary["state"]["params"]["model"]["tables"]["table"]
  assert table.sharding.spec[0] == "data"
  assert summary["compilations"] == 1
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["recipe"] == "ctr"


def test_resume_after_stop_at_step_is_bitwise(reference, data_dir, tmp_path):
  _, summary = reference
  workdir = str(tmp_path)
  loop.run(_config(data_dir, stop_at_step=10), workdir)
  resumed = loop.run(_config(data_dir), workdir)
  assert resumed["step"] == 20
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               resumed["state"]["params"], summary["state"]["params"])
  assert resumed["eval_end"] == summary["eval_end"]


def test_one_device_trains_the_same(reference, data_dir, tmp_path, monkeypatch):
  workdir_ref, _ = reference
  make_mesh = mesh_lib.make_mesh
  monkeypatch.setattr(mesh_lib, "make_mesh",
                      lambda config=None, devices=None: make_mesh(config, jax.devices()[:1]))
  loop.run(_config(data_dir), str(tmp_path))
  want, got = _losses(workdir_ref), _losses(str(tmp_path))
  assert sorted(got) == sorted(want)
  for step in want:
    assert got[step] == pytest.approx(want[step], rel=1e-5)


def test_bad_config_values(data_dir):
  from jaxemb.recipes import ctr
  config = _config(data_dir)
  config.model.table = "bloom"
  with pytest.raises(ValueError, match="unknown model.table 'bloom'"):
    ctr.CTR(config)
  config = _config(data_dir)
  config.data.spec = {"nope": 1}
  with pytest.raises(ValueError, match="unknown data.spec"):
    ctr.CTR(config)
  with pytest.raises(ValueError, match="budget"):
    load_config(f"{REPO}/configs/ctr.py:hashed,budget=1.5,runlocal") and ctr.make_tables(
        {"table": "hashed", "budget": 1.5}, [3, 4], None)


@pytest.mark.parametrize("table", ["full", "hashed", "qr", "unified", "optembed"])
def test_init_std_sets_the_rows_scale(table):
  from flax import nnx
  from jaxemb.recipes import ctr
  cards = [3000, 500, 40]
  spec = {"table": table, "dim": 8, "budget": 0.5, "init_std": 0.01}
  tables = ctr.make_tables(spec, cards, nnx.Rngs(0))
  # the remainder / only table's rows are drawn N(0, init_std^2); QR's quotient rows stay ~1
  rows = np.asarray(tables.r_table[...] if table == "qr" else tables.table[...])
  assert abs(rows.std() - 0.01) < 0.001
  default = ctr.make_tables({**spec, "init_std": 0.0}, cards, nnx.Rngs(0))
  rows = np.asarray(default.r_table[...] if table == "qr" else default.table[...])
  assert rows.std() > 0.1  # each table's own (about unit-norm) default


def test_qr_buckets_meet_the_budget():
  from jaxemb.nn.tables import budget_rows
  from jaxemb.recipes import ctr
  cards = np.array([10132, 2203, 94, 4])
  for budget in (0.25, 1 / 16):
    m = ctr.qr_buckets(cards, budget)
    rows = np.where(m == cards, cards, m + -(-cards // m))
    target = budget_rows(cards, budget)
    # hashed fields meet their row target within QR's rounding; small fields stay whole
    assert (np.abs(rows - target) <= 0.03 * target + 2).all()
    assert rows.sum() <= budget * cards.sum() * 1.03
  np.testing.assert_array_equal(ctr.qr_buckets(cards, 1.0), cards)


@pytest.mark.slow
@pytest.mark.parametrize("table", ["full", "hashed", "qr", "optembed"])
def test_every_table_runs(table, data_dir, tmp_path):
  summary = loop.run(_config(data_dir, table, total_steps=5, log_every=5), str(tmp_path))
  assert np.isfinite(summary["eval_end"]["test/auc"])


@pytest.mark.slow
def test_rowwise_adagrad_and_optembed_search_then_retrain(data_dir, tmp_path):
  from jaxemb.recipes import ctr
  summary = loop.run(_config(data_dir, "optembed", total_steps=10), str(tmp_path / "super"))
  model = summary["graph"].merge(jax.device_get(summary["state"]["params"]["model"]))
  budget = 0.5 * model.tables.num_params
  dims, keep, auc = ctr.optembed_search(summary["recipe"], model, budget, population=4,
                                        generations=2)
  kept = model.tables.kept_rows()
  assert (kept * dims).sum() <= budget and 0 <= auc <= 1
  np.save(tmp_path / "keep.npy", keep)
  config = _config(data_dir, "optembed,rowwise", total_steps=10)
  config.model.optembed_dims = tuple(int(d) for d in dims)
  config.model.optembed_keep = str(tmp_path / "keep.npy")
  retrained = loop.run(config, str(tmp_path / "retrain"))
  assert retrained["eval_end"]["params/embedding"] == (kept * dims).sum()
