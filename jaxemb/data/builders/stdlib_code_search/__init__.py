"""`stdlib_code_search`: docstring -> code pairs from the running Python's stdlib.

    from jaxemb.data.builders import stdlib_code_search as scs
    src = scs.load("test")          # builds into the cache on first use
    scs.decode(src[0])              # {"query": ..., "code": ..., ...} as str
    scs.counts()                    # {"train": ..., "validation": ..., "test": ...}

The data directory defaults to `$JAXEMB_DATA_DIR`, else `~/.cache/jaxemb/tfds`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The `extract` function is deliberately not re-exported: it would shadow the
# `extract` submodule that the builder imports.
from jaxemb.data.builders import default_data_dir, prepare
from jaxemb.data.builders.stdlib_code_search import extract
from jaxemb.data.builders.stdlib_code_search.extract import (
    SPLITS, TEST_PACKAGES, extract_examples, split_of)
from jaxemb.data.builders.stdlib_code_search.stdlib_code_search_dataset_builder import (
    StdlibCodeSearch, StdlibCodeSearchConfig)

__all__ = [
    "SPLITS", "TEST_PACKAGES", "StdlibCodeSearch", "StdlibCodeSearchConfig", "builder",
    "counts", "decode", "default_data_dir", "extract", "extract_examples", "load",
    "split_of",
]


def builder(data_dir: str | None = None) -> StdlibCodeSearch:
  """The prepared (built on first use) array_record builder for this interpreter."""
  return prepare(StdlibCodeSearch(data_dir=data_dir or default_data_dir(),
                                  file_format="array_record"))


def load(split: str, data_dir: str | None = None) -> Sequence[Mapping[str, Any]]:
  """Random-access source of one split (`len`, `[i]`), as `tfds.data_source` gives.

  `split` is "train", "validation" or "test", optionally with a TFDS slice
  ("train[:10%]"). Text features come back as `bytes`; see `decode`.
  """
  base = split.split("[", 1)[0]
  if base not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS} (optionally sliced), got {split!r}")
  return builder(data_dir).as_data_source(split)


def counts(data_dir: str | None = None) -> dict[str, int]:
  """Number of examples per split, e.g. {"train": 5050, "validation": ..., ...}."""
  splits = builder(data_dir).info.splits
  return {s: splits[s].num_examples for s in SPLITS}


def decode(example: Mapping[str, Any]) -> dict[str, str]:
  """Turns one read example (bytes values) into `str` values."""
  return {k: v.decode("utf-8") if isinstance(v, bytes) else str(v)
          for k, v in example.items()}
