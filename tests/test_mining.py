"""Hard-negative mining: the false-negative filters on a hand-made case, mining vs a brute-force
sort, the dataset file round trip, and `jaxemb mine` on a tiny random model."""

import argparse
import json
import zlib

import numpy as np
import pytest
from flax import nnx

import jaxemb
from jaxemb import mining
from jaxemb.evaluate.registry import Task
from jaxemb.model import EmbeddingModel
from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder
from tiny_tokenizer import tiny_tokenizer


# One query, positive = doc 0 with score 0.80. Candidates in rank order:
#   doc 0 (0.80, the positive itself), doc 3 (0.79 > 0.95 * 0.8 = 0.76: false negative),
#   doc 5 (0.76 = the limit: kept, the rule is "above"), doc 1 (0.755 > 0.80 - 0.05: margin drops
#   it), doc 2 (0.70), doc 4 (0.10).
SCORES = np.array([[0.80, 0.79, 0.76, 0.755, 0.70, 0.10]], np.float32)
INDICES = np.array([[0, 3, 5, 1, 2, 4]])
POS = np.array([0.80], np.float32)


@pytest.mark.parametrize("filter,expected", [
    ("none", [3, 5, 1]), ("perc_pos", [5, 1, 2]), ("margin", [2, 4, -1])])
def test_false_negative_filters_on_a_hand_made_case(filter, expected):
  idx, scores = mining.select_negatives(SCORES, INDICES, POS, [[0]], 3, filter=filter)
  assert idx.tolist() == [expected]
  by_doc = dict(zip(INDICES[0].tolist(), SCORES[0].tolist()))
  for j, s in zip(idx[0], scores[0]):
    if j >= 0:
      assert s == pytest.approx(by_doc[int(j)])
    else:
      assert np.isnan(s)


def test_filter_threshold_and_extra_exclusions():
  # A looser fraction keeps doc 3; excluding doc 5 as a second positive removes it.
  idx, _ = mining.select_negatives(SCORES, INDICES, POS, [[0, 5]], 2, threshold=0.99)
  assert idx.tolist() == [[3, 1]]


def test_bad_filter_arguments():
  with pytest.raises(ValueError, match="filter='topk'"):
    mining.select_negatives(SCORES, INDICES, POS, [[0]], 2, filter="topk")
  with pytest.raises(ValueError, match="threshold=1.5"):
    mining.select_negatives(SCORES, INDICES, POS, [[0]], 2, threshold=1.5)
  emb = np.eye(4, dtype=np.float32)
  with pytest.raises(ValueError, match=r"k=4; expected an int in \[1, C=4\)"):
    mining.mine_embeddings(emb, emb, None, 4)
  with pytest.raises(ValueError, match=r"positives\[1\]=\[7\]"):
    mining.mine_embeddings(emb, emb, [[0], [7], [1], [2]], 1)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ref_mine(q, d, positives, k, filter, threshold=0.95, margin=0.05):
  """Brute force: score everything, sort (ties by lower index), filter, keep k."""
  out = []
  for i in range(len(q)):
    s = [float(np.dot(q[i].astype(np.float64), d[j])) for j in range(len(d))]
    pos = s[positives[i][0]]
    limit = {"none": np.inf, "perc_pos": threshold * pos, "margin": pos - margin}[filter]
    order = sorted(range(len(d)), key=lambda j: (-s[j], j))
    kept = [j for j in order if j not in positives[i] and s[j] <= limit][:k]
    out.append(kept + [-1] * (k - len(kept)))
  return out


# depth 6 < 5 negatives + positive + filtered ones: short rows are retried deeper.
@pytest.mark.parametrize("filter,depth", [("none", 40), ("perc_pos", 40), ("margin", 40),
                                          ("perc_pos", 6), ("margin", 6)])
def test_mine_embeddings_matches_brute_force(filter, depth, monkeypatch):
  calls = []
  top_k = mining.exact_top_k
  monkeypatch.setattr(mining, "exact_top_k", lambda q, c, k: calls.append(k) or top_k(q, c, k))
  rng = np.random.default_rng(0)
  d = _unit(rng.normal(size=(40, 8))).astype(np.float32)
  # Queries near their positive, and doc 1 a near-duplicate of doc 0 (a false negative).
  d[1] = _unit(d[0] + 0.05 * rng.normal(size=8))
  q = _unit(d[:10] + 0.6 * rng.normal(size=(10, 8))).astype(np.float32)
  positives = [[i] for i in range(10)]
  mined = mining.mine_embeddings(q, d, positives, 5, filter=filter, depth=depth)
  expected = ref_mine(q, d, positives, 5, filter)
  assert mined["negative_indices"].tolist() == expected
  assert all(j >= 0 for row in expected for j in row)
  assert calls == [40] if depth == 40 else calls[:2] == [6, 24]
  np.testing.assert_allclose(mined["positive_scores"],
                             np.einsum("qd,qd->q", q, d[:10]), rtol=1e-6)
  if filter == "perc_pos":
    assert 1 not in mined["negative_indices"][0]  # the near-duplicate is filtered out
  else:
    assert filter == "margin" or 1 in mined["negative_indices"][0]


def _embed_fn(texts):
  # Deterministic "embeddings" from the text: a seeded random direction per text.
  return np.stack([_unit(np.random.default_rng(zlib.crc32(t.encode())).normal(size=8))
                   for t in texts]).astype(np.float32)


