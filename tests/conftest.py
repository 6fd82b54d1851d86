"""Test set-up: 8 fake CPU devices so every sharding path runs, set before jax is imported."""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent compilation cache for the whole run: many test files compile the same programs
# (all-MiniLM-L6-v2's train step and evaluation buckets at the runlocal shapes), and a compile
# of the 6-layer model costs seconds on CPU. Set before jax is imported, in the process that
# creates it, so pytest-xdist's workers and the subprocesses tests start inherit the one
# directory; removed when that process exits. A reader meeting an entry still being written
# gets a warning from JAX and compiles instead. Tests that need their own cache (cold starts,
# reruns) still set one (`persistent_compile_cache`).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxemb-test-xla-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)

import jax  # noqa: E402

assert jax.device_count() == 8, f"expected 8 fake CPU devices, got {jax.device_count()}"

import contextlib  # noqa: E402

import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def persistent_compile_cache(path: str):
  """Every compile inside is cached under `path` (and reused from there), then restored."""
  old = [getattr(jax.config, name) for name in _CACHE_OPTIONS]
  for name, value in zip(_CACHE_OPTIONS, (path, 0.0, -1)):
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  try:
    yield
  finally:
    for name, value in zip(_CACHE_OPTIONS, old):
      jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(autouse=True)
def _keep_jax_cache_config():
  """`jaxemb.cli.main` points JAX's persistent compilation cache at ~/.cache/jaxemb/xla: undo
  that after a test so the rest of the session keeps its own settings."""
  old = [getattr(jax.config, name) for name in _CACHE_OPTIONS]
  yield
  if [getattr(jax.config, name) for name in _CACHE_OPTIONS] != old:
    for name, value in zip(_CACHE_OPTIONS, old):
      jax.config.update(name, value)
    compilation_cache.reset_cache()


def _reference_python() -> str | None:
  """The reference environment (`make reference`: torch, sentence-transformers, mteb, ...)."""
  import pathlib
  for path in (os.environ.get("JAXEMB_REFERENCE_PYTHON"),
               str(pathlib.Path(__file__).resolve().parents[1] / ".venv-ref/bin/python")):
    if path and os.path.exists(path):
      return path
  return None


REFERENCE_PYTHON = _reference_python()


@pytest.fixture
def reference_python() -> str:
  """Interpreter of the reference environment; `make test` builds it, so CI runs these tests."""
  if REFERENCE_PYTHON is None:
    pytest.skip("needs the reference environment (make reference)")
  return REFERENCE_PYTHON
