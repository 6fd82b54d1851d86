"""Synthetic long-document retrieval tasks "passkey" and "needle", as LongEmbed (Zhu et al.
2024) defines them: per document length, 100 candidate documents of that many tokens, each a
long filler text with one short statement inserted at a random place, and 50 queries that each
ask for one document's statement; the metric is Acc@1 (the asked-for document ranked first).

  passkey: statement "{name}'s pass key is {key}. Remember it. {key} is the pass key for
           {name}.", query "What is the pass key for {name}?" (LongEmbed's template);
  needle:  statement "The best thing to do in {place} is {activity}.", query "What is the best
           thing to do in {place}?" (the needle-in-a-haystack sentence, one place per document).

Names and places are made-up words from a seeded syllable generator, keys seeded 5-digit
numbers, activities a fixed list, so every document has its own statement.

Filler provenance: the module docstrings of the running Python's standard library (read with
`ast`, modules in sorted order, nothing imported or downloaded; Python Software Foundation,
PSF License), cut from a seeded offset. The split is the document length in tokens of the
all-MiniLM-L6-v2 (BERT uncased WordPiece) tokenizer, [CLS]/[SEP] included: "256", "512",
"1024", "2048", "4096". Everything is seeded: the same split gives the same data.
"""

from __future__ import annotations

import ast
import functools
import os
import sysconfig
from typing import Any, Callable

import numpy as np

from jaxemb.evaluate import retrieval as retrieval_lib
from jaxemb.evaluate.registry import Task

LENGTHS = (256, 512, 1024, 2048, 4096)
NUM_DOCS, NUM_QUERIES = 100, 50
TOKENIZER = "all-MiniLM-L6-v2"
_SPECIAL = 2  # [CLS] and [SEP]

_SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "tor", "vi", "bel", "dra", "quin", "zo", "mar",
              "fen", "gal", "hu", "jor", "nel", "pra", "sil", "tam", "ul", "wen", "yor", "cas")
_ACTIVITIES = (
    "eat a sandwich and sit in the park on a sunny day", "ride a bicycle along the river",
    "visit the old lighthouse at dawn", "drink tea in the market square",
    "walk the harbour wall at sunset", "read a book in the botanical garden",
    "listen to the street musicians by the fountain", "climb the hill behind the cathedral",
    "swim in the cold lake before breakfast", "watch the boats from the stone bridge")


@functools.lru_cache(maxsize=1)
def filler_words() -> tuple[str, ...]:
  """The filler: words of the stdlib's module docstrings, modules in sorted path order."""
  root = sysconfig.get_paths()["stdlib"]
  words = []
  for name in sorted(os.listdir(root)):
    if not name.endswith(".py"):
      continue
    try:
      with open(os.path.join(root, name), encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    except (SyntaxError, UnicodeDecodeError, ValueError):
      continue
    if doc:
      words.extend(doc.split())
  return tuple(words)


@functools.lru_cache(maxsize=1)
def _tokenizer():
  from jaxemb.pretrained import sentence_transformers as st
  import tokenizers
  tok = tokenizers.Tokenizer.from_file(str(st.resolve(TOKENIZER) / "tokenizer.json"))
  tok.no_padding()
  tok.no_truncation()
  return tok


@functools.lru_cache(maxsize=1)
def _filler_cumulative() -> np.ndarray:
  return np.concatenate([[0], np.cumsum(token_counts(filler_words()))])


def token_counts(words) -> np.ndarray:
  """Tokens of each whitespace word (BERT pre-tokenisation never joins words, so a text's
  count is the sum over its words)."""
  encoded = _tokenizer().encode_batch(list(words), add_special_tokens=False)
  return np.array([len(e.ids) for e in encoded], np.int64)


def made_up_words(n: int, rng: np.random.Generator) -> list[str]:
  """`n` distinct capitalised words of 2-3 syllables."""
  out: dict[str, None] = {}
  while len(out) < n:
    word = "".join(rng.choice(_SYLLABLES, rng.integers(2, 4)))
    out[word.capitalize()] = None
  return list(out)


def statements(task: str, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
  """(statement inserted in document i, the query that asks for it), i < n."""
  keys = made_up_words(n, rng)
  if task == "passkey":
    codes = rng.choice(np.arange(10000, 100000), n, replace=False)
    return ([f"{k}'s pass key is {c}. Remember it. {c} is the pass key for {k}."
             for k, c in zip(keys, codes)], [f"What is the pass key for {k}?" for k in keys])
  if task == "needle":
    acts = rng.choice(len(_ACTIVITIES), n)
    return ([f"The best thing to do in {k} is {_ACTIVITIES[a]}." for k, a in zip(keys, acts)],
            [f"What is the best thing to do in {k}?" for k in keys])
  raise ValueError(f"task must be 'passkey' or 'needle', got {task!r}")


def check_length(split: str) -> int:
  """The document length a split names ("2048" -> 2048)."""
  if str(split) not in {str(n) for n in LENGTHS}:
    raise ValueError(f"split must be a document length in tokens, one of "
                     f"{[str(n) for n in LENGTHS]}, got {split!r}")
  return int(split)


def make_data(task: str, length: int, *, num_docs: int = NUM_DOCS,
              num_queries: int = NUM_QUERIES, seed: int = 0) -> dict[str, Any]:
  """Retrieval data {queries, corpus, relevant} of `num_docs` documents of `length` tokens
  ([CLS]/[SEP] included) and `num_queries` queries; query i asks for document relevant[i]."""
  if not 1 <= num_queries <= num_docs:
    raise ValueError(f"need 1 <= num_queries <= num_docs, got {num_queries} and {num_docs}")
  rng = np.random.default_rng([seed, length, 0 if task == "passkey" else 1])
  said, asked = statements(task, rng, num_docs)
  words = filler_words()
  cumulative = _filler_cumulative()
  corpus = []
  for i in range(num_docs):
    budget = length - _SPECIAL - int(sum(token_counts(said[i].split())))
    if budget < 0:
      raise ValueError(f"length {length} is too short for the statement {said[i]!r}")
    start = int(rng.integers(0, len(words) // 2))
    stop = int(np.searchsorted(cumulative, cumulative[start] + budget, side="right")) - 1
    body = list(words[start:stop])
    at = int(rng.integers(0, len(body) + 1))
    corpus.append(" ".join(body[:at] + [said[i]] + body[at:]))
  targets = rng.choice(num_docs, num_queries, replace=False)
  return {"queries": [asked[t] for t in targets], "corpus": corpus,
          "relevant": [{int(t)} for t in targets]}


def evaluate_data(embed_fn: Callable[[list[str]], np.ndarray], data: dict) -> dict[str, float]:
  """acc@1 (= recall@1 with one relevant document), plus ndcg@10 and mrr@10."""
  metrics = retrieval_lib.evaluate_retrieval(embed_fn, embed_fn, data["queries"],
                                             data["corpus"], data["relevant"], ks=(1, 10))
  return {"acc@1": metrics["recall@1"], "ndcg@10": metrics["ndcg@10"],
          "mrr@10": metrics["mrr@10"]}


def task(name: str) -> Task:
  """The "passkey" or "needle" task; `load(split)` takes the length as the split."""
  statements(name, np.random.default_rng(0), 1)  # validates the name
  return Task(name, load=lambda split, data_dir=None: make_data(name, check_length(split)),
              evaluate=evaluate_data)
