"""`stdlib_modules`: module docstring -> module source pairs from the running Python's stdlib.

    from jaxemb.data.builders import stdlib_modules as sm
    src = sm.load("test")           # builds into the cache on first use (array_record)
    sm.decode(src[0])               # {"query": ..., "code": ..., "module": ..., ...} as str

The data directory defaults to `$JAXEMB_DATA_DIR`, else `~/.cache/jaxemb/tfds`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxemb.data.builders import default_data_dir, prepare
from jaxemb.data.builders.stdlib_code_search import decode
from jaxemb.data.builders.stdlib_modules import extract
from jaxemb.data.builders.stdlib_modules.extract import SPLITS
from jaxemb.data.builders.stdlib_modules.stdlib_modules_dataset_builder import StdlibModules

__all__ = ["SPLITS", "StdlibModules", "builder", "decode", "extract", "load"]


def builder(data_dir: str | None = None) -> StdlibModules:
  """The prepared (built on first use) array_record builder for this interpreter."""
  return prepare(StdlibModules(data_dir=data_dir or default_data_dir(),
                               file_format="array_record"))


def load(split: str, data_dir: str | None = None) -> Sequence[Mapping[str, Any]]:
  """Random-access source of "train", "validation" or "test" (optionally sliced)."""
  if split.split("[", 1)[0] not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS} (optionally sliced), got {split!r}")
  return builder(data_dir).as_data_source(split)
