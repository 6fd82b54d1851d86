"""The training loop end to end: logging, exact resume, preemption, checkpoints, invariance.

Every run here is `configs/smoke.py:runlocal` (20 steps, batch 32, dropout 0.1) unless a test
says otherwise. One uninterrupted run on 8 devices (mesh data=8) is the reference the other
runs are compared with: bitwise where only the schedule of stops differs, to 1e-5 relative
where the device layout differs (float summation order changes with the sharding).

Runs in this process use the conftest's 8 CPU devices; other device counts run
`python -m jaxemb.cli` in a subprocess. A persistent compilation cache, shared with the
subprocesses, lets the many runs of the same step compile it once.
"""

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from jaxemb.data import registry as data_registry
from jaxemb.data.pipeline import GlobalBatches
from jaxemb.data.synthetic import SyntheticPairs
from jaxemb.recipes import text_pairs
from jaxemb.train import loop
from jaxemb.train import mesh as mesh_lib
from jaxemb.train.checkpoint import Checkpointer, abstract_like
from jaxemb.train.config import load_config
from jaxemb.train.metrics import MetricsWriter, read_metrics
from jaxemb.train.optim import learning_rate_schedule

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = f"{REPO}/configs/smoke.py:runlocal"
STEPS = 20  # runlocal's total_steps
RTOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def compile_env(tmp_path_factory):
  """Persistent XLA cache for this module; yields the environment that shares it."""
  path = str(tmp_path_factory.getbasetemp() / "jax_cache")
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = [getattr(jax.config, name) for name in names]
  for name, value in zip(names, (path, 0.0, -1)):
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield {"JAX_COMPILATION_CACHE_DIR": path, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
  for name, value in zip(names, old):
    jax.config.update(name, value)
  compilation_cache.reset_cache()


def _env(compile_env, devices):
  return {**os.environ, **compile_env, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _config(**overrides):
  config = load_config(SMOKE)
  config.progress = False
  for key, value in overrides.items():
    config[key] = value
  return config


def _losses(workdir) -> dict[int, float]:
  """Loss per step; after a resume a step may appear twice: the last row is the one kept."""
  return {row["step"]: row["loss"] for row in read_metrics(workdir) if "loss" in row}


def _assert_close(losses, reference, steps, rtol=RTOL):
  assert sorted(losses) == list(steps)
  worst = max(abs(losses[s] - reference[s]) / abs(reference[s]) for s in steps)
  assert worst <= rtol, f"max relative loss difference {worst:.3g}"


def _checkpoint_steps(workdir) -> list[str]:
  return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted 8-device run."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  summary = loop.run(_config(), workdir)
  return workdir, summary, _losses(workdir)


@pytest.fixture(scope="module")
def fsdp_tensor_run(tmp_path_factory):
  """The same run on a (data=2, fsdp=2, tensor=2) mesh: parameters really sharded."""
  workdir = str(tmp_path_factory.mktemp("fsdp_tensor"))
  summary = loop.run(_config(mesh=dict(data=2, fsdp=2, tensor=2)), workdir)
  return workdir, summary


# ---------------------------------------------------------------------------------------------
# One run: what it writes.
# ---------------------------------------------------------------------------------------------

def test_run_compiles_once_and_logs_every_step(reference):
  workdir, summary, losses = reference
  assert summary["compilations"] == 1
  assert summary["step"] == STEPS and not summary["preempted"]
  rows = read_metrics(workdir)
  assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
  config = _config()
  schedule = learning_rate_schedule(config.optim.lr, STEPS, config.optim.warmup_steps,
                                    config.optim.decay)
  for row in rows:
    for key in ("step", "loss", "lr", "examples_per_sec", "grad_norm", "accuracy"):
      assert key in row, (key, row)
    assert row["examples_per_sec"] > 0
    assert row["nonfinite"] == 0 and row["skipped_total"] == 0
    # The logged lr is the one used for that step's update (the schedule at step - 1).
    assert row["lr"] == pytest.approx(float(schedule(row["step"] - 1)), rel=1e-5, abs=1e-12)
  # The smoke task is learnable: the loss falls a lot in 20 steps.
  assert losses[STEPS] < 0.5 * losses[1]


def test_metrics_keep_full_float_precision(reference):
  workdir, summary, _ = reference
  text = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  for line in text:
    loss = json.loads(line)["loss"]
    # The exact float32 value (not a rounded print), which is what makes bitwise checks work.
    assert float(np.float32(loss)) == loss
  assert json.loads(text[-1])["loss"] == summary["metrics"]["loss"]
  digits = text[-1].split('"loss": ')[1].split(",")[0].lstrip("0.")
  assert len(digits) >= 8, text[-1]  # more than a rounded print would keep


def test_config_json_is_the_run_config(reference):
  workdir, _, _ = reference
  written = json.loads((pathlib.Path(workdir) / "config.json").read_text())
  expected = json.loads(_config().to_json_best_effort())
  assert written == expected
  assert written["model"]["encoder_options"]["hidden_size"] == 32


def test_checkpoints_every_n_steps(reference):
  workdir, _, _ = reference
  assert _checkpoint_steps(workdir) == ["10", "20"]


def test_metrics_writer_rows_and_progress_bar(tmp_path, capsys):
  writer = MetricsWriter(str(tmp_path), total_steps=4, show_progress=True)
  writer.write(1, {"loss": np.float32(0.123456789), "lr": np.float32(1e-3),
                   "examples_per_sec": 12.5, "bad": np.float32(np.nan)})
  writer.progress(1, loss=0.123456789, lr=1e-3, ex_per_s=12.5)
  writer.close()
  (row,) = read_metrics(str(tmp_path))
  assert row == {"step": 1, "loss": float(np.float32(0.123456789)),
                 "lr": float(np.float32(1e-3)), "examples_per_sec": 12.5, "bad": None}
  bar = capsys.readouterr().err
  assert "1/4" in bar and "loss=0.1235" in bar and "lr=0.001" in bar and "ex_per_s=12.5" in bar


# ---------------------------------------------------------------------------------------------
# Exact resume.
# ---------------------------------------------------------------------------------------------

def test_resume_after_stop_at_step_is_bitwise_exact(reference, tmp_path):
  _, _, expected = reference
  workdir = str(tmp_path)
  first = loop.run(_config(stop_at_step=10), workdir)
  assert first["step"] == 10 and _checkpoint_steps(workdir) == ["10"]
  second = loop.run(_config(), workdir)
  assert second["step"] == STEPS and second["compilations"] == 1
  assert [row["step"] for row in read_metrics(workdir)] == list(range(1, STEPS + 1))
  assert _losses(workdir) == expected  # bitwise: same floats at every step


@pytest.mark.slow
def test_sigterm_then_resume_is_bitwise_exact(reference, tmp_path, compile_env):
  """Preemption at a random step: exit code 0, a checkpoint at that step, exact continuation."""
  _, _, expected = reference
  workdir = str(tmp_path)
  at_least = random.randrange(3, 16)
  # A checkpoint every step slows the loop enough for the signal to land mid-run, and makes
  # every step a possible stopping point; it does not change the computation.
  args = ["--config.progress=False", "--config.checkpoint_every=1"]
  log = tmp_path / "log.txt"  # a file, not a pipe: nobody reads while the run logs
  with open(log, "w") as out:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxemb.cli", "train", "--config", SMOKE, "--workdir",
         workdir, *args], cwd=REPO, env=_env(compile_env, 8), stdout=out,
        stderr=subprocess.STDOUT)
    metrics = pathlib.Path(workdir) / "metrics.jsonl"
    deadline = time.monotonic() + 1800  # a safety net only: a loaded machine is slow
    while proc.poll() is None and time.monotonic() < deadline:
      if metrics.exists() and len(metrics.read_text().splitlines()) >= at_least:
        proc.send_signal(signal.SIGTERM)
        break
      time.sleep(0.02)
    proc.wait(timeout=1800)
  output = log.read_text()
  assert proc.returncode == 0, output[-3000:]
  assert "(preempted)" in output, (at_least, output[-3000:])
  stopped = read_metrics(workdir)[-1]["step"]
  assert at_least <= stopped < STEPS
  ckpt = Checkpointer(workdir)
  assert ckpt.latest_step() == stopped
  ckpt.close()

  summary = loop.run(_config(), workdir)  # checkpoint_every is not part of the computation
  assert summary["step"] == STEPS
  assert _losses(workdir) == expected, f"SIGTERM after >= {at_least} steps, at {stopped}"


