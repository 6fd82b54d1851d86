"""`stdlib_test_continuation`: a test-suite function's first half -> its second half.

    from jaxemb.data.builders import stdlib_test_continuation as stc
    src = stc.load("test")          # builds into the cache on first use (array_record)
    stc.decode(src[0])              # {"query": ..., "code": ..., "module": ..., ...} as str

The data directory defaults to `$JAXEMB_DATA_DIR`, else `~/.cache/jaxemb/tfds`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxemb.data.builders import default_data_dir, prepare
from jaxemb.data.builders.stdlib_code_search import decode
from jaxemb.data.builders.stdlib_test_continuation import extract
from jaxemb.data.builders.stdlib_test_continuation.extract import SPLITS
from jaxemb.data.builders.stdlib_test_continuation.stdlib_test_continuation_dataset_builder \
    import StdlibTestContinuation

__all__ = ["SPLITS", "StdlibTestContinuation", "builder", "decode", "extract", "load"]


def builder(data_dir: str | None = None) -> StdlibTestContinuation:
  """The prepared (built on first use) array_record builder for this interpreter."""
  return prepare(StdlibTestContinuation(data_dir=data_dir or default_data_dir(),
                                        file_format="array_record"))


def load(split: str, data_dir: str | None = None) -> Sequence[Mapping[str, Any]]:
  """Random-access source of "train", "validation" or "test" (optionally sliced)."""
  if split.split("[", 1)[0] not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS} (optionally sliced), got {split!r}")
  return builder(data_dir).as_data_source(split)
