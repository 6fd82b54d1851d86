"""Training datasets of paired texts by name: `config.data.name` -> (source, transform).

The table is filled here, in one visible place; entries are module paths imported on use, so
naming a dataset loads only its own code.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

# name -> "module:function"; function(options: dict, text_model) -> (source, transform | None),
# where text_model is the `EmbeddingModel` whose tokenizer the dataset uses (or None) and
# transform(batch, index) -> batch.
DATASETS: dict[str, str | Callable[..., tuple[Any, Callable | None]]] = {
    "synthetic_pairs": "jaxemb.data.synthetic:train_dataset",
    "stdlib_code_search": "jaxemb.data.code_search:train_dataset",
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
