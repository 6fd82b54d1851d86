"""Executes the notebooks under colabs/ on tiny settings so they cannot rot."""

import os
import pathlib

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colabs").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, monkeypatch):
  # The kernel is a fresh process: give it one CPU device (not the suite's 8 fake ones) and the
  # quick settings.
  monkeypatch.setenv("JAXEMB_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("XLA_FLAGS", "")
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(ROOT / "colabs")}})
  client.execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors, errors


def test_there_is_a_quickstart():
  assert (ROOT / "colabs" / "quickstart.ipynb") in NOTEBOOKS
