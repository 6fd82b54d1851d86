"""Synthetic long-document retrieval tasks "passkey" and "needle", built as LongEmbed (Zhu et al.
2024, section 3.2) builds them: per document length, 100 candidate documents of that many tokens,
each the *same* filler text with one short statement inserted at a uniformly drawn depth (at
the sentence boundary before it), and 50 queries that each ask for one document's statement;
the metric is Acc@1 (the asked-for document ranked first). Since the filler is shared, a document differs from the others only by
its statement and where it sits, so a model finds the right one exactly when it reads that
statement: truncation finds the statements inside its cut and nothing past it.

  passkey: filler = repeats of "The grass is green. The sky is blue. The sun is yellow. Here we
           go. There and back again." (Mohtashami & Jaggi 2023, LongEmbed's filler); statement
           "{name}'s pass key is {key}. Remember it. {key} is the pass key for {name}.", query
           "What is the pass key for {name}?" (LongEmbed's personalised passkey template);
  needle:  filler = one long prose text (LongEmbed: Paul Graham's essays; here the standard
           library's module docstrings, below); statement = one of 100 facts from many domains
           (physics, history, art, ...) and the query asks about it ("Who discovered the law
           of ... motion?"), as LongEmbed's 100 GPT-4 facts; ours are `NEEDLES`, each about a
           made-up name so that no model knows the answer beforehand.

Names are made-up words from a seeded syllable generator (two for a passkey's person, first and
last name) and keys seeded 5-digit numbers, so every document has its own statement.

Needle filler provenance: the module docstrings of the running Python's standard library (read
with `ast`, modules in sorted order, from the first word; nothing imported or downloaded; Python
Software Foundation, PSF License). The split is the document length in tokens of the
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
PASSKEY_FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. "
                  "There and back again.")
# (statement, question) about a made-up name {n}: facts from many domains, as LongEmbed's needles.
NEEDLES = (
    ("The best thing to do in {n} is eat a sandwich and sit in the park on a sunny day.",
     "What is the best thing to do in {n}?"),
    ("The law of {n} motion was discovered by a young physicist working in a cellar.",
     "Who discovered the law of {n} motion?"),
    ("The {n} bridge was painted bright red in the spring of 1921.",
     "What colour was the {n} bridge painted?"),
    ("The famous portrait of Queen {n} hangs in a small museum on the northern coast.",
     "Where does the portrait of Queen {n} hang?"),
    ("The {n} theorem states that every triangle drawn on a sphere has angles summing to more "
     "than two right angles.", "What does the {n} theorem say about triangles?"),
    ("The river {n} flows through three countries before it reaches the sea.",
     "How many countries does the river {n} flow through?"),
    ("The {n} dynasty ruled the eastern valley for four hundred years.",
     "How long did the {n} dynasty rule?"),
    ("The metal {n}ium melts in the palm of a hand and glows green in the dark.",
     "What colour does {n}ium glow?"),
    ("The planet {n} takes ninety Earth days to circle its small red star.",
     "How long does the planet {n} take to orbit its star?"),
    ("The {n} symphony was first played by an orchestra of children in a railway station.",
     "Who first played the {n} symphony?"),
    ("The {n} beetle can lift objects one hundred times heavier than its own body.",
     "How much can the {n} beetle lift?"),
    ("The {n} cathedral took two hundred and twelve years to build.",
     "How long did it take to build the {n} cathedral?"),
    ("The novel about Captain {n} was written in a lighthouse during a single winter.",
     "Where was the novel about Captain {n} written?"),
    ("Doctor {n} cured the fever of the harbour town with boiled willow bark.",
     "How did Doctor {n} cure the fever?"),
    ("The currency of {n} is a coin made of polished blue glass.",
     "What is the currency of {n} made of?"),
    ("The {n} engine was the first machine to run on seawater.",
     "What did the {n} engine run on?"),
    ("The {n} tree blooms only once every forty years, with white flowers.",
     "How often does the {n} tree bloom?"),
    ("In the old myths, the giant {n} carried the moon across the sky on his back.",
     "What did the giant {n} carry across the sky?"),
    ("The {n} marathon is run backwards along the edge of a frozen lake.",
     "How is the {n} marathon run?"),
    ("The traditional soup of {n} is made from roasted chestnuts and sour cherries.",
     "What is the traditional soup of {n} made from?"),
    ("The {n} telescope found a comet with two glowing tails.",
     "What did the {n} telescope find?"),
    ("The {n} treaty ended a war that had lasted nine days.",
     "How long did the war ended by the {n} treaty last?"),
    ("The {n} language has no word for the colour yellow.",
     "Which colour has no word in the {n} language?"),
    ("The {n} whale sings a song that can be heard two hundred miles away.",
     "How far away can the song of the {n} whale be heard?"),
    ("The {n} algorithm sorts a deck of cards by throwing it down a staircase.",
     "How does the {n} algorithm sort a deck of cards?"),
)


@functools.lru_cache(maxsize=1)
def filler_words() -> tuple[str, ...]:
  """The needle filler: words of the stdlib's module docstrings, modules in sorted path order."""
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


