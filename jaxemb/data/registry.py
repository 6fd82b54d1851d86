"""Training datasets by name: `config.data.name` -> a source of example dicts."""

from __future__ import annotations

from typing import Any, Callable

import jax

from jaxemb.data.pipeline import GlobalBatches
from jaxemb.data.synthetic import SyntheticPairs

# name -> factory(options: dict, pretrained: EmbeddingModel | None) -> (source, transform|None)
DATASETS: dict[str, Callable[..., tuple[Any, Callable | None]]] = {
    "synthetic_pairs": lambda options, pretrained: (SyntheticPairs(**options), None),
}


def register_dataset(name: str, factory: Callable[..., tuple[Any, Callable | None]]) -> None:
  DATASETS[name] = factory


def make_train_batches(config, sharding: jax.sharding.NamedSharding,
                       pretrained=None) -> GlobalBatches:
  """Resumable global batches for `config.data` (name + options)."""
  import jaxemb.data.code_search  # noqa: F401  (registers the built-in code-search dataset)
  name = config.data.name
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
  options = {k: v for k, v in config.data.to_dict().items() if k != "name"}
  try:
    source, transform = DATASETS[name](options, pretrained)
  except TypeError as e:  # unknown keyword options of a dataset class
    raise ValueError(f"bad config.data options {sorted(options)} for dataset {name!r}: {e}") \
        from None
  return GlobalBatches(source, config.batch_size, seed=config.seed, sharding=sharding,
                       transform=transform)
