"""The README's "Write your own recipe" example runs as written, and trains."""

import pathlib
import re
import sys
import types

import jax

REPO = pathlib.Path(__file__).resolve().parents[1]


def _example() -> str:
  text = (REPO / "README.md").read_text()
  section = text[text.index("## Write your own recipe"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_write_your_own_recipe_example_runs(tmp_path, monkeypatch):
  code = _example()
  assert len(code.splitlines()) <= 40
  monkeypatch.chdir(tmp_path)
  # The example names its recipe "__main__.RingRecipe": run it as a __main__ module would be.
  module = types.ModuleType("__main__")
  monkeypatch.setitem(sys.modules, "__main__", module)
  exec(compile(code.replace("summary = run(config", "config.progress = False\nsummary = run("
                            "config"), "README.md", "exec"), module.__dict__)
  summary = module.summary
  assert summary["step"] == 30 and summary["compilations"] == 1
  table = summary["state"]["params"]["model"]["table"]
  assert table.sharding.spec == jax.sharding.PartitionSpec("data", None)
  import numpy as np
  from jaxemb.train.metrics import read_metrics
  losses = [r["loss"] for r in read_metrics(str(tmp_path / "runs/ring")) if "loss" in r]
  assert losses[-1] < losses[0]
  assert float(np.max(np.linalg.norm(np.asarray(table), axis=-1))) <= 1.0 + 1e-6
