"""`kg_triples`: knowledge-graph triples (Nations, UMLS, Kinships, or a user's TSV directory).

    from jaxemb.data.builders import kg_triples
    b = kg_triples.builder("umls")              # builds into the cache on first use
    b.as_data_source("train")[0]                # {"head": 3, "relation": 7, "tail": 12}
    b.info.metadata["entities"]                 # labels, id = position

See `jaxemb.data.kg` for numpy arrays and training sources.
"""

from __future__ import annotations

import os

from jaxemb.data.builders import default_data_dir, prepare
from jaxemb.data.builders.kg_triples import parse
from jaxemb.data.builders.kg_triples.kg_triples_dataset_builder import (
    DATA_DIR, TFDS_SPLITS, VENDORED, KgTriples, KgTriplesConfig, directory_config)

__all__ = ["DATA_DIR", "TFDS_SPLITS", "VENDORED", "KgTriples", "KgTriplesConfig", "builder",
           "default_data_dir", "directory_config", "parse"]


def builder(name_or_directory: str, data_dir: str | None = None) -> KgTriples:
  """The prepared array_record builder of a vendored graph ("umls") or a triples directory."""
  if name_or_directory in VENDORED:
    config = name_or_directory
  elif os.path.isdir(name_or_directory):
    config = directory_config(name_or_directory)
  else:
    raise ValueError(f"unknown graph {name_or_directory!r}: expected one of {VENDORED} or a "
                     f"directory holding train.txt, valid.txt, test.txt")
  return prepare(KgTriples(config=config, data_dir=data_dir or default_data_dir(),
                           file_format="array_record"))
