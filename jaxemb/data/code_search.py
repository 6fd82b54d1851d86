"""The embedded code-search task: docstring -> code retrieval on the stdlib corpus.

  - training dataset "stdlib_code_search" (`config.data.name`, see `jaxemb.data.registry`):
    tokenised (query, code) pairs, `train_dataset`;
  - evaluation task "stdlib_code_search" (`TASK`, listed in `jaxemb.tasks`;
    `jaxemb eval --task stdlib_code_search:test`): every docstring of a split is a query, every
    code snippet of that split the corpus, and the query's own function is its one relevant
    document; baseline "bm25" (lexical).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import numpy as np

from jaxemb.data.builders import stdlib_code_search as corpus_builder
from jaxemb.encoding import pad_to_bucket
from jaxemb.evaluate.registry import Task
from jaxemb.evaluate import retrieval as retrieval_lib
from jaxemb.evaluate.quality import quality_metrics

NAME = "stdlib_code_search"


@functools.lru_cache(maxsize=8)
def load_split(split: str, data_dir: str | None = None) -> tuple[list[str], list[str]]:
  """(queries, codes) of a split as str lists (built into the data dir on first use)."""
  return read_pairs(corpus_builder.load, split, data_dir)


def read_pairs(load: Callable, split: str,
               data_dir: str | None = None) -> tuple[list[str], list[str]]:
  """(queries, codes) of a split of any corpus builder of (query, code) rows (`load`)."""
  source = load(split, data_dir)
  rows = [corpus_builder.decode(source[i]) for i in range(len(source))]
  return [r["query"] for r in rows], [r["code"] for r in rows]


def pairs_retrieval_data(queries: list[str], codes: list[str]) -> dict[str, Any]:
  """{queries, corpus, relevant} where query i's one relevant document is code i."""
  return {"queries": queries, "corpus": codes, "relevant": [{i} for i in range(len(queries))]}


def retrieval_data(split: str, data_dir: str | None = None) -> dict[str, Any]:
  """The retrieval evaluator's data for `split`: query i's relevant document is code i."""
  return pairs_retrieval_data(*load_split(split, data_dir))


# ---------------------------------------------------------------------------------------------
# Training data: tokenised pairs padded to a short ladder of lengths (few compiled shapes).
# ---------------------------------------------------------------------------------------------

def tokenized_pairs(tokenizer, *, query_lengths: tuple[int, ...], code_lengths: tuple[int, ...],
                    pad_id: int = 0) -> Callable[[dict], dict]:
  """Batch transform: {"query": bytes[B], "code": bytes[B], ...} -> padded ids and masks.

  Each side is truncated at the last length of its ladder and padded to the smallest ladder
  length that fits the batch's longest text.
  """
  def encode(texts, max_len):
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_len)
    return [e.ids for e in tokenizer.encode_batch(
        [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts])]

  def transform(batch: dict, index: int | None = None) -> dict:
    q_ids, q_mask = pad_to_bucket(encode(batch["query"], query_lengths[-1]), query_lengths, pad_id)
    c_ids, c_mask = pad_to_bucket(encode(batch["code"], code_lengths[-1]), code_lengths, pad_id)
    return {"query_ids": q_ids, "query_mask": q_mask, "doc_ids": c_ids, "doc_mask": c_mask}

  return transform


class TextPairs:
  """Random-access (query, code) pairs of a split, as numpy bytes (stackable into batches);
  `load(split, data_dir)` is the corpus builder's (this corpus's or another of the same fields,
  e.g. `stdlib_modules`)."""

  def __init__(self, split: str, data_dir: str | None, load: Callable = corpus_builder.load):
    self._source = load(split, data_dir)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    row = self._source[index]
    return {"query": np.asarray(row["query"], dtype=object),
            "code": np.asarray(row["code"], dtype=object)}


def train_dataset(options: dict, text_model) -> tuple[Any, Callable]:
  """`config.data.name = "stdlib_code_search"`: (pairs of a split, tokenising transform)."""
  return pairs_dataset(NAME, corpus_builder.load, options, text_model)


def pairs_dataset(name: str, load: Callable, options: dict, text_model) -> tuple[Any, Callable]:
  """(TextPairs of `options.split` read with `load`, tokenising transform) for a training
  dataset of (query, code) rows named `name`; options split, data_dir, query_lengths,
  code_lengths, pose_length (> 0: the batches also hold "doc_positions", PoSE positions
  spread over that many tokens, drawn from the global batch index, for tuning long-context
  position rows) and pose_mode ("cut" or "shift"; see `jaxemb.nn.long_context.pose_positions`)."""
  if text_model is None:
    raise ValueError(f"the {name} dataset needs a tokenizer: set "
                     "config.model.pretrained or config.model.tokenizer to a model name or "
                     "directory")
  options = dict(options)
  split = options.pop("split", "train")
  data_dir = options.pop("data_dir", None) or None
  query_lengths = tuple(options.pop("query_lengths", (16, 32)))
  code_lengths = tuple(options.pop("code_lengths", (64, 128)))
  pose_length = int(options.pop("pose_length", 0) or 0)
  pose_mode = options.pop("pose_mode", "cut")
  if options:
    raise ValueError(f"unknown {name} option(s) {sorted(options)}; valid: "
                     "split, data_dir, query_lengths, code_lengths, pose_length, pose_mode")
  transform = tokenized_pairs(text_model.tokenizer, query_lengths=query_lengths,
                              code_lengths=code_lengths, pad_id=text_model.pad_token_id)
  if pose_length:
    transform = _with_pose_positions(transform, pose_length, pose_mode)
  return TextPairs(split, data_dir, load), transform


