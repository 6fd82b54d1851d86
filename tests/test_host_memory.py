"""jaxemb.train.host_memory: the glibc settings that keep freed step buffers mapped.

The settings only act when a process starts, so the check that they work runs a child process:
it frees a large block and allocates it again, and the second touch of the pages must not
page-fault (glibc reused the mapping) — under the default settings it faults every time.
"""

import os
import platform
import subprocess
import sys

import pytest

from jaxemb.train import host_memory

# Child: allocate 64 MB (above glibc's mmap threshold), touch it, free it; repeat and count the
# minor page faults of the second round. ctypes' malloc/free are glibc's.
_CHILD = r"""
import ctypes, resource
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
def touch_round():
  p = libc.malloc(size)
  ctypes.memset(p, 1, size)
  libc.free(p)
touch_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def _faults(env) -> int:
  out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True,
                       check=True)
  return int(out.stdout.strip())


@glibc_only
def test_retain_env_keeps_freed_memory_mapped():
  plain = {k: v for k, v in os.environ.items() if k not in host_memory.RETAIN_FREED_MEMORY}
  pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
  # Default glibc: the 64 MB block is unmapped on free and faulted in again page by page.
  assert _faults(plain) >= pages // 2
  # Retained: the second round reuses the same, already resident memory.
  assert _faults(host_memory.retain_env(plain)) < pages // 100


def test_retain_env_adds_settings_and_keeps_the_callers():
  env = host_memory.retain_env({"PATH": "/bin", "MALLOC_ARENA_MAX": "4"})
  assert env["PATH"] == "/bin"
  assert env["MALLOC_ARENA_MAX"] == "4"  # the caller's own tuning wins
  assert env["MALLOC_MMAP_MAX_"] == "0"
  assert host_memory.is_retaining(host_memory.retain_env({}))
  assert not host_memory.is_retaining(env)


def test_is_retaining_accepts_a_preloaded_allocator():
  assert host_memory.is_retaining({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"})
  assert not host_memory.is_retaining({"LD_PRELOAD": "/usr/lib/libfoo.so"})
  assert not host_memory.is_retaining({})


@glibc_only
def test_hint_only_for_cpu_runs_without_the_settings():
  assert "MALLOC_MMAP_MAX_=0" in host_memory.hint("cpu", {})
  assert host_memory.hint("cpu", host_memory.retain_env({})) is None
  assert host_memory.hint("gpu", {}) is None


@pytest.mark.slow
def test_loop_logs_cpu_seconds_per_step(tmp_path):
  from jaxemb.train import loop
  from jaxemb.train.config import load_config
  from jaxemb.train.metrics import read_metrics
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = load_config(f"{repo}/configs/smoke.py:runlocal")
  config.update(total_steps=4, log_every=2, progress=False)
  config.optim.warmup_steps = 1
  loop.run(config, str(tmp_path))
  rows = [r for r in read_metrics(str(tmp_path)) if "loss" in r]
  assert [r["step"] for r in rows] == [2, 4]
  # Process CPU time per step is positive and cannot exceed wall time x the cores in use.
  for r in rows:
    wall_per_step = config.batch_size / r["examples_per_sec"]
    assert 0 < r["cpu_sec_per_step"] <= wall_per_step * os.cpu_count() * 1.05