def test_partial_checkpoint_is_invisible_and_resume_is_exact(reference, tmp_path):
  """A crash while step 20 was being written leaves orbax's temporary directory: ignored."""
  source, _, expected = reference
  workdir = tmp_path / "run"
  shutil.copytree(f"{source}/checkpoints/10", workdir / "checkpoints" / "10")
  partial = workdir / "checkpoints" / "20.orbax-checkpoint-tmp"
  shutil.copytree(f"{source}/checkpoints/20", partial)
  (partial / "state" / "manifest.ocdbt").unlink()  # half written
  ckpt = Checkpointer(str(workdir))
  assert ckpt.all_steps() == [10] and ckpt.latest_step() == 10
  ckpt.close()

  summary = loop.run(_config(), str(workdir))
  assert summary["step"] == STEPS
  _assert_close(_losses(str(workdir)), expected, range(11, STEPS + 1), rtol=0.0)
  assert _checkpoint_steps(str(workdir)) == ["10", "20"]


# ---------------------------------------------------------------------------------------------
# Checkpoint retention.
# ---------------------------------------------------------------------------------------------

def _fake_eval_hook(monkeypatch, peak: int) -> None:
  """The recipe's evaluators become one whose "fake/score" peaks at step `peak`."""
  fake = lambda module, step: {"fake/score": -float((step - peak) ** 2)}
  monkeypatch.setattr(text_pairs.TextPairs, "evaluator",
                      lambda self, specs, mesh: fake if specs else None)


