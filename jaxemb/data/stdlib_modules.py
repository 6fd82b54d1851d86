"""The long-document module-search task "stdlib_modules" (`jaxemb eval --task
stdlib_modules:test`): every module docstring of a split is a query, every module source of that
split the corpus (up to ~4k tokens each), and the query's own module its one relevant document;
metrics as `jaxemb.evaluate.retrieval` (nDCG@10, ...), baseline "bm25" (lexical). Also a
training dataset of (docstring, source) pairs (`config.data.name = "stdlib_modules"`)."""

from __future__ import annotations

import functools
from typing import Any

from jaxemb.data import code_search
from jaxemb.data.builders import stdlib_modules as corpus_builder
from jaxemb.evaluate.registry import Task

NAME = "stdlib_modules"


@functools.lru_cache(maxsize=8)
def retrieval_data(split: str, data_dir: str | None = None) -> dict[str, Any]:
  """{queries, corpus, relevant} of `split`: query i's relevant document is module i."""
  return code_search.pairs_retrieval_data(*code_search.read_pairs(corpus_builder.load, split,
                                                                 data_dir))


# Retrieval metrics of `embed_fn` on `retrieval_data`.
evaluate_data = code_search.evaluate_pairs


TASK = Task(NAME, load=retrieval_data, evaluate=evaluate_data,
            baselines={"bm25": ("BM25 (lexical)", code_search.bm25_data_metrics)})


def train_dataset(options: dict, text_model):
  """`config.data.name = "stdlib_modules"`: (module docstring, module source) pairs of a split
  with the code-search dataset's options and transform (sources truncated at the last
  `code_lengths`)."""
  return code_search.pairs_dataset(NAME, corpus_builder.load, options, text_model)
