"""Knowledge graphs as numpy id triples: vendored graphs or user directories (via TFDS), and
synthetic power-law graphs for scale tests.

    g = kg.load("umls")                 # or a directory of train/valid/test.txt label triples
    g.train, g.valid, g.test            # int32 [N, 3] (head, relation, tail)
    g.num_entities, g.entities[i]       # labels, id = position (PyKEEN's ids)
    kg.TripleSource(g.train)            # random-access training examples {"triple": [3]}
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from jaxemb.data import pipeline
from jaxemb.data.builders import kg_triples
from jaxemb.data.builders.kg_triples.parse import index_directory, read_triples

__all__ = ["Graph", "LCWA_TARGETS", "ShuffledChunks", "TripleSource", "index_directory", "lcwa_queries",
           "load", "read_triples", "synthetic", "write_directory"]


@dataclasses.dataclass
class Graph:
  """A graph's splits as int32 `[N, 3]` id triples plus its labels."""
  name: str
  entities: list[str]
  relations: list[str]
  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray

  @property
  def num_entities(self) -> int:
    return len(self.entities)

  @property
  def num_relations(self) -> int:
    return len(self.relations)

  def all_triples(self) -> np.ndarray:
    """train + valid + test: the filter of filtered evaluation."""
    return np.concatenate([self.train, self.valid, self.test])

  def split(self, name: str) -> np.ndarray:
    table = {"train": self.train, "valid": self.valid, "validation": self.valid,
             "test": self.test}
    if name not in table:
      raise ValueError(f"unknown split {name!r}; expected train, validation or test")
    return table[name]


def load(name_or_directory: str, data_dir: str | None = None) -> Graph:
  """A vendored graph ("nations", "umls", "kinships") or a triples directory, read through its
  array_record TFDS dataset (built on first use under `data_dir`)."""
  builder = kg_triples.builder(name_or_directory, data_dir)
  splits = {}
  for tfds_name, stem in kg_triples.TFDS_SPLITS.items():
    source = builder.as_data_source(tfds_name)
    rows = source.__getitems__(range(len(source)))
    table = np.array([(x["index"], x["head"], x["relation"], x["tail"]) for x in rows],
                     np.int64).reshape(-1, 4)
    # Back to file order (TFDS stores examples in hashed order).
    splits[stem] = table[np.argsort(table[:, 0]), 1:].astype(np.int32)
  meta = builder.info.metadata
  return Graph(builder.builder_config.name, list(meta["entities"]), list(meta["relations"]),
               splits["train"], splits["valid"], splits["test"])


def write_directory(graph: Graph, directory: str) -> str:
  """Writes `graph` as a triples directory that `load` reads: train.txt, valid.txt and test.txt
  of tab-separated labels. Returns the directory."""
  os.makedirs(directory, exist_ok=True)
  for name, triples in (("train", graph.train), ("valid", graph.valid), ("test", graph.test)):
    with open(os.path.join(directory, f"{name}.txt"), "w") as f:
      f.writelines(f"{graph.entities[h]}\t{graph.relations[r]}\t{graph.entities[t]}\n"
                   for h, r, t in triples)
  return directory


class TripleSource:
  """Random-access training examples `{"triple": int32 [3]}` over an id-triple array."""

  def __init__(self, triples: np.ndarray):
    triples = np.asarray(triples)
    if triples.ndim != 2 or triples.shape[1] != 3:
      raise ValueError(f"triples must have shape [N, 3], got {triples.shape}")
    self._triples = triples.astype(np.int32)

  def __len__(self) -> int:
    return len(self._triples)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"triple": self._triples[index]}


# Training triples as rows of `chunk` triples ({"triple": int32 [chunk, 3]}), reshuffled every
# epoch, random access (see `jaxemb.data.pipeline.ShuffledChunks`).
ShuffledChunks = functools.partial(pipeline.ShuffledChunks, key="triple", width=3)

LCWA_TARGETS = ("tail", "both")