def test_keep_last_n_plus_best_by_metric(tmp_path, monkeypatch):
  # The score peaks at step 4: that checkpoint must survive as the best.
  _fake_eval_hook(monkeypatch, peak=4)
  config = _config(stop_at_step=10, checkpoint_every=2, eval_every=2, keep_checkpoints=2,
                   best_metric="fake/score", evaluators=[{"name": "fake"}])
  summary = loop.run(config, str(tmp_path))
  assert summary["eval"] == {"fake/score": -36.0}
  assert _checkpoint_steps(str(tmp_path)) == ["10", "4", "8"]
  evals = [row["step"] for row in read_metrics(str(tmp_path)) if "fake/score" in row]
  assert evals == [2, 4, 6, 8, 10]


def test_best_checkpoint_at_an_evaluation_between_checkpoint_steps(tmp_path, monkeypatch):
  # Evaluations at 3, 6, 9 with checkpoints every 4: the best (step 3) is still kept.
  _fake_eval_hook(monkeypatch, peak=3)
  config = _config(stop_at_step=10, checkpoint_every=4, eval_every=3, keep_checkpoints=1,
                   best_metric="fake/score", evaluators=[{"name": "fake"}])
  loop.run(config, str(tmp_path))
  assert "3" in _checkpoint_steps(str(tmp_path))


@pytest.mark.parametrize("mode, expected", [("min", [0, 3, 4]), ("max", [2, 3, 4])])
def test_checkpointer_best_mode(tmp_path, mode, expected):
  ckpt = Checkpointer(str(tmp_path), keep=2, best_metric="m", best_mode=mode, async_save=False)
  for step, m in enumerate([1.0, 5.0, 9.0, 4.0, 3.0]):
    ckpt.save(step, {"x": np.full((2,), step, np.float32)}, {"next_batch": step}, {"m": m})
  assert ckpt.all_steps() == expected
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state, data, step = ckpt.restore({"x": jax.ShapeDtypeStruct((2,), np.float32, sharding=one)})
  assert step == 4 and data == {"next_batch": 4}
  np.testing.assert_array_equal(state["x"], [4.0, 4.0])
  ckpt.close()