@functools.lru_cache(maxsize=2)
def _filler(task: str) -> tuple[tuple[str, ...], np.ndarray]:
  """(words of the task's filler, cumulative token counts: entry i = tokens of words[:i]),
  long enough for the longest split."""
  if task == "passkey":
    phrase = tuple(PASSKEY_FILLER.split())
    words = phrase * (max(LENGTHS) // int(token_counts(phrase).sum()) + 1)
  else:
    words = filler_words()
  cumulative = np.concatenate([[0], np.cumsum(token_counts(words))])
  if cumulative[-1] < max(LENGTHS):
    raise ValueError(f"the {task} filler has {cumulative[-1]} tokens, fewer than {max(LENGTHS)}")
  return words, cumulative


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


def statements(task: str, rng: np.random.Generator,
               n: int) -> tuple[list[str], list[str], list[str]]:
  """(statement inserted in document i, the query that asks for it, its made-up name), i < n.
  Needle i uses `NEEDLES[i % len(NEEDLES)]`, so 100 documents cover every fact four times."""
  names = made_up_words(n, rng)
  if task == "passkey":  # a person's first and last name, as LongEmbed's "Sky Morrow"
    names = [f"{first} {last}" for first, last in zip(names, made_up_words(n, rng))]
    codes = rng.choice(np.arange(10000, 100000), n, replace=False)
    return ([f"{k}'s pass key is {c}. Remember it. {c} is the pass key for {k}."
             for k, c in zip(names, codes)], [f"What is the pass key for {k}?" for k in names],
            names)
  if task == "needle":
    pairs = [NEEDLES[i % len(NEEDLES)] for i in range(n)]
    return ([s.format(n=k) for (s, _), k in zip(pairs, names)],
            [q.format(n=k) for (_, q), k in zip(pairs, names)], names)
  raise ValueError(f"task must be 'passkey' or 'needle', got {task!r}")


def check_length(split: str) -> int:
  """The document length a split names ("2048" -> 2048)."""
  if str(split) not in {str(n) for n in LENGTHS}:
    raise ValueError(f"split must be a document length in tokens, one of "
                     f"{[str(n) for n in LENGTHS]}, got {split!r}")
  return int(split)


def make_data(task: str, length: int, *, num_docs: int = NUM_DOCS,
              num_queries: int = NUM_QUERIES, seed: int = 0) -> dict[str, Any]:
  """Retrieval data {queries, corpus, relevant, names} of `num_docs` documents of `length`
  tokens ([CLS]/[SEP] included) and `num_queries` queries; query i asks for document
  relevant[i] about names[i]. Every document is the task's filler from its first word, cut to
  the length, with its statement inserted at a uniformly drawn depth, at the sentence boundary
  before it."""
  if not 1 <= num_queries <= num_docs:
    raise ValueError(f"need 1 <= num_queries <= num_docs, got {num_queries} and {num_docs}")
  rng = np.random.default_rng([seed, length, 0 if task == "passkey" else 1])
  said, asked, names = statements(task, rng, num_docs)
  words, cumulative = _filler(task)
  corpus = []
  for statement in said:
    budget = length - _SPECIAL - int(token_counts(statement.split()).sum())
    if budget < 0:
      raise ValueError(f"length {length} is too short for the statement {statement!r}")
    stop = int(np.searchsorted(cumulative, budget, side="right")) - 1
    body = list(words[:stop])
    # A uniform depth in tokens, moved back to the sentence boundary before it (the start, or
    # after a word that ends a sentence), so the statement never splits a sentence.
    depth = int(np.searchsorted(cumulative, rng.integers(0, budget + 1), side="right")) - 1
    at = max([0] + [i + 1 for i, w in enumerate(body[:depth]) if w.endswith((".", "!", "?"))])
    corpus.append(" ".join(body[:at] + [statement] + body[at:]))
  targets = rng.choice(num_docs, num_queries, replace=False)
  return {"queries": [asked[t] for t in targets], "corpus": corpus,
          "relevant": [{int(t)} for t in targets], "names": [names[t] for t in targets]}


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