def test_mine_write_read_and_source(tmp_path):
  queries = [f"q{i}" for i in range(12)]
  docs = [f"d{i}" for i in range(20)]
  mined = mining.mine(_embed_fn, queries, docs, 3, filter="none")
  ref = mining.mine_embeddings(_embed_fn(queries), _embed_fn(docs), None, 3, filter="none")
  assert mined["negative_indices"].tolist() == ref["negative_indices"].tolist()
  # One row left with a single negative, one with none, to check the source's padding.
  mined["negative_indices"][1, 1:] = -1
  mined["negative_indices"][2, :] = -1
  path = mining.write_mined(tmp_path / "neg.jsonl", mined, queries, docs, k=3, filter="none")
  header, rows = mining.read_mined(path)
  assert header == {"jaxemb_mined": 1, "k": 3, "filter": "none"}
  assert len(rows) == 12 and rows[0]["query"] == "q0" and rows[0]["positive"] == "d0"
  assert rows[0]["negatives"] == [docs[j] for j in mined["negative_indices"][0]]
  assert rows[0]["negative_scores"] == pytest.approx(mined["negative_scores"][0].tolist())
  source = mining.MinedSource(path, num_negatives=3)
  assert len(source) == 12
  item = source[1]
  assert item["query"] == b"q1" and item["code"] == b"d1"
  assert item["negatives"].tolist() == [docs[mined["negative_indices"][1, 0]].encode()] * 3
  assert source[2]["negatives"].tolist() == source[3]["negatives"].tolist()
  (tmp_path / "bad.jsonl").write_text('{"query": "x"}\n')
  with pytest.raises(ValueError, match="header line"):
    mining.read_mined(tmp_path / "bad.jsonl")


def _tiny_model() -> EmbeddingModel:
  cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=1, num_heads=4,
                          intermediate_size=64, max_position_embeddings=16)
  rngs = nnx.Rngs(0)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs), Pooler("mean", 32, rngs=rngs),
                            normalize=True)
  return EmbeddingModel(module=module, tokenizer=tiny_tokenizer(), max_seq_length=16,
                        name="tiny")


def test_mine_cli(tmp_path, monkeypatch, capsys):
  model_dir = jaxemb.save_pretrained(_tiny_model(), tmp_path / "tiny")
  data = {"queries": [f"find {w}" for w in "abcdefghij"],
          "corpus": [f"def {w}{w}" for w in "abcdefghijklmnop"],
          "relevant": [{i} for i in range(10)]}
  task = Task(name="toy", load=lambda split, data_dir: data, evaluate=lambda e, d: {})
  from jaxemb import tasks
  monkeypatch.setattr(tasks, "parse", lambda spec, default_split="test": (task, "train"))
  parser = argparse.ArgumentParser()
  mining.add_mine_parser(parser.add_subparsers())
  out = tmp_path / "mined.jsonl"
  args = parser.parse_args(["mine", "--model", str(model_dir), "--task", "toy:train",
                            "--out", str(out), "--k", "4", "--filter", "margin", "--quiet"])
  args.func(args)
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert summary["queries"] == 10 and summary["k"] == 4
  header, rows = mining.read_mined(out)
  assert header["filter"] == "margin" and header["k"] == 4
  model = jaxemb.load_pretrained(model_dir)
  q = jaxemb.encode(model, data["queries"])
  d = jaxemb.encode(model, data["corpus"])
  expected = ref_mine(q, d, [[i] for i in range(10)], 4, "margin")
  assert [r["negative_indices"] for r in rows] == [[j for j in e if j >= 0] for e in expected]


@pytest.mark.slow  # two training steps of a tiny transformer through the loop: ~30 s of CPU
def test_mined_dataset_transform_and_training_run(tmp_path, monkeypatch):
  """A mined file read as a training dataset: neg_ids [B, K, L] reach the text_pairs loss."""
  from jaxemb.data import registry as data_registry
  from jaxemb.train import loop
  from jaxemb.train.config import base_config
  words = [a + b for a in "abcdefgh" for b in "xyz"]  # 24 distinct short "documents"
  queries, docs = [f"find {w}" for w in words], [f"def {w}" for w in words]
  path = mining.write_mined(tmp_path / "neg.jsonl",
                            mining.mine(_embed_fn, queries, docs, 2, filter="none"), queries, docs)
  model_dir = jaxemb.save_pretrained(_tiny_model(), tmp_path / "tiny")
  model = jaxemb.load_pretrained(model_dir)
  source, transform = mining.train_dataset(
      {"path": str(path), "num_negatives": 2, "query_lengths": (8,), "code_lengths": (8, 12)},
      model)
  batch = {key: np.stack([source[i][key] for i in range(4)]) for key in source[0]}
  out = transform(batch, 0)
  assert out["neg_ids"].shape[:2] == (4, 2) and out["neg_ids"].shape[2] in (8, 12)
  first = model.tokenizer.encode(batch["negatives"][0, 1].decode()).ids
  assert out["neg_ids"][0, 1, :len(first)].tolist() == first
  assert out["neg_mask"][0, 1].sum() == len(first)
  with pytest.raises(ValueError, match="config.data.path is required"):
    mining.train_dataset({}, model)

  monkeypatch.setitem(data_registry.DATASETS, "mined_negatives", "jaxemb.mining:train_dataset")
  c = base_config(recipe="text_pairs")
  c.model = dict(pretrained=str(model_dir), pooling="mean")
  c.data = dict(name="mined_negatives", path=str(path), num_negatives=2, query_lengths=(8,),
                code_lengths=(12,))
  c.objective = dict(name="info_nce", scale=20.0)
  c.batch_size, c.total_steps, c.log_every, c.checkpoint_every = 8, 2, 1, 2
  c.progress = False
  summary = loop.run(c, str(tmp_path / "run"))
  assert summary["step"] == 2 and np.isfinite(summary["metrics"]["loss"])
