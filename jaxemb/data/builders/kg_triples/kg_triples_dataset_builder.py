"""TFDS builder: knowledge-graph triples (head, relation, tail ids) per split, array_record.

Configs `nations`, `umls`, `kinships` read the copies vendored in this package (`data/`, from
the PyKEEN 1.11.1 wheel; see PROVENANCE.md); `directory_config(path)` makes a config for a
user's own directory of `train/valid/test.txt` label-triple files. Entity and relation labels
(their ids are positions) are stored in the dataset metadata; `index` is a triple's position in
its file (TFDS stores examples in hashed order).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from jaxemb.data.builders.kg_triples import parse

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
VENDORED = ("nations", "umls", "kinships")
# TFDS split name -> file stem.
TFDS_SPLITS = {"train": "train", "validation": "valid", "test": "test"}

_DESCRIPTION = """\
Link-prediction triples (head, relation, tail) as integer ids, with the entity and relation
labels in the metadata (`entities`, `relations`: id = position). Ids follow PyKEEN: labels of
the training split, sorted. Validation/test triples with labels unseen in training are errors.
"""

_CITATION = """\
@inproceedings{kok2007spi,
  author = {Kok, Stanley and Domingos, Pedro},
  title = {Statistical Predicate Invention},
  booktitle = {ICML},
  year = {2007},
}
"""


@dataclasses.dataclass(eq=False)
class KgTriplesConfig(tfds.core.BuilderConfig):
  """One graph: the directory holding its train/valid/test files."""
  directory: str = ""


def directory_config(directory: str) -> KgTriplesConfig:
  """A config for the user's directory of `train/valid/test.txt` (name from path + contents)."""
  directory = os.path.abspath(directory)
  digest = hashlib.sha256(directory.encode())
  for path in parse.split_paths(directory).values():
    with open(path, "rb") as f:
      digest.update(hashlib.sha256(f.read()).digest())
  name = "custom_" + digest.hexdigest()[:12]
  return KgTriplesConfig(name=name, directory=directory,
                         description=f"Triples from {directory}")


class KgTriples(tfds.core.GeneratorBasedBuilder):
  """Knowledge-graph triples from label files."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Nations, UMLS, Kinships (PyKEEN 1.11.1 splits); user directories.",
                   "1.1.0": "`index` feature: a triple's position in its file."}
  BUILDER_CONFIGS = [
      KgTriplesConfig(name=n, directory=os.path.join(DATA_DIR, n),
                      description=f"{n} as in the PyKEEN 1.11.1 wheel") for n in VENDORED]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict(
            {"index": np.int64, "head": np.int64, "relation": np.int64, "tail": np.int64}),
        supervised_keys=None,
        homepage="https://github.com/pykeen/pykeen",
        citation=_CITATION,
        license="See jaxemb/data/builders/kg_triples/PROVENANCE.md",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing is downloaded: the files are local
    indexed = parse.index_directory(self.builder_config.directory)
    self.info.metadata.update(entities=indexed.entities, relations=indexed.relations)
    return {name: self._generate_examples(indexed.splits[stem])
            for name, stem in TFDS_SPLITS.items()}

  def _generate_examples(self, triples: np.ndarray) -> Iterator[tuple[int, dict]]:
    for i, (h, r, t) in enumerate(triples):
      yield i, {"index": i, "head": int(h), "relation": int(r), "tail": int(t)}
