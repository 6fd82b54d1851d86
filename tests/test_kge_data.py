"""KG data: vendored graphs through the TFDS builder, user directories, bad files, synthetic."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxemb.data import kg
from jaxemb.data.builders import kg_triples

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _labels(path):
  return [tuple(line.rstrip("\n").split("\t")) for line in open(path) if line.strip()]


def test_vendored_nations_matches_files_and_pykeen_ids(data_dir):
  g = kg.load("nations", data_dir)
  assert (g.num_entities, g.num_relations) == (14, 55)
  assert (len(g.train), len(g.valid), len(g.test)) == (1592, 199, 201)
  assert g.entities == sorted(g.entities) and g.relations == sorted(g.relations)
  # Mapping the ids back gives the vendored label files line by line.
  for split, ids in (("train", g.train), ("valid", g.valid), ("test", g.test)):
    labels = _labels(os.path.join(kg_triples.DATA_DIR, "nations", f"{split}.txt"))
    back = [(g.entities[h], g.relations[r], g.entities[t]) for h, r, t in ids]
    assert back == labels
  assert g.train.dtype == np.int32 and g.all_triples().shape == (1992, 3)


def test_vendored_counts():
  # Straight from the files (no TFDS build, fast): the statistics PyKEEN documents.
  for name, want in (("umls", (135, 46, 5216, 652, 661)), ("kinships", (104, 25, 8544, 1068, 1074))):
    ix = kg.index_directory(os.path.join(kg_triples.DATA_DIR, name))
    got = (len(ix.entities), len(ix.relations), *(len(ix.splits[s]) for s in ("train", "valid", "test")))
    assert got == want


def _write(directory, files):
  os.makedirs(directory, exist_ok=True)
  for name, text in files.items():
    with open(os.path.join(directory, name), "w") as f:
      f.write(text)


def test_user_directory_builder(tmp_path, data_dir):
  d = str(tmp_path / "mine")
  _write(d, {"train.txt": "b\tlikes\ta\na\tlikes\tc\n\nc\thates\tb\n",
             "valid.txt": "a\thates\tb\n", "test.txt": "c\tlikes\ta\n"})
  g = kg.load(d, data_dir)
  assert g.entities == ["a", "b", "c"] and g.relations == ["hates", "likes"]
  np.testing.assert_array_equal(g.train, [[1, 1, 0], [0, 1, 2], [2, 0, 1]])
  np.testing.assert_array_equal(g.test, [[2, 1, 0]])
  assert g.name.startswith("custom_")


def test_bad_files_name_file_and_line(tmp_path):
  d = str(tmp_path / "bad")
  _write(d, {"train.txt": "a\tr\tb\na\tr\n", "valid.txt": "a\tr\tb\n", "test.txt": "a\tr\tb\n"})
  with pytest.raises(ValueError, match=r"train\.txt:2: expected 3 tab-separated columns"):
    kg.index_directory(d)
  _write(d, {"train.txt": "a\tr\tb\n", "test.txt": "a\tr\tb\nz\tr\ta\n"})
  with pytest.raises(ValueError, match=r"test\.txt:2: entity 'z' does not occur in the training"):
    kg.index_directory(d)
  _write(d, {"test.txt": "a\tq\tb\n"})
  with pytest.raises(ValueError, match=r"test\.txt:1: relation 'q'"):
    kg.index_directory(d)
  os.remove(os.path.join(d, "valid.txt"))
  with pytest.raises(ValueError, match="missing valid.txt"):
    kg.index_directory(d)
  with pytest.raises(ValueError, match="unknown graph"):
    kg_triples.builder("fb15k")


def test_triple_source():
  src = kg.TripleSource(np.array([[0, 1, 2], [3, 0, 1]]))
  assert len(src) == 2 and src[1]["triple"].tolist() == [3, 0, 1]
  with pytest.raises(ValueError, match=r"\[N, 3\]"):
    kg.TripleSource(np.zeros((2, 2)))


def test_synthetic_power_law_graph():
  g = kg.synthetic(2000, 7, 30000, seed=3, exponent=1.0)
  all_ = g.all_triples()
  assert len(np.unique(all_, axis=0)) == len(all_)  # no duplicates
  assert ((all_[:, [0, 2]] >= 0) & (all_[:, [0, 2]] < 2000)).all()
  seen = set(g.train[:, 0]) | set(g.train[:, 2])
  assert set(g.test[:, 0]) <= seen and set(g.valid[:, 2]) <= seen
  degree = np.sort(np.bincount(all_[:, [0, 2]].ravel(), minlength=2000))[::-1]
  # Zipf(1): the top entity has far more triples than the median one.
  assert degree[0] > 50 * max(degree[1000], 1)
  again = kg.synthetic(2000, 7, 30000, seed=3, exponent=1.0)
  np.testing.assert_array_equal(g.test, again.test)


def test_write_directory_round_trip(tmp_path, data_dir):
  g = kg.synthetic(30, 2, 200, seed=4, valid_fraction=0.1, test_fraction=0.1)
  back = kg.load(kg.write_directory(g, str(tmp_path / "g")), data_dir)
  labelled = lambda graph, t: [(graph.entities[h], graph.relations[r], graph.entities[x])
                               for h, r, x in t]
  for split in ("train", "valid", "test"):
    assert labelled(back, back.split(split)) == labelled(g, g.split(split))
