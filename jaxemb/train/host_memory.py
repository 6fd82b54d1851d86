"""Host (CPU) memory settings that keep a training step's freed buffers mapped.

Measured on XLA:CPU (benchmarks/README.md, "Profile of one training step"): every execution of
the jitted step allocates its temporary buffer (~2.4 GB for MiniLM, batch 64, lengths 32/64) with
`malloc` on an XLA worker thread. glibc serves an allocation that large with `mmap` and returns
it with `munmap` when the step ends, so the next step page-faults all of it in again (600k
minor faults, ~1.5 CPU s of kernel time per step of ~5.6 CPU s). With one arena, no `mmap`
and no trimming, glibc keeps the freed memory and reuses it: no faults after the first steps,
at the price of a resident set about one temporary buffer larger (two steps' buffers overlap
under asynchronous dispatch).

glibc reads these variables once, when the process starts, so they must be set in the
environment of the process that trains (setting them from Python, or calling `mallopt` after
the interpreter has started threads, did not take effect in the measurements). This module
gives the environment; the loop logs a hint when a CPU run lacks it.
"""

from __future__ import annotations

import os
import platform
from typing import Mapping

# MALLOC_ARENA_MAX=1: every thread allocates from the main arena, which grows with brk (a
#   thread arena can only hold 64 MB and falls back to mmap for larger blocks whatever the
#   limits below say).
# MALLOC_MMAP_MAX_=0: no block is served by mmap, so none is unmapped when freed.
# MALLOC_TRIM_THRESHOLD_: never give the top of the heap back to the kernel.
RETAIN_FREED_MEMORY: dict[str, str] = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(2**40),
}


def retain_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
  """`environ` (default `os.environ`) plus `RETAIN_FREED_MEMORY`, for a training subprocess.

  Variables the caller already set win, so a user's own allocator tuning is kept.
  """
  environ = dict(os.environ if environ is None else environ)
  return {**RETAIN_FREED_MEMORY, **environ}


def is_retaining(environ: Mapping[str, str] | None = None) -> bool:
  """Whether `environ` (default `os.environ`) keeps freed memory mapped.

  True when it holds the `RETAIN_FREED_MEMORY` settings, or preloads another allocator
  (jemalloc, tcmalloc, mimalloc) via LD_PRELOAD, which manages its own caching.
  """
  environ = os.environ if environ is None else environ
  preload = environ.get("LD_PRELOAD", "")
  if any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc")):
    return True
  return all(environ.get(k) == v for k, v in RETAIN_FREED_MEMORY.items())


def hint(platform_name: str, environ: Mapping[str, str] | None = None) -> str | None:
  """A one-line suggestion for a CPU training run on glibc Linux that lacks the settings."""
  if platform_name != "cpu" or platform.system() != "Linux" or is_retaining(environ):
    return None
  if platform.libc_ver()[0] != "glibc":
    return None
  settings = " ".join(f"{k}={v}" for k, v in RETAIN_FREED_MEMORY.items())
  return (f"training on CPU: starting the process with {settings} stops glibc unmapping and "
          "page-faulting each step's buffers, at the cost of about one more step's buffers "
          "of resident memory (see benchmarks/README.md)")
