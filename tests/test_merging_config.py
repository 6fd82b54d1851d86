"""configs/codesearch_merge.py: the merging experiment's three fine-tunes differ only in data."""

import pathlib

import pytest

from jaxemb.train.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{REPO}/configs/codesearch_merge.py"


def test_variants_share_everything_but_the_data():
  configs = {v: load_config(f"{CONFIG}:{v}") for v in ("code", "modules", "joint")}
  default = load_config(f"{REPO}/configs/codesearch_minilm.py")
  for c in configs.values():
    assert c.total_steps == default.total_steps == 100 and c.batch_size == default.batch_size
    assert c.objective == default.objective and c.optim.lr == default.optim.lr
    assert c.export and not c.evaluators and not c.final_evaluators
  code, modules = dict(configs["code"].data), dict(configs["modules"].data)
  assert code["name"] == "stdlib_code_search" and modules["name"] == "stdlib_modules"
  joint = configs["joint"].data
  assert joint.name == "concat" and [dict(p) for p in joint.parts] == [code, modules]
  assert code["code_lengths"] == modules["code_lengths"]  # one transform for the union
  assert load_config(f"{CONFIG}:joint,steps=20").total_steps == 20
  assert load_config(f"{CONFIG}:modules,runlocal").data.split == "train[:64]"


@pytest.mark.parametrize("arg", ["", "code,joint"])
def test_exactly_one_variant(arg):
  with pytest.raises(ValueError, match="exactly one variant"):
    load_config(f"{CONFIG}:{arg}")
