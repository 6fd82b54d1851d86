"""The code -> code task "stdlib_test_continuation" (`jaxemb eval --task
stdlib_test_continuation:test`): the first half of every function of a split of the stdlib's
test suite is a query, every second half of that split the corpus, and the query's own second
half its one relevant document; metrics as `jaxemb.evaluate.retrieval`, baseline "bm25". Also a
training dataset of (first half, second half) pairs (`config.data.name =
"stdlib_test_continuation"`, the options of `jaxemb.data.code_search.pairs_dataset`). The
second task of the model-merging experiment (`configs/codesearch_merge.py`)."""

from __future__ import annotations

import functools
from typing import Any

from jaxemb.data import code_search
from jaxemb.data.builders import stdlib_test_continuation as corpus_builder
from jaxemb.evaluate.registry import Task

NAME = "stdlib_test_continuation"


@functools.lru_cache(maxsize=8)
def retrieval_data(split: str, data_dir: str | None = None) -> dict[str, Any]:
  """{queries, corpus, relevant} of `split`: query i's relevant document is second half i."""
  return code_search.pairs_retrieval_data(
      *code_search.read_pairs(corpus_builder.load, split, data_dir))


TASK = Task(NAME, load=retrieval_data, evaluate=code_search.evaluate_pairs,
            baselines={"bm25": ("BM25 (lexical)", code_search.bm25_data_metrics)})


def train_dataset(options: dict, text_model):
  """`config.data.name = "stdlib_test_continuation"`: (first half, second half) pairs."""
  return code_search.pairs_dataset(NAME, corpus_builder.load, options, text_model)
