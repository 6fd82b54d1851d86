"""`synthetic_ctr`: Criteo-schema click data from a seeded teacher (see `jaxemb.data.ctr`).

    from jaxemb.data.builders import synthetic_ctr
    src = synthetic_ctr.load("train", "ci")     # builds into the cache on first use
    src[0]                                      # {"dense", "sparse", "label", "prob"}
    synthetic_ctr.spec("ci").cardinalities

The data directory defaults to `$JAXEMB_DATA_DIR`, else `~/.cache/jaxemb/tfds`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxemb.data import ctr
from jaxemb.data.builders import default_data_dir, prepare
from jaxemb.data.builders.synthetic_ctr.synthetic_ctr_dataset_builder import (
    CONFIGS, SyntheticCtr, SyntheticCTRConfig, make_config)

__all__ = ["CONFIGS", "SyntheticCtr", "SyntheticCTRConfig", "builder", "load", "make_config",
           "spec"]
SPLITS = ("train", "validation", "test")


def spec(config: str) -> ctr.CTRSpec:
  """The `CTRSpec` of a named config."""
  if config not in CONFIGS:
    raise ValueError(f"unknown synthetic_ctr config {config!r}; valid: {sorted(CONFIGS)}")
  return CONFIGS[config].spec


def builder(config: str = "ci", data_dir: str | None = None) -> SyntheticCtr:
  """The prepared (built on first use) array_record builder of `config`."""
  spec(config)
  return prepare(SyntheticCtr(config=config, data_dir=data_dir or default_data_dir(),
                              file_format="array_record"))


def load(split: str, config: str = "ci", data_dir: str | None = None
         ) -> Sequence[Mapping[str, Any]]:
  """Random-access source of one split ("train", "validation", "test", TFDS slices allowed)."""
  if split.split("[", 1)[0] not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS} (optionally sliced), got {split!r}")
  return builder(config, data_dir).as_data_source(split)
