"""Training datasets of paired texts by name: `config.data.name` -> (source, transform).

The table is filled here, in one visible place; entries are module paths imported on use, so
naming a dataset loads only its own code.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

# name -> "module:function"; function(options: dict, text_model) -> (source, transform | None),
# where text_model is the `EmbeddingModel` whose tokenizer the dataset uses (or None) and
# transform(batch, index) -> batch.
DATASETS: dict[str, str | Callable[..., tuple[Any, Callable | None]]] = {
    "synthetic_pairs": "jaxemb.data.synthetic:train_dataset",
    "stdlib_code_search": "jaxemb.data.code_search:train_dataset",
    "stdlib_modules": "jaxemb.data.stdlib_modules:train_dataset",
    "stdlib_test_continuation": "jaxemb.data.test_continuation:train_dataset",
    # The union of several datasets of one row format (dict(name="concat", parts=[...])).
    "concat": "jaxemb.data.registry:concat_dataset",
    # (query, positive, mined negatives) rows written by `jaxemb mine`.
    "mined_negatives": "jaxemb.mining:train_dataset",
}


def _resolve(entry):
  if callable(entry):
    return entry
  module, _, name = entry.partition(":")
  return getattr(importlib.import_module(module), name)


def make_dataset(data_config, text_model=None) -> tuple[Any, Callable | None]:
  """(source, transform) for `config.data` (name + that dataset's options)."""
  options = {k: v for k, v in dict(data_config).items() if k != "name"}
  name = data_config.get("name")
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
  try:
    return _resolve(DATASETS[name])(options, text_model)
  except TypeError as e:  # unknown keyword options of a dataset class
    raise ValueError(f"bad config.data options {sorted(options)} for dataset {name!r}: {e}") \
        from None


class ConcatSource:
  """Random access over several sources, one after another (their union)."""

  def __init__(self, sources):
    self.sources = list(sources)
    self._starts = np.cumsum([0] + [len(s) for s in self.sources])

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, index: int):
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} rows")
    part = int(np.searchsorted(self._starts, index, side="right")) - 1
    return self.sources[part][index - int(self._starts[part])]


_PART_OWN = ("name", "split", "data_dir")


def concat_dataset(options: dict, text_model) -> tuple[ConcatSource, Callable | None]:
  """`dict(name="concat", parts=[dict(name=..., split=..., ...), ...])`: the parts' rows one
  after another (the loop shuffles the union), tokenised by one transform, so every part must
  have the same options apart from name, split and data_dir (e.g. the same lengths)."""
  options = dict(options)
  parts = [dict(p) for p in options.pop("parts", ())]
  if options or not parts:
    raise ValueError(f"concat takes one option, parts (a non-empty list of dataset configs); "
                     f"got parts={parts!r} and {sorted(options)}")
  shared = [{k: v for k, v in p.items() if k not in _PART_OWN} for p in parts]
  for p, own in zip(parts[1:], shared[1:]):
    if own != shared[0]:
      raise ValueError(f"concat parts need the same options apart from {_PART_OWN}: part "
                       f"{p.get('name')!r} has {own}, the first has {shared[0]}")
  built = [make_dataset(p, text_model) for p in parts]
  return ConcatSource([source for source, _ in built]), built[0][1]