# ---------------------------------------------------------------------------------------------
# Sharding invariance and restore onto other device counts.
# ---------------------------------------------------------------------------------------------

def test_invariance_to_the_mesh_layout(reference, fsdp_tensor_run, tmp_path, monkeypatch):
  """data=8 vs (data=2, fsdp=2, tensor=2) vs 2 devices: the same losses (dropout on)."""
  _, _, expected = reference
  workdir, summary = fsdp_tensor_run
  assert summary["compilations"] == 1
  word = summary["state"]["params"]["model"]["encoder"]["embeddings"]["word"]["embedding"]
  assert word.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
  _assert_close(_losses(workdir), expected, range(1, STEPS + 1))

  # Two devices, in this process: run's mesh gets the first two devices only.
  make_mesh = mesh_lib.make_mesh
  monkeypatch.setattr(mesh_lib, "make_mesh",
                      lambda config=None, devices=None: make_mesh(config, jax.devices()[:2]))
  loop.run(_config(), str(tmp_path))
  _assert_close(_losses(str(tmp_path)), expected, range(1, STEPS + 1))


# Restores step 10 of the (2, 2, 2) run onto this process's devices and mesh, checks every
# array against the values the 8-device process restored, then runs the CLI.
_RESTORE_SCRIPT = """
import json, sys
import numpy as np, jax
from jaxemb import cli
from jaxemb.train import loop, mesh as mesh_lib
from jaxemb.train.checkpoint import Checkpointer, abstract_like
from jaxemb.train.config import apply_overrides, load_config
from jaxemb.train.optim import make_optimizer
source, expected, spec, workdir, *overrides = sys.argv[1:]
config = load_config(spec)
apply_overrides(config, overrides)
mesh = mesh_lib.make_mesh(config.mesh.to_dict())
tx, _ = make_optimizer(config.optim, config.total_steps)
recipe = loop.make_recipe(config)
_, target, _ = loop.init_state(config, mesh, tx, recipe)
ckpt = Checkpointer(source, async_save=False)
state, data, step = ckpt.restore(abstract_like(target), step=10)
ckpt.close()
expected = np.load(expected)
leaves, targets = jax.tree.leaves(state), jax.tree.leaves(target)
assert step == 10 and data == {"next_batch": 10} and len(leaves) == len(expected.files)
for i, (x, t) in enumerate(zip(leaves, targets)):
  assert x.sharding == t.sharding, (i, x.sharding, t.sharding)
  np.testing.assert_array_equal(np.asarray(x), expected[f"leaf{i}"])
print(f"restored {len(leaves)} arrays exactly onto {jax.device_count()} devices", flush=True)
cli.main(["train", "--config", spec, "--workdir", workdir, *overrides])
"""


@pytest.fixture(scope="module")
def restore_source(fsdp_tensor_run, tmp_path_factory):
  """(checkpoint dir, .npz of step 10 as restored on the 8 devices it was written on)."""
  workdir, summary = fsdp_tensor_run
  ckpt = Checkpointer(workdir, async_save=False)
  state, _, _ = ckpt.restore(abstract_like(summary["state"]), step=10)
  ckpt.close()
  path = tmp_path_factory.mktemp("restore") / "step10.npz"
  np.savez(path, **{f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))})
  return workdir, str(path)


def _restore_and_train(source, expected, workdir, devices, compile_env, *overrides):
  result = subprocess.run(
      [sys.executable, "-c", _RESTORE_SCRIPT, source, expected, SMOKE, workdir,
       "--config.progress=False", *overrides],
      cwd=REPO, env=_env(compile_env, devices), capture_output=True, text=True,
      timeout=1800)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  assert f"exactly onto {devices} devices" in result.stdout


