"""WordNet noun hierarchies as transitive closures (the data of Nickel & Kiela 2017).

Reads the WordNet 3.0 database files (`data.noun`, `index.noun`; Debian `wordnet-base`
installs them at /usr/share/wordnet) directly, without nltk, and names synsets as nltk does
(`<first lemma, lower case>.n.<sense number>`), so the closures match those of
facebookresearch/poincare-embeddings' `wordnet/transitive_closure.py`:

    edges = noun_closure(read_nouns())        # {(hyponym, hypernym)}, 743,086 edges
    mammals = mammal_closure(edges)           # 6,540 edges over 1,180 nodes

The mammal closure also ships with the package (`load_mammals()`, derived from WordNet 3.0;
licence and provenance in `jaxemb/data/wordnet_mammal_closure.LICENSE`), so it needs no
WordNet install.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import importlib.resources
import io
import os
import re
from collections.abc import Iterable

import numpy as np

from jaxemb.data import pipeline

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
MAMMAL = "mammal.n.01"

# facebookresearch/poincare-embeddings wordnet/mammals_filter.txt: patterns of generic or
# non-taxonomic synsets. The reference applies them with pandas `str.match` to "id1 id2", i.e.
# `re.match`, anchored at the start; we do the same so the closure is the published one.
MAMMAL_FILTER = (
    r"\sliving_thing.n.01", r"\sobject.n.01", r"\sorganism.n.01", r"\sanimal.n.01",
    r"\sentity.n.01", r"\sphysical_entity.n.01", r"\swhole.n.02", r"\svertebrate.n.01",
    r"\schordate.n.01", r"\sbeast_of_burden.n.01", r"\swork_animal.n.01", r"\sfemale.n.01",
    r"\sfissipedia.n.01", r"\spup.n.01", r"\sabstraction.n.06", r"\sgroup.n.01",
    r"^tusker.n.01", r"^female_mammal.n.01", r"\scub.n.03", r"\syoung.n.01",
    r"\syoung_mammal.n.01", r"\sdomestic_animal.n.01", r"\sracer.n.03", r"\smale.n.01",
)

_SHIPPED = "wordnet_mammal_closure.tsv.gz"


@dataclasses.dataclass(frozen=True)
class Synset:
  """One noun synset: its nltk-style name and the offsets of its (instance) hypernyms."""
  name: str
  hypernyms: tuple[int, ...]
  instance_hypernyms: tuple[int, ...]


def _check_dir(wordnet_dir: str) -> None:
  for f in ("data.noun", "index.noun"):
    if not os.path.isfile(os.path.join(wordnet_dir, f)):
      raise ValueError(
          f"WordNet database file {f!r} not found in {wordnet_dir!r}; install the Debian "
          f"package wordnet-base (apt-get install wordnet-base) or pass wordnet_dir")


def read_nouns(wordnet_dir: str = DEFAULT_WORDNET_DIR) -> dict[int, Synset]:
  """All noun synsets of a WordNet 3.0 database directory, by byte offset."""
  _check_dir(wordnet_dir)
  senses: dict[str, list[int]] = {}
  with open(os.path.join(wordnet_dir, "index.noun"), encoding="utf-8") as f:
    for line in f:
      if line.startswith("  "):  # licence header
        continue
      tok = line.split()
      lemma, p_cnt = tok[0], int(tok[3])
      # lemma pos synset_cnt p_cnt [ptr_symbol]*p_cnt sense_cnt tagsense_cnt offset*
      senses[lemma] = [int(o) for o in tok[6 + p_cnt:]]
  synsets: dict[int, Synset] = {}
  with open(os.path.join(wordnet_dir, "data.noun"), encoding="utf-8") as f:
    for line in f:
      if line.startswith("  "):
        continue
      tok = line.split(" | ", 1)[0].split()
      offset, w_cnt = int(tok[0]), int(tok[3], 16)
      first = tok[4].lower()
      i = 4 + 2 * w_cnt
      p_cnt = int(tok[i])
      hyper, inst = [], []
      for j in range(p_cnt):
        symbol, target, pos = tok[i + 1 + 4 * j: i + 4 + 4 * j]
        if pos != "n":
          continue
        if symbol == "@":
          hyper.append(int(target))
        elif symbol == "@i":
          inst.append(int(target))
      try:
        sense = senses[first].index(offset) + 1
      except (KeyError, ValueError):
        raise ValueError(f"synset {offset} ({first}) is missing from index.noun in "
                         f"{wordnet_dir!r}: not a WordNet 3.0 database?") from None
      synsets[offset] = Synset(f"{first}.n.{sense:02d}", tuple(hyper), tuple(inst))
  return synsets


def _ancestors(synsets: dict[int, Synset], start: Iterable[int],
               cache: dict[int, frozenset[int]]) -> frozenset[int]:
  """All hypernym ancestors (transitively, regular hypernyms only) of the `start` synsets."""
  out: set[int] = set()
  for s in start:
    if s not in cache:
      # Iterative DFS post-order: WordNet's hypernym graph is a DAG ~20 levels deep.
      stack = [(s, False)]
      while stack:
        node, done = stack.pop()
        if node in cache:
          continue
        parents = synsets[node].hypernyms
        if done:
          acc: set[int] = set(parents)
          for p in parents:
            acc |= cache[p]
          cache[node] = frozenset(acc)
        else:
          stack.append((node, True))
          stack.extend((p, False) for p in parents if p not in cache)
    out |= cache[s]
  return frozenset(out)


def _instance_classes(synsets: dict[int, Synset], off: int) -> set[int]:
  """The transitive closure of `off`'s instance hypernyms: an instance can be an instance of
  an instance (Agdistis -> Rhea -> titaness; 468 closure edges in WordNet 3.0 hang on such
  chains), which nltk's `instance.closure(instance_hypernyms)` follows."""
  out: set[int] = set()
  stack = list(synsets[off].instance_hypernyms)
  while stack:
    s = stack.pop()
    if s not in out:
      out.add(s)
      stack.extend(synsets[s].instance_hypernyms)
  return out


