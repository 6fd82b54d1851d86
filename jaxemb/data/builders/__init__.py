"""TFDS dataset builders, one package per dataset (importing one registers it).

Shared by every builder here: where prepared datasets live (`default_data_dir`) and `prepare`,
which builds a dataset at most once even when several processes on a host ask at the same time.
"""

from __future__ import annotations

import fcntl
import os
from typing import TypeVar

__all__ = ["default_data_dir", "prepare"]

Builder = TypeVar("Builder")


def default_data_dir() -> str:
  """`$JAXEMB_DATA_DIR` if set, else `~/.cache/jaxemb/tfds`."""
  return os.environ.get("JAXEMB_DATA_DIR") or os.path.expanduser("~/.cache/jaxemb/tfds")


def prepare(builder: Builder) -> Builder:
  """`builder.download_and_prepare()` under an exclusive lock on the dataset's data directory.

  TFDS writes a dataset into a temporary directory and renames it into place; two processes
  preparing the same dataset at once (the workers of a multi-process launch, parallel test
  workers) would both build it and the second rename fails on the first's directory. With the
  lock the second waits, then finds the dataset built and reads its metadata. Returns `builder`.
  """
  root = os.fspath(builder.data_dir_root)  # type: ignore[attr-defined]
  os.makedirs(root, exist_ok=True)
  lock_path = os.path.join(root, f".{builder.name}.lock")  # type: ignore[attr-defined]
  with open(lock_path, "a") as lock:  # closing the file releases the lock, also on an error
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder.download_and_prepare()  # type: ignore[attr-defined]  # no-op once built
    if not builder.info.splits:  # type: ignore[attr-defined]
      # made before another process finished building: TFDS read no metadata then
      builder.info.read_from_directory(builder.data_dir)  # type: ignore[attr-defined]
  return builder
