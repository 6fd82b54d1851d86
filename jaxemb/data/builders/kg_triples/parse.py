"""Reading `train/valid/test` label-triple files and mapping labels to ids (no TFDS needed).

A triples file has one `head<TAB>relation<TAB>tail` per line (PyKEEN's format); empty lines
are skipped. Ids are PyKEEN's: entities and relations of the *training* file, sorted by label,
numbered from 0. A validation or test triple whose entity or relation is not in the training
file is an error (PyKEEN would silently drop it), naming the file and line.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

SPLITS = ("train", "valid", "test")


def read_triples(path: str) -> list[tuple[int, str, str, str]]:
  """[(line number, head, relation, tail)]; ValueError naming file and line for a bad line."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      line = line.rstrip("\r\n")
      if not line.strip():
        continue
      parts = line.split("\t")
      if len(parts) != 3:
        raise ValueError(f"{path}:{number}: expected 3 tab-separated columns (head, relation, "
                         f"tail), got {len(parts)}: {line[:80]!r}")
      if any(not p.strip() for p in parts):
        raise ValueError(f"{path}:{number}: empty head, relation or tail: {line[:80]!r}")
      rows.append((number, parts[0], parts[1], parts[2]))
  if not rows:
    raise ValueError(f"{path}: no triples")
  return rows


@dataclasses.dataclass
class IndexedTriples:
  """Labels and id triples `[N, 3]` (head, relation, tail) of each split."""
  entities: list[str]
  relations: list[str]
  splits: dict[str, np.ndarray]


def split_paths(directory: str) -> dict[str, str]:
  """{split: path} of `directory/{train,valid,test}.txt` (also accepts `.tsv`)."""
  out = {}
  for split in SPLITS:
    for ext in (".txt", ".tsv"):
      path = os.path.join(directory, split + ext)
      if os.path.exists(path):
        out[split] = path
        break
    else:
      raise ValueError(f"{directory}: missing {split}.txt (or {split}.tsv); a triples directory "
                       f"holds {', '.join(s + '.txt' for s in SPLITS)}")
  return out


def index_directory(directory: str) -> IndexedTriples:
  """Reads and indexes the three split files of `directory`."""
  paths = split_paths(directory)
  rows = {split: read_triples(path) for split, path in paths.items()}
  entities = sorted({x for _, h, _, t in rows["train"] for x in (h, t)})
  relations = sorted({r for _, _, r, _ in rows["train"]})
  ent_id = {e: i for i, e in enumerate(entities)}
  rel_id = {r: i for i, r in enumerate(relations)}
  splits = {}
  for split, items in rows.items():
    out = np.empty((len(items), 3), np.int64)
    for i, (number, h, r, t) in enumerate(items):
      for label, table, kind in ((h, ent_id, "entity"), (r, rel_id, "relation"),
                                 (t, ent_id, "entity")):
        if label not in table:
          raise ValueError(f"{paths[split]}:{number}: {kind} {label!r} does not occur in the "
                           f"training triples {paths['train']}")
      out[i] = (ent_id[h], rel_id[r], ent_id[t])
    splits[split] = out
  return IndexedTriples(entities, relations, splits)