@pytest.mark.slow
def test_one_device_restores_exactly_and_trains_the_same(reference, restore_source, tmp_path,
                                                         compile_env):
  """8 -> 1 device: exact restore; then a fresh 20-step run on 1 device gives the same losses."""
  _, _, expected = reference
  _restore_and_train(*restore_source, str(tmp_path), 1, compile_env)
  _assert_close(_losses(str(tmp_path)), expected, range(1, STEPS + 1))


@pytest.mark.slow
def test_four_devices_restore_exactly_and_resume_the_same(reference, restore_source, tmp_path,
                                                          compile_env):
  """8 -> 4 devices (fsdp=2, tensor=2): exact restore; the CLI resumes the 8-device run."""
  _, _, expected = reference
  source, _ = restore_source
  shutil.copytree(f"{source}/checkpoints/10", tmp_path / "checkpoints" / "10")
  _restore_and_train(*restore_source, str(tmp_path), 4, compile_env, "--config.mesh.data=1",
                     "--config.mesh.fsdp=2", "--config.mesh.tensor=2")
  _assert_close(_losses(str(tmp_path)), expected, range(11, STEPS + 1))


# ---------------------------------------------------------------------------------------------
# Non-finite steps in the loop.
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def nan_dataset(monkeypatch):
  """Distillation data whose teacher targets are NaN for exactly the examples of step 3."""
  seed, batch, n = 0, 8, 32
  one_device = mesh_lib.batch_sharding(mesh_lib.make_mesh({"data": 1}, jax.devices()[:1]))

  class Indexed:
    def __len__(self):
      return n

    def __getitem__(self, i):
      return {"i": np.array(i)}

  step3 = set(GlobalBatches(Indexed(), batch, seed=seed, sharding=one_device)
              .local_batch(2)["i"].tolist())
  pairs = SyntheticPairs(num_examples=n, seq_len=8, vocab_size=64)

  class Teacher:
    def __len__(self):
      return n

    def __getitem__(self, i):
      teacher = np.full((16,), np.nan if i in step3 else 0.25, np.float32)
      return {"query_ids": pairs[i]["query_ids"], "query_mask": pairs[i]["query_mask"],
              "teacher": teacher}

  monkeypatch.setitem(data_registry.DATASETS, "nan_teacher",
                      lambda options, text_model: (Teacher(), None))
  config = _config(total_steps=4, batch_size=batch, seed=seed, checkpoint_every=100,
                   data={"name": "nan_teacher"})
  config.model.encoder_options = dict(
      vocab_size=64, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
      max_position_embeddings=16)
  config.objective.name = "mse_distillation"
  config.optim.warmup_steps = 0
  return config


def test_nonfinite_skip_logs_and_continues(nan_dataset, tmp_path):
  summary = loop.run(nan_dataset, str(tmp_path))
  rows = {row["step"]: row for row in read_metrics(str(tmp_path))}
  assert rows[3]["nonfinite"] == 1 and rows[3]["loss"] is None  # NaN is written as null
  assert rows[3]["skipped_total"] == 1
  assert rows[2]["nonfinite"] == 0 and rows[2]["skipped_total"] == 0
  assert rows[4]["nonfinite"] == 0 and np.isfinite(rows[4]["loss"])
  assert summary["step"] == 4 and int(summary["state"]["skipped"]) == 1
  # The skipped step did not advance the optimiser's schedule: step 4 applies (and logs) the
  # rate of the third update, schedule(2), not schedule(3).
  schedule = learning_rate_schedule(nan_dataset.optim.lr, nan_dataset.total_steps, 0,
                                    nan_dataset.optim.decay)
  assert rows[4]["lr"] == pytest.approx(float(schedule(2)), rel=1e-6)
  assert rows[4]["lr"] != pytest.approx(float(schedule(3)), rel=1e-6)


def test_nonfinite_stop_raises_even_between_logged_steps(nan_dataset, tmp_path):
  nan_dataset.nonfinite = "stop"
  nan_dataset.log_every = 2  # step 3 is not logged: the cumulative count still catches it
  with pytest.raises(FloatingPointError, match="up to step 4"):
    loop.run(nan_dataset, str(tmp_path))
