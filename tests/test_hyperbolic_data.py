"""WordNet closures: the parser on a hand-made database, the shipped mammal closure, the builder."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxemb.data import hierarchy

# A made-up WordNet in the real file formats. Graph (hypernym arrows point up):
#   entity(1) <- animal(2) <- dog(3) <- puppy(5);  animal(2) <- cat(4)
#   instance: Rex(6) --@i--> dog(3);  "dog" has a second sense (7, a verb-like noun) so the
#   sense number of synset 7 is 02; synset 4's first lemma is capitalised ("Cat").
_DATA = """\
  1 This is a licence header line, skipped.
00000001 03 n 01 entity 0 000 | that which is
00000002 05 n 02 animal 0 beast 0 002 @ 00000001 n 0000 ~ 00000003 n 0000 | a living thing
00000003 05 n 01 dog 0 003 @ 00000002 n 0000 ~ 00000005 n 0000 ;c 00000099 v 0000 | a canine
00000004 05 n 01 Cat 0 001 @ 00000002 n 0000 | a feline
00000005 05 n 01 puppy 0 001 @ 00000003 n 0000 | a young dog
00000006 18 n 01 Rex 0 001 @i 00000003 n 0000 | a famous dog
00000007 04 n 01 dog 1 001 @ 00000001 n 0000 | a second sense of dog
"""
_INDEX = """\
  1 licence header
