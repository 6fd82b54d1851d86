"""Training datasets by name: the (query, code) pairs reader shared by the stdlib corpora and
the "concat" union of several datasets."""

import numpy as np
import pytest

from jaxemb.data import code_search, registry
from tiny_tokenizer import tiny_model


def test_concat_source_reads_the_parts_one_after_another():
  source = registry.ConcatSource([[{"i": 0}, {"i": 1}], [], [{"i": 2}, {"i": 3}, {"i": 4}]])
  assert len(source) == 5
  assert [source[k]["i"] for k in range(5)] == [0, 1, 2, 3, 4]
  with pytest.raises(IndexError, match="index 5 out of range for 5 rows"):
    source[5]


def test_concat_dataset_unions_parts_of_one_format():
  part = dict(name="synthetic_pairs", num_examples=6, seq_len=8, vocab_size=32)
  source, transform = registry.make_dataset(dict(name="concat", parts=[
      dict(part, seed=1), dict(part, seed=1, num_examples=6)]), None)
  assert len(source) == 12 and transform is None
  np.testing.assert_array_equal(source[7]["query_ids"], source[1]["query_ids"])  # same seed
  with pytest.raises(ValueError, match="same options apart from"):
    registry.make_dataset(dict(name="concat", parts=[part, dict(part, seq_len=16)]), None)
  with pytest.raises(ValueError, match="non-empty list"):
    registry.make_dataset(dict(name="concat", parts=[]), None)


def test_pairs_dataset_reads_rows_of_any_corpus_with_query_and_code():
  rows = {"train": [{"query": b"add two numbers", "code": b"def add(a, b):\n  return a + b"},
                    {"query": b"negate", "code": b"def neg(a):\n  return -a"}]}
  source, transform = code_search.pairs_dataset(
      "toy", lambda split, data_dir: rows[split], dict(split="train", query_lengths=(8,),
                                                       code_lengths=(16,)), tiny_model())
  assert len(source) == 2 and source[1]["query"] == b"negate"
  batch = transform({k: np.stack([source[i][k] for i in range(2)]) for k in ("query", "code")})
  assert batch["query_ids"].shape == (2, 8) and batch["doc_ids"].shape == (2, 16)
  with pytest.raises(ValueError, match="unknown toy option"):
    code_search.pairs_dataset("toy", None, dict(lengths=3), tiny_model())
  with pytest.raises(ValueError, match="the toy dataset needs a tokenizer"):
    code_search.pairs_dataset("toy", None, {}, None)
  assert "stdlib_modules" in registry.DATASETS and "concat" in registry.DATASETS
