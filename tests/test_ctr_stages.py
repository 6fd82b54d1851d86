"""OptEmbed's three stages from one config (`configs/ctr.py:optembed,stages`)."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from jaxemb.recipes import ctr
from jaxemb.train.config import load_config
from jaxemb.train.metrics import read_metrics
from conftest import persistent_compile_cache

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(arg, data_dir):
  config = load_config(f"{REPO}/configs/ctr.py:{arg}")
  config.progress = False
  config.async_checkpoint = False
  config.data.data_dir = data_dir
  return config


def test_stages_option_is_checked(tmp_path):
  with pytest.raises(ValueError, match="stages option is OptEmbed's"):
    load_config(f"{REPO}/configs/ctr.py:hashed,stages,runlocal")
  config = _config("optembed,stages,runlocal", str(tmp_path))
  # the loop alone would train a supernet only: the recipe refuses and names the driver
  with pytest.raises(ValueError, match="run_optembed_stages"):
    ctr.CTR(config)
  config.model.optembed_dims = (1,) * 26
  with pytest.raises(ValueError, match="leave model.optembed_dims"):
    ctr.run_optembed_stages(config, str(tmp_path / "run"))
  # without the option `jaxemb train` runs the loop once
  assert ctr.CTR.drive(_config("optembed,runlocal", str(tmp_path)), str(tmp_path)) is None


@pytest.mark.slow
def test_supernet_search_retrain_in_sequence_and_resume(tmp_path):
  with persistent_compile_cache(str(tmp_path / "cache")):
    config = _config("optembed,stages,runlocal,budget=0.5", str(tmp_path / "tfds"))
    workdir = str(tmp_path / "run")
    summary = ctr.CTR.drive(config, workdir)
    search = summary["stages"]["search"]
    dims, kept = np.asarray(search["dims"]), np.asarray(search["kept_rows"])
    # 1. the supernet trained in its own directory, with its pruning statistic logged
    super_rows = read_metrics(os.path.join(workdir, "supernet"))
    assert any("kept_rows_frac" in r for r in super_rows)
    assert max(r["step"] for r in super_rows) == config.total_steps
    # 2. the search met its budget: 0.5 x the supernet's rows x dim
    full = sum(ctr.data_spec(config.data)[1].cardinalities)
    assert search["budget_params"] == 0.5 * full * config.model.dim
    assert (kept * dims).sum() <= search["budget_params"]
    assert ((1 <= dims) & (dims <= config.model.dim)).all()
    keep = np.load(os.path.join(workdir, "optembed_keep.npy"))
    assert keep.sum() == kept.sum()
    # 3. the retrain ran in workdir with those dims and rows: its stored parameters are theirs
    assert summary["step"] == config.total_steps
    assert summary["eval_end"]["params/embedding"] == (kept * dims).sum()
    assert list(summary["recipe"].config.model.optembed_dims) == list(dims)
    # rerunning resumes every stage: nothing trains, the same search and result
    logged = len(read_metrics(workdir)) + len(super_rows)
    again = ctr.CTR.drive(config, workdir)
    assert again["stages"]["search"] == search and again["step"] == config.total_steps
    assert len(read_metrics(workdir)) + len(read_metrics(os.path.join(workdir, "supernet"))) == (
        logged)
    with open(os.path.join(workdir, "optembed_search.json")) as f:
      assert json.load(f) == search