animal n 1 1 @ 1 0 00000002
beast n 1 1 @ 1 0 00000002
cat n 1 1 @ 1 0 00000004
dog n 2 2 @ ~ 2 1 00000003 00000007
entity n 1 1 ~ 1 0 00000001
puppy n 1 1 @ 1 0 00000005
rex n 1 1 @i 1 0 00000006
"""


def _fake_wordnet(tmp_path):
  (tmp_path / "data.noun").write_text(_DATA)
  (tmp_path / "index.noun").write_text(_INDEX)
  return str(tmp_path)


def test_parser_names_and_closure_on_a_made_up_database(tmp_path):
  syn = hierarchy.read_nouns(_fake_wordnet(tmp_path))
  assert {s.name for s in syn.values()} == {
      "entity.n.01", "animal.n.01", "dog.n.01", "cat.n.01", "puppy.n.01", "rex.n.01",
      "dog.n.02"}
  assert syn[6].instance_hypernyms == (3,) and syn[6].hypernyms == ()
  assert syn[3].hypernyms == (2,)  # the verb pointer (;c ... v) is not a hypernym
  edges = hierarchy.noun_closure(syn)
  # Brute force: walk every upward path by hand.
  want = {("animal.n.01", "entity.n.01"), ("dog.n.01", "animal.n.01"),
          ("dog.n.01", "entity.n.01"), ("cat.n.01", "animal.n.01"), ("cat.n.01", "entity.n.01"),
          ("puppy.n.01", "dog.n.01"), ("puppy.n.01", "animal.n.01"),
          ("puppy.n.01", "entity.n.01"), ("rex.n.01", "dog.n.01"), ("rex.n.01", "animal.n.01"),
          ("rex.n.01", "entity.n.01"), ("dog.n.02", "entity.n.01")}
  assert edges == want
  sub = hierarchy.subtree_closure(edges, "animal.n.01", exclude=(r"^rex.n.01",))
  assert sub == {e for e in want if e[1] != "entity.n.01" and e[0] != "rex.n.01"
                 and e[0] != "dog.n.02"}
  g = hierarchy.to_graph(sub)
  assert list(g.names) == sorted({n for e in sub for n in e})
  assert {(g.names[a], g.names[b]) for a, b in g.edges} == sub


def test_an_instance_of_an_instance_inherits_the_chain(tmp_path):
  # As WordNet's Agdistis --@i--> Rhea --@i--> titaness: nltk's closure over instance
  # hypernyms follows the chain (the reference's 468 edges that a one-step reading misses).
  (tmp_path / "data.noun").write_text(
      "00000001 03 n 01 deity 0 000 | a god\n"
      "00000002 03 n 01 titaness 0 001 @ 00000001 n 0000 | a female titan\n"
      "00000003 18 n 01 Rhea 0 001 @i 00000002 n 0000 | a titaness\n"
      "00000004 18 n 01 Agdistis 0 001 @i 00000003 n 0000 | an epithet for Rhea\n")
  (tmp_path / "index.noun").write_text(
      "agdistis n 1 1 @i 1 0 00000004\ndeity n 1 1 ~ 1 0 00000001\n"
      "rhea n 1 1 @i 1 0 00000003\ntitaness n 1 1 @ 1 0 00000002\n")
  edges = hierarchy.noun_closure(hierarchy.read_nouns(str(tmp_path)))
  assert edges == {("titaness.n.01", "deity.n.01"), ("rhea.n.01", "titaness.n.01"),
                   ("rhea.n.01", "deity.n.01"), ("agdistis.n.01", "rhea.n.01"),
                   ("agdistis.n.01", "titaness.n.01"), ("agdistis.n.01", "deity.n.01")}


def test_bad_inputs(tmp_path):
  with pytest.raises(ValueError, match="wordnet-base"):
    hierarchy.read_nouns(str(tmp_path))
  with pytest.raises(ValueError, match="no hyponyms"):
    hierarchy.subtree_closure({("a", "b")}, "a")
  bad = tmp_path / "bad.tsv"
  bad.write_text("a\tb\tc\n")
  with pytest.raises(ValueError, match="line 1"):
    hierarchy.read_closure(str(bad))


def test_shipped_mammal_closure_is_the_published_one(tmp_path):
  edges = hierarchy.load_mammals()
  nodes = {n for e in edges for n in e}
  assert (len(nodes), len(edges)) == (1180, 6540)
  # Every node but the root is a mammal; the closure is transitive.
  assert {a for a, b in edges if b == hierarchy.MAMMAL} == nodes - {hierarchy.MAMMAL}
  up: dict[str, set[str]] = {}
  for a, b in edges:
    up.setdefault(a, set()).add(b)
  for a, parents in up.items():
    for b in parents:
      assert up.get(b, set()) <= parents, (a, b)
  # The written file reads back identically (and is byte-stable).
  path = str(tmp_path / "m.tsv.gz")
  hierarchy.write_closure(edges, path)
  assert hierarchy.read_closure(path) == edges
  shipped = os.path.join(os.path.dirname(hierarchy.__file__), "wordnet_mammal_closure.tsv.gz")
  assert open(path, "rb").read() == open(shipped, "rb").read()


@pytest.mark.skipif(not os.path.isfile("/usr/share/wordnet/data.noun"),
                    reason="WordNet 3.0 database not installed (apt-get install wordnet-base)")
def test_rebuilt_from_wordnet_equals_shipped_file():
  nouns = hierarchy.noun_closure(hierarchy.read_nouns())
  # The reference's transitive_closure.py run by nltk on the same files
  # (tests/data/make_nltk_noun_closure.py): 743,086 edges over 82,115 nodes.
  assert (len({n for e in nouns for n in e}), len(nouns)) == (82115, 743086)
  assert hierarchy.mammal_closure(nouns) == hierarchy.load_mammals()


def test_tfds_builder_mammals(tmp_path):
  from jaxemb.data.builders import wordnet_closure as wc
  g = wc.graph("mammals", data_dir=str(tmp_path))
  ref = hierarchy.to_graph(hierarchy.load_mammals())
  assert g.names == ref.names
  np.testing.assert_array_equal(g.edges, ref.edges)
  src = wc.load("mammals", data_dir=str(tmp_path))
  ex = src[0]
  assert g.names[ex["child_id"]] == ex["child"].decode()
  with pytest.raises(ValueError, match="config must be one of"):
    wc.builder("birds", data_dir=str(tmp_path))


def test_edge_chunks_cover_each_epoch_once_and_resume():
  edges = np.stack([np.arange(10), np.arange(10) + 100], 1)
  src = hierarchy.EdgeChunks(edges, 4, seed=3, epochs=3)
  assert len(src) == 8  # ceil(30 / 4)
  stream = np.concatenate([src[j]["edge"] for j in range(len(src))])[:30]
  for e in range(3):
    assert sorted(stream[10 * e:10 * (e + 1), 0].tolist()) == list(range(10))
  assert not np.array_equal(stream[:10], stream[10:20])  # reshuffled per epoch
  again = hierarchy.EdgeChunks(edges, 4, seed=3, epochs=3)
  np.testing.assert_array_equal(again[5]["edge"], src[5]["edge"])  # pure function of (seed, j)
  with pytest.raises(IndexError):
    src[8]
  with pytest.raises(ValueError, match=r"edge rows must be a non-empty \[N, 2\] array"):
    hierarchy.EdgeChunks(np.zeros((3, 3)), 2, seed=0)