def _with_pose_positions(transform: Callable, target_length: int, mode: str) -> Callable:
  from jaxemb.nn.long_context import POSE_MODES, pose_positions
  if mode not in POSE_MODES:
    raise ValueError(f"data.pose_mode must be one of {POSE_MODES}, got {mode!r}")

  def with_positions(batch: dict, index: int | None = None) -> dict:
    out = transform(batch, index)
    rng = np.random.default_rng([0x9053, index or 0])  # one draw per global batch: resumable
    return {**out,
            "doc_positions": pose_positions(out["doc_mask"], target_length, rng, mode)}

  return with_positions


# ---------------------------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------------------------

def evaluate_model(embed_fn: Callable[[list[str]], np.ndarray], split: str,
                   data_dir: str | None = None) -> dict[str, float]:
  """Retrieval metrics of `embed_fn` on `split`, plus RankMe of the corpus embeddings."""
  return evaluate_data(embed_fn, retrieval_data(split, data_dir))


def evaluate_data(embed_fn: Callable[[list[str]], np.ndarray], data: dict) -> dict[str, float]:
  """Retrieval metrics of `embed_fn` on `retrieval_data`, plus the representation quality of
  the corpus embeddings (`jaxemb.evaluate.quality.quality_metrics`: rankme, alpha_req,
  isoscore, uniformity, mean_cosine, tte_depth, and alignment of each query with its code)."""
  emb = {}

  def embed_as(name):
    def embed(texts):
      emb[name] = embed_fn(texts)
      return emb[name]
    return embed

  metrics = retrieval_lib.evaluate_retrieval(embed_as("queries"), embed_as("corpus"),
                                             data["queries"], data["corpus"], data["relevant"])
  # Query i's one relevant document is code i: those rows are the positive pairs.
  metrics.update(quality_metrics(emb["corpus"], positives=(emb["queries"], emb["corpus"])))
  return metrics


def evaluate_pairs(embed_fn: Callable[[list[str]], np.ndarray], data: dict) -> dict[str, float]:
  """Retrieval metrics alone (nDCG, MRR, Recall, ...) of `embed_fn` on {queries, corpus,
  relevant}; `evaluate_data` adds the representation-quality metrics."""
  return retrieval_lib.evaluate_retrieval(embed_fn, embed_fn, data["queries"], data["corpus"],
                                          data["relevant"])


_WORD = re.compile(r"[A-Za-z]+|\d+")


def code_tokens(text: str) -> list[str]:
  """Lexical tokens for BM25: identifiers split at '_' and camelCase, lower-cased."""
  words = []
  for token in _WORD.findall(text):
    words.extend(w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", token))
  return words


def bm25_metrics(split: str, data_dir: str | None = None, *, k1: float = 1.2,
                 b: float = 0.75) -> dict[str, float]:
  """Lexical baseline: BM25 (Okapi, via the optional `bm25s` package) on the same split."""
  return bm25_data_metrics(retrieval_data(split, data_dir), k1=k1, b=b)


def bm25_data_metrics(data: dict, *, k1: float = 1.2, b: float = 0.75) -> dict[str, float]:
  """BM25 retrieval metrics on `retrieval_data` (identifiers split for the index)."""
  try:
    import bm25s
  except ImportError as e:
    raise ImportError("the BM25 baseline needs the optional package bm25s: "
                      "pip install bm25s") from e
  retriever = bm25s.BM25(k1=k1, b=b)
  retriever.index([code_tokens(c) for c in data["corpus"]], show_progress=False)
  depth = min(100, len(data["corpus"]))
  query_tokens = [code_tokens(q) for q in data["queries"]]
  ranked, _ = retriever.retrieve([t or ["_"] for t in query_tokens], k=depth,
                                 show_progress=False, n_threads=1)
  ranked = np.asarray(ranked)
  # A query without a single word scores every document 0: rank nothing (-1 = no result)
  # rather than let the index order produce accidental hits.
  ranked[[not t for t in query_tokens]] = -1
  return retrieval_lib.retrieval_metrics(ranked, data["relevant"])


TASK = Task(NAME, load=retrieval_data, evaluate=evaluate_data,
            baselines={"bm25": ("BM25 (lexical)", bm25_data_metrics)})