def lcwa_queries(triples: np.ndarray, target: str = "tail") -> np.ndarray:
  """The unique 1-N training queries of id triples `[N, 3]` (PyKEEN's LCWA instances).

  Each row is `(side, entity, relation, answer_1, ..., answer_M)`: side 0 is the query
  (entity, relation, ?) whose answers are the tails of the training triples with that head and
  relation; side 1 (only with `target="both"`) is (?, relation, entity) with the heads as
  answers. Answers are sorted and padded with -1 to M, the most answers of any query. Rows are
  ordered by (side, entity, relation). PyKEEN's default LCWA target is the tail only.
  """
  if target not in LCWA_TARGETS:
    raise ValueError(f"LCWA target {target!r} is not one of {LCWA_TARGETS}")
  triples = np.asarray(triples, np.int64)
  if triples.ndim != 2 or triples.shape[1] != 3 or not len(triples):
    raise ValueError(f"triples must be a non-empty [N, 3] array, got {triples.shape}")
  sides = [(0, triples[:, [0, 1, 2]])]
  if target == "both":
    sides.append((1, triples[:, [2, 1, 0]]))
  groups = []
  for side, rows in sides:
    rows = np.unique(rows, axis=0)  # sorted by (entity, relation, answer)
    keys, start, count = np.unique(rows[:, :2], axis=0, return_index=True, return_counts=True)
    groups.append((side, keys, start, count, rows[:, 2]))
  width = max(int(g[3].max()) for g in groups)
  out = []
  for side, keys, start, count, answers in groups:
    block = np.full((len(keys), 3 + width), -1, np.int64)
    block[:, 0], block[:, 1:3] = side, keys
    # Answer j of query q sits at answers[start[q] + j]; scatter them into the padded columns.
    q = np.repeat(np.arange(len(keys)), count)
    j = np.arange(len(answers)) - np.repeat(start, count)
    block[q, 3 + j] = answers
    out.append(block)
  return np.concatenate(out).astype(np.int32)

def synthetic(num_entities: int, num_relations: int, num_triples: int, *, seed: int = 0,
              exponent: float = 1.0, valid_fraction: float = 0.01,
              test_fraction: float = 0.01) -> Graph:
  """A random graph with power-law (Zipf, `exponent`) entity degrees, split at random.

  Heads and tails are drawn independently with P(entity i) proportional to (i + 1)^-exponent
  (after a random permutation of ids), relations uniformly; duplicates are removed. Valid and
  test triples whose entities do not occur in train are moved to train, so every entity seen at
  evaluation was trained.
  """
  for name, value in (("num_entities", num_entities), ("num_relations", num_relations),
                      ("num_triples", num_triples)):
    if value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction < 1):
    raise ValueError(f"valid_fraction + test_fraction must be in [0, 1), got "
                     f"{valid_fraction} + {test_fraction}")
  rng = np.random.default_rng(seed)
  weights = (np.arange(1, num_entities + 1, dtype=np.float64)) ** -exponent
  cdf = np.cumsum(weights / weights.sum())
  perm = rng.permutation(num_entities)

  def draw(n):
    return perm[np.minimum(np.searchsorted(cdf, rng.random(n)), num_entities - 1)]

  triples = np.stack([draw(num_triples), rng.integers(0, num_relations, num_triples),
                      draw(num_triples)], axis=1).astype(np.int64)
  triples = np.unique(triples, axis=0)
  triples = triples[rng.permutation(len(triples))].astype(np.int32)
  n_valid, n_test = int(len(triples) * valid_fraction), int(len(triples) * test_fraction)
  held = triples[: n_valid + n_test]
  train = triples[n_valid + n_test:]
  seen = np.zeros(num_entities, bool)
  seen[train[:, 0]] = seen[train[:, 2]] = True
  ok = seen[held[:, 0]] & seen[held[:, 2]]
  train = np.concatenate([train, held[~ok]])
  held = held[ok]
  n_valid = min(n_valid, len(held))
  return Graph(f"synthetic_{num_entities}_{num_relations}_{num_triples}_{seed}",
               [f"e{i}" for i in range(num_entities)], [f"r{i}" for i in range(num_relations)],
               train, held[:n_valid], held[n_valid:])
