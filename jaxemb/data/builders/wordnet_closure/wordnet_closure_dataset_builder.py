"""TFDS builder: WordNet noun hypernym transitive closures (Nickel & Kiela 2017).

Configs:
  mammals: the filtered mammal.n.01 closure (1,180 nodes, 6,540 edges) from the file shipped
    in the package (`jaxemb.data.hierarchy.load_mammals`); no WordNet install needed.
  nouns: the full noun closure (82,115 nodes), built from the WordNet 3.0 database at
    `$WORDNET_DIR` or /usr/share/wordnet (Debian package wordnet-base).

One split, "train": the reconstruction task trains and evaluates on the same closure. Each
example is one edge: `child` (hyponym) and `parent` (hypernym) synset names and their ids,
where ids index the sorted node names (`metadata["num_nodes"]`; `hierarchy.to_graph`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from jaxemb.data import hierarchy

_DESCRIPTION = __doc__

_CITATION = """\
@inproceedings{nickel2017poincare,
  title = {Poincar\\'e Embeddings for Learning Hierarchical Representations},
  author = {Nickel, Maximilian and Kiela, Douwe},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2017}
}
@book{miller1998wordnet, title = {WordNet: An Electronic Lexical Database},
  editor = {Fellbaum, Christiane}, publisher = {MIT Press}, year = {1998}}
"""

_LICENSE = ("WordNet 3.0 licence (Princeton University), see "
            "jaxemb/data/wordnet_mammal_closure.LICENSE and "
            "https://wordnet.princeton.edu/license-and-commercial-use")


def wordnet_dir() -> str:
  """`$WORDNET_DIR` if set, else /usr/share/wordnet."""
  return os.environ.get("WORDNET_DIR") or hierarchy.DEFAULT_WORDNET_DIR


@dataclasses.dataclass(eq=False)
class WordnetClosureConfig(tfds.core.BuilderConfig):
  """`source`: "shipped" (the package's mammal file) or "wordnet" (the database files)."""
  source: str = "shipped"


class WordnetClosure(tfds.core.GeneratorBasedBuilder):
  """Hypernym transitive closures of WordNet 3.0 nouns, one example per (child, parent)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "mammals (shipped) and nouns (from /usr/share/wordnet)."}
  BUILDER_CONFIGS = [
      WordnetClosureConfig(name="mammals", source="shipped",
                           description="Filtered mammal.n.01 closure, 6,540 edges."),
      WordnetClosureConfig(name="nouns", source="wordnet",
                           description="Full noun closure from the WordNet 3.0 database."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "child": tfds.features.Text(), "parent": tfds.features.Text(),
            "child_id": np.int32, "parent_id": np.int32,
        }),
        homepage="https://wordnet.princeton.edu/",
        citation=_CITATION,
        license=_LICENSE,
        metadata=tfds.core.MetadataDict(),
    )

  def _edges(self) -> set[tuple[str, str]]:
    if self.builder_config.source == "shipped":
      return hierarchy.load_mammals()
    return hierarchy.noun_closure(hierarchy.read_nouns(wordnet_dir()))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing is downloaded
    graph = hierarchy.to_graph(self._edges())
    self.info.metadata.update(num_nodes=graph.num_nodes, num_edges=int(len(graph.edges)))
    return {"train": self._generate_examples(graph)}

  def _generate_examples(self, graph: hierarchy.Graph) -> Iterator[tuple[int, dict]]:
    for k, (c, p) in enumerate(graph.edges):
      yield k, {"child": graph.names[c], "parent": graph.names[p],
                "child_id": int(c), "parent_id": int(p)}
