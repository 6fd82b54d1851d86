"""`wordnet_closure`: WordNet noun hypernym closures as a TFDS dataset (array_record).

    from jaxemb.data.builders import wordnet_closure as wc
    src = wc.load("mammals")         # random access: src[i] -> {"child", "parent", ...}
    wc.graph("mammals")              # hierarchy.Graph (names + [E, 2] int32 edges)

"nouns" needs the WordNet 3.0 database (`apt-get install wordnet-base`, or $WORDNET_DIR).
The data directory defaults to `$JAXEMB_DATA_DIR`, else `~/.cache/jaxemb/tfds`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxemb.data import hierarchy
from jaxemb.data.builders import default_data_dir, prepare
from jaxemb.data.builders.wordnet_closure.wordnet_closure_dataset_builder import (
    WordnetClosure, WordnetClosureConfig, wordnet_dir)

CONFIGS = ("mammals", "nouns")

__all__ = ["CONFIGS", "WordnetClosure", "WordnetClosureConfig", "builder", "graph", "load",
           "wordnet_dir"]


def builder(config: str = "mammals", data_dir: str | None = None) -> WordnetClosure:
  """The prepared (built on first use) array_record builder of `config`."""
  if config not in CONFIGS:
    raise ValueError(f"wordnet_closure config must be one of {CONFIGS}, got {config!r}")
  return prepare(WordnetClosure(config=config, data_dir=data_dir or default_data_dir(),
                                file_format="array_record"))


def load(config: str = "mammals", data_dir: str | None = None) -> Sequence[Mapping[str, Any]]:
  """Random-access source of the closure's edges (`len`, `[i]`)."""
  return builder(config, data_dir).as_data_source("train")


def graph(config: str = "mammals", data_dir: str | None = None) -> hierarchy.Graph:
  """The whole closure as a `hierarchy.Graph`, read back from the built dataset."""
  b = builder(config, data_dir)
  src = b.as_data_source("train")
  n = int(b.info.metadata["num_nodes"])
  names = [""] * n
  edges = np.empty((len(src), 2), np.int32)
  for k in range(len(src)):
    ex = src[k]
    edges[k] = ex["child_id"], ex["parent_id"]
    names[ex["child_id"]] = ex["child"].decode()
    names[ex["parent_id"]] = ex["parent"].decode()
  order = np.lexsort((edges[:, 1], edges[:, 0]))
  return hierarchy.Graph(tuple(names), edges[order])
