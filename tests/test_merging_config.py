"""configs/codesearch_merge.py: the merging experiment's fine-tunes differ only in data."""

import pathlib

import pytest

from jaxemb.train.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{REPO}/configs/codesearch_merge.py"


def test_variants_share_everything_but_the_data():
  variants = ("code", "continuation", "modules", "joint")
  configs = {v: load_config(f"{CONFIG}:{v}") for v in variants}
  default = load_config(f"{REPO}/configs/codesearch_minilm.py")
  for c in configs.values():
    assert c.total_steps == default.total_steps == 100 and c.batch_size == default.batch_size
    assert c.objective == default.objective and c.optim.lr == default.optim.lr
    assert c.export and not c.evaluators and not c.final_evaluators
  code, cont, modules = (dict(configs[v].data) for v in ("code", "continuation", "modules"))
  assert code["name"] == "stdlib_code_search" and modules["name"] == "stdlib_modules"
  assert cont["name"] == "stdlib_test_continuation" and cont["split"] == "train[:2000]"
  joint = configs["joint"].data
  assert joint.name == "concat" and [dict(p) for p in joint.parts] == [code, cont]
  assert [dict(p) for p in load_config(f"{CONFIG}:joint,b=modules").data.parts] == [code,
                                                                                    modules]
  for part in (cont, modules):  # one transform for the union
    assert (part["code_lengths"], part["query_lengths"]) == (code["code_lengths"],
                                                             code["query_lengths"])
  assert load_config(f"{CONFIG}:joint,steps=20").total_steps == 20
  assert load_config(f"{CONFIG}:continuation,b_pairs=500").data.split == "train[:500]"
  assert load_config(f"{CONFIG}:modules,runlocal").data.split == "train[:64]"


@pytest.mark.parametrize("arg", ["", "code,joint"])
def test_exactly_one_variant(arg):
  with pytest.raises(ValueError, match="exactly one variant"):
    load_config(f"{CONFIG}:{arg}")


def test_unknown_b_task():
  with pytest.raises(ValueError, match="b must be one of.*got 'paraphrase'"):
    load_config(f"{CONFIG}:joint,b=paraphrase")