def noun_closure(synsets: dict[int, Synset]) -> set[tuple[str, str]]:
  """{(hyponym, hypernym)}: every synset to all its hypernym ancestors, plus every instance
  to the closure of its instance hypernyms and their ancestors (as the reference
  `transitive_closure.py`)."""
  cache: dict[int, frozenset[int]] = {}
  edges: set[tuple[str, str]] = set()
  for off, syn in synsets.items():
    for a in _ancestors(synsets, [off], cache):
      edges.add((syn.name, synsets[a].name))
    if syn.instance_hypernyms:
      # nltk's instance_hypernyms closure, then the regular hypernyms of each of them.
      classes = _instance_classes(synsets, off)
      for a in classes | _ancestors(synsets, classes, cache):
        edges.add((syn.name, synsets[a].name))
  return edges


def subtree_closure(edges: Iterable[tuple[str, str]], root: str,
                    exclude: Iterable[str] = ()) -> set[tuple[str, str]]:
  """The closure restricted to `root` and its descendants, minus edges whose "child parent"
  string `re.match`es one of the `exclude` patterns."""
  edges = set(edges)
  nodes = {a for a, b in edges if b == root} | {root}
  if len(nodes) == 1:
    raise ValueError(f"root {root!r} has no hyponyms in the closure")
  pattern = re.compile("(" + "|".join(exclude) + ")") if exclude else None
  return {(a, b) for a, b in edges if a in nodes and b in nodes
          and not (pattern and pattern.match(f"{a} {b}"))}


def mammal_closure(edges: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
  """The filtered mammal.n.01 closure of Nickel & Kiela (1,180 nodes, 6,540 edges)."""
  return subtree_closure(edges, MAMMAL, MAMMAL_FILTER)


def write_closure(edges: Iterable[tuple[str, str]], path: str) -> None:
  """Sorted "hyponym<TAB>hypernym" lines, gzip-compressed when `path` ends in .gz."""
  text = "".join(f"{a}\t{b}\n" for a, b in sorted(edges))
  data = text.encode("utf-8")
  if path.endswith(".gz"):
    data = gzip.compress(data, mtime=0)  # mtime 0: byte-identical rebuilds
  with open(path, "wb") as f:
    f.write(data)


def read_closure(path_or_text: str | bytes) -> set[tuple[str, str]]:
  """Edges from a file written by `write_closure` (or the file's bytes)."""
  if isinstance(path_or_text, str):
    with open(path_or_text, "rb") as f:
      path_or_text = f.read()
  if path_or_text[:2] == b"\x1f\x8b":
    path_or_text = gzip.decompress(path_or_text)
  rows = csv.reader(io.StringIO(path_or_text.decode("utf-8")), delimiter="\t")
  edges = set()
  for i, row in enumerate(rows):
    if len(row) != 2:
      raise ValueError(f"closure line {i + 1}: expected 'hyponym<TAB>hypernym', got {row!r}")
    edges.add((row[0], row[1]))
  return edges


def load_mammals() -> set[tuple[str, str]]:
  """The shipped mammal closure (derived from WordNet 3.0; no WordNet install needed)."""
  data = importlib.resources.files("jaxemb.data").joinpath(_SHIPPED).read_bytes()
  return read_closure(data)


@dataclasses.dataclass(frozen=True)
class Graph:
  """A closure as integer arrays: `edges[k] = (child, parent)` ids into `names` (sorted)."""
  names: tuple[str, ...]
  edges: np.ndarray  # [E, 2] int32

  @property
  def num_nodes(self) -> int:
    return len(self.names)


def to_graph(edges: Iterable[tuple[str, str]]) -> Graph:
  """Ids by sorted name; edges sorted, so the same closure always gives the same arrays."""
  edges = sorted(set(edges))
  names = tuple(sorted({n for e in edges for n in e}))
  index = {n: i for i, n in enumerate(names)}
  arr = np.asarray([(index[a], index[b]) for a, b in edges], np.int32).reshape(-1, 2)
  return Graph(names, arr)


# Training edges as rows of `chunk` edges ({"edge": int32 [chunk, 2]}), reshuffled every epoch,
# random access (see `jaxemb.data.pipeline.ShuffledChunks`).
EdgeChunks = functools.partial(pipeline.ShuffledChunks, key="edge", width=2)

def main(argv: list[str] | None = None) -> None:
  """`python -m jaxemb.data.hierarchy [--wordnet-dir DIR] OUT.tsv.gz`: (re)writes the shipped
  mammal closure from a WordNet 3.0 database and prints its size."""
  import argparse
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("out")
  parser.add_argument("--wordnet-dir", default=DEFAULT_WORDNET_DIR)
  args = parser.parse_args(argv)
  mammals = mammal_closure(noun_closure(read_nouns(args.wordnet_dir)))
  write_closure(mammals, args.out)
  print(f"{args.out}: {len(mammals)} edges, {len({n for e in mammals for n in e})} nodes")


if __name__ == "__main__":
  main()
