"""Hard-negative mining: the current model's top-scored wrong documents, false negatives filtered.

    mined = mine(embed_fn, queries, docs, k=7, filter="perc_pos")   # NV-Embed's TopK-PercPos
    write_mined("negatives.jsonl", mined, queries, docs)
    source = MinedSource("negatives.jsonl", num_negatives=7)        # rows for the trainer

A document the model scores almost as high as the query's positive is often a *false* negative
(a duplicate or an equally good answer); training against it hurts. NV-Retriever / NV-Embed
(Moreira et al. 2024; Lee et al. 2024) drop candidates with `s(q, n) > 0.95 * s(q, d+)`
("perc_pos") before keeping the top k; the margin variant drops `s(q, n) > s(q, d+) - 0.05`.
Both assume cosine scores with a positive `s(q, d+)` (normalised embeddings).

On disk a mined set is JSON lines: a header `{"jaxemb_mined": 1, ...settings}` then one object
per query: `{"query", "positive", "negatives": [texts], "query_index", "positive_index",
"negative_indices", "positive_score", "negative_scores"}`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxemb.evaluate.retrieval import exact_top_k

FILTERS = ("none", "perc_pos", "margin")
FORMAT_KEY = "jaxemb_mined"


def _check_filter(filter: str, threshold: float, margin: float) -> None:
  if filter not in FILTERS:
    raise ValueError(f"filter={filter!r}; expected one of {FILTERS}")
  if filter == "perc_pos" and not 0 < threshold <= 1:
    raise ValueError(f"threshold={threshold}; expected a fraction in (0, 1]")
  if filter == "margin" and not margin >= 0:
    raise ValueError(f"margin={margin}; expected >= 0")


def select_negatives(
    scores: np.ndarray,
    indices: np.ndarray,
    positive_scores: np.ndarray,
    exclude: Sequence[Iterable[int]],
    k: int,
    *,
    filter: str = "perc_pos",
    threshold: float = 0.95,
    margin: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
  """The top `k` negatives per query from its ranked candidates, false negatives dropped.

  Args:
    scores: `[Q, N]` candidate scores, each row sorted descending (as `exact_top_k` returns).
    indices: `[Q, N]` candidate document indices.
    positive_scores: `[Q]` score of each query's positive.
    exclude: per query, the document indices never to use (its positives).
    k: negatives wanted per query.
    filter: "none"; "perc_pos" drops `score > threshold * positive_score`; "margin" drops
      `score > positive_score - margin`.
    threshold: the perc_pos fraction (NV-Embed: 0.95).
    margin: the margin variant's absolute margin (0.05).

  Returns:
    `(negative_indices [Q, k] int64, negative_scores [Q, k] float32)` in rank order; a row
    with fewer than `k` surviving candidates is padded with index -1 and score NaN.
  """
  _check_filter(filter, threshold, margin)
  scores, indices = np.asarray(scores), np.asarray(indices)
  if scores.shape != indices.shape or scores.ndim != 2:
    raise ValueError(f"scores {scores.shape} and indices {indices.shape} must be equal [Q, N]")
  num_q = scores.shape[0]
  positive_scores = np.asarray(positive_scores, np.float64)
  if positive_scores.shape != (num_q,) or len(exclude) != num_q:
    raise ValueError(f"positive_scores {positive_scores.shape} and exclude ({len(exclude)} rows) "
                     f"must have one entry per query ({num_q})")
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k={k!r}; expected a positive int")
  if filter == "perc_pos":
    limit = threshold * positive_scores
  elif filter == "margin":
    limit = positive_scores - margin
  else:
    limit = np.full(num_q, np.inf)
  out_idx = np.full((num_q, k), -1, np.int64)
  out_score = np.full((num_q, k), np.nan, np.float32)
  for i in range(num_q):
    banned = set(int(j) for j in exclude[i])
    kept = [(int(j), s) for j, s in zip(indices[i], scores[i])
            if int(j) not in banned and s <= limit[i]][:k]
    for r, (j, s) in enumerate(kept):
      out_idx[i, r], out_score[i, r] = j, s
  return out_idx, out_score


def mine_embeddings(
    query_emb: np.ndarray,
    doc_emb: np.ndarray,
    positives: Sequence[Iterable[int]] | None,
    k: int,
    *,
    filter: str = "perc_pos",
    threshold: float = 0.95,
    margin: float = 0.05,
    depth: int | None = None,
) -> dict[str, np.ndarray]:
  """Hard negatives from embedding matrices (dot-product scores).

  Args:
    query_emb: `[Q, D]` query embeddings (normalised for cosine).
    doc_emb: `[C, D]` document embeddings.
    positives: per query, its positive document indices (the first is "the" positive whose
      score sets the filter's limit; all are excluded); None means query i's positive is doc i.
    k: negatives per query, `k < C`.
    filter, threshold, margin: see `select_negatives`.
    depth: candidates retrieved per query before filtering (default `min(C, 4k + 16)`); rows
      left with fewer than `k` negatives are retried 4x deeper, up to the whole corpus.

  Returns:
    dict with "negative_indices" `[Q, k]` (-1 padded only when fewer than `k` documents of the
    whole corpus pass the filter), "negative_scores" `[Q, k]`,
    "positive_indices" `[Q]` and "positive_scores" `[Q]`.
  """
  _check_filter(filter, threshold, margin)
  query_emb = np.asarray(query_emb, np.float32)
  doc_emb = np.asarray(doc_emb, np.float32)
  num_q, num_c = query_emb.shape[0], doc_emb.shape[0]
  if positives is None:
    if num_q > num_c:
      raise ValueError(f"positives=None pairs query i with doc i, but there are {num_q} queries "
                       f"and only {num_c} docs")
    positives = [[i] for i in range(num_q)]
  positives = [list(p) for p in positives]
  if len(positives) != num_q:
    raise ValueError(f"positives has {len(positives)} rows; expected one per query ({num_q})")
  for i, p in enumerate(positives):
    if not p or any(not 0 <= j < num_c for j in p):
      raise ValueError(f"positives[{i}]={p}; expected one or more doc indices in [0, {num_c})")
  if not isinstance(k, (int, np.integer)) or not 1 <= k < num_c:
    raise ValueError(f"k={k!r}; expected an int in [1, C={num_c})")
  depth = min(num_c, 4 * k + 16) if depth is None else depth
  if not isinstance(depth, (int, np.integer)) or not k <= depth <= num_c:
    raise ValueError(f"depth={depth!r}; expected an int in [k={k}, C={num_c}]")
  first = np.array([p[0] for p in positives], np.int64)
  pos_scores = np.einsum("qd,qd->q", query_emb.astype(np.float64),
                         doc_emb[first].astype(np.float64)).astype(np.float32)
  neg_idx = np.full((num_q, k), -1, np.int64)
  neg_scores = np.full((num_q, k), np.nan, np.float32)
  rows = np.arange(num_q)
  while True:
    scores, indices = exact_top_k(query_emb[rows], doc_emb, int(depth))
    idx, sc = select_negatives(scores, indices, pos_scores[rows], [positives[i] for i in rows],
                               k, filter=filter, threshold=threshold, margin=margin)
    neg_idx[rows], neg_scores[rows] = idx, sc
    # A query whose positive ranks low has most of its top candidates filtered: look deeper
    # for those rows only, until they are full or the whole corpus was searched.
    rows = rows[np.any(idx < 0, axis=1)]
    if not len(rows) or depth == num_c:
      break
    depth = min(num_c, 4 * depth)
  return {"negative_indices": neg_idx, "negative_scores": neg_scores,
          "positive_indices": first, "positive_scores": pos_scores}


def mine(
    embed_fn: Callable[[list[str]], np.ndarray],
    queries: Sequence[str],
    docs: Sequence[str],
    k: int,
    *,
    positives: Sequence[Iterable[int]] | None = None,
    filter: str = "perc_pos",
    threshold: float = 0.95,
    margin: float = 0.05,
    depth: int | None = None,
) -> dict[str, np.ndarray]:
  """`mine_embeddings(embed_fn(queries), embed_fn(docs), ...)`; see there.

  `embed_fn(texts) -> [N, D]` should return normalised embeddings (e.g.
  `lambda t: jaxemb.encode(model, t)`).
  """
  return mine_embeddings(embed_fn(list(queries)), embed_fn(list(docs)), positives, k,
                         filter=filter, threshold=threshold, margin=margin, depth=depth)


# ---------------------------------------------------------------------------------------------
# The dataset file.


def write_mined(path: str | os.PathLike, mined: dict[str, np.ndarray], queries: Sequence[str],
                docs: Sequence[str], **settings: Any) -> Path:
  """Writes a mined set as JSON lines (atomically); `settings` go into the header line."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(json.dumps({FORMAT_KEY: 1, **settings}) + "\n")
    for i, query in enumerate(queries):
      keep = mined["negative_indices"][i] >= 0
      neg = [int(j) for j in mined["negative_indices"][i][keep]]
      p = int(mined["positive_indices"][i])
      f.write(json.dumps({
          "query": query, "positive": docs[p], "negatives": [docs[j] for j in neg],
          "query_index": i, "positive_index": p, "negative_indices": neg,
          "positive_score": float(mined["positive_scores"][i]),
          "negative_scores": [float(s) for s in mined["negative_scores"][i][keep]],
      }) + "\n")
  os.replace(tmp, path)
  return path


def read_mined(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """`(header settings, rows)` of a file written by `write_mined`."""
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  if not lines:
    raise ValueError(f"{path} is empty; expected a mined-negatives file (header line first)")
  header = json.loads(lines[0])
  if not isinstance(header, dict) or FORMAT_KEY not in header:
    raise ValueError(f"{path} does not start with a {{\"{FORMAT_KEY}\": 1, ...}} header line; "
                     "expected a file written by `jaxemb mine`")
  rows = [json.loads(line) for line in lines[1:] if line]
  return header, rows


class MinedSource:
  """Random-access (query, code, negatives) rows of a mined file, as numpy object arrays.

  Row i is `{"query": bytes, "code": bytes, "negatives": object array [num_negatives] of
  bytes}`, the keys of the code-search pairs plus the negatives, so a trainer's transform
  can tokenise them like the documents. A row with fewer surviving negatives than
  `num_negatives` repeats its own in rank order; a row with none borrows the next row's
  (random, not hard, negatives for that query).
  """

  def __init__(self, path: str | os.PathLike, num_negatives: int):
    if not isinstance(num_negatives, int) or num_negatives < 1:
      raise ValueError(f"num_negatives={num_negatives!r}; expected a positive int")
    self.header, self._rows = read_mined(path)
    if not any(r["negatives"] for r in self._rows):
      raise ValueError(f"{path}: no row has any negative; mine with a looser filter")
    self.num_negatives = num_negatives

  def __len__(self) -> int:
    return len(self._rows)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    row = self._rows[index]
    negatives = row["negatives"]
    step = 1
    while not negatives:
      negatives = self._rows[(index + step) % len(self._rows)]["negatives"]
      step += 1
    picked = [negatives[j % len(negatives)].encode() for j in range(self.num_negatives)]
    out = np.empty((self.num_negatives,), dtype=object)
    out[:] = picked
    return {"query": np.asarray(row["query"].encode(), dtype=object),
            "code": np.asarray(row["positive"].encode(), dtype=object),
            "negatives": out}


def mined_transform(tokenizer, *, query_lengths: tuple[int, ...], code_lengths: tuple[int, ...],
                    pad_id: int = 0) -> Callable[[dict, int | None], dict]:
  """Batch transform of `MinedSource` rows: the code-search pair ids plus
  "neg_ids"/"neg_mask" `[B, K, L]` (negatives tokenised and padded like the documents)."""
  from jaxemb.data.code_search import tokenized_pairs
  from jaxemb.encoding import pad_to_bucket
  pairs = tokenized_pairs(tokenizer, query_lengths=query_lengths, code_lengths=code_lengths,
                          pad_id=pad_id)

  def transform(batch: dict, index: int | None = None) -> dict:
    out = pairs(batch, index)
    negatives = np.asarray(batch["negatives"])
    b, k = negatives.shape
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=code_lengths[-1])
    ids = [e.ids for e in tokenizer.encode_batch(
        [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in negatives.ravel()])]
    neg_ids, neg_mask = pad_to_bucket(ids, code_lengths, pad_id)
    out["neg_ids"] = neg_ids.reshape(b, k, -1)
    out["neg_mask"] = neg_mask.reshape(b, k, -1)
    return out

  return transform


def train_dataset(options: dict, text_model) -> tuple[MinedSource, Callable]:
  """Training dataset of a mined file (for `jaxemb.data.registry`): `config.data` options
  `path` (from `jaxemb mine`), `num_negatives` (default 1), `query_lengths`, `code_lengths`."""
  if text_model is None:
    raise ValueError("the mined-negatives dataset needs a tokenizer: set config.model.pretrained "
                     "or config.model.tokenizer")
  options = dict(options)
  path = options.pop("path", None)
  if not path:
    raise ValueError("config.data.path is required: the .jsonl file written by `jaxemb mine`")
  num_negatives = int(options.pop("num_negatives", 1))
  query_lengths = tuple(options.pop("query_lengths", (16, 32)))
  code_lengths = tuple(options.pop("code_lengths", (64, 128)))
  if options:
    raise ValueError(f"unknown mined-negatives option(s) {sorted(options)}; valid: path, "
                     "num_negatives, query_lengths, code_lengths")
  transform = mined_transform(text_model.tokenizer, query_lengths=query_lengths,
                              code_lengths=code_lengths, pad_id=text_model.pad_token_id)
  return MinedSource(path, num_negatives), transform


# ---------------------------------------------------------------------------------------------
# Command line: `jaxemb mine`.


def add_mine_parser(subparsers) -> argparse.ArgumentParser:
  """Adds `jaxemb mine` to the CLI's subparsers."""
  p = subparsers.add_parser("mine", help="mine hard negatives with a model; writes JSON lines "
                                          "of (query, positive, negatives)")
  p.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or directory")
  p.add_argument("--task", default="stdlib_code_search:train", help="TASK[:SPLIT]")
  p.add_argument("--out", required=True, help="output .jsonl file")
  p.add_argument("--k", type=int, default=7, help="negatives per query")
  p.add_argument("--filter", choices=FILTERS, default="perc_pos",
                 help="false-negative filter (NV-Embed: perc_pos)")
  p.add_argument("--threshold", type=float, default=0.95, help="perc_pos fraction")
  p.add_argument("--margin", type=float, default=0.05, help="margin filter's margin")
  p.add_argument("--depth", type=int, default=None, help="candidates per query before filtering")
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  p.set_defaults(func=mine_main)
  return p


def mine_main(args: argparse.Namespace) -> None:
  """`jaxemb mine`: embed a retrieval task's split with a model, mine, write the file."""
  import jaxemb
  from jaxemb import tasks
  from jaxemb.evaluate.registry import require_fields
  task, split = tasks.parse(args.task, default_split="train")
  data = task.load(split, None)
  queries, corpus, relevant = require_fields("mine", data, ("queries", "corpus", "relevant"))
  relevant = [sorted(relevant[i]) for i in range(len(queries))]
  model = jaxemb.load_pretrained(args.model)
  embed = lambda texts: jaxemb.encode(model, texts, batch_size=args.batch_size,
                                      show_progress=not args.quiet)
  mined = mine(embed, queries, corpus, args.k, positives=relevant, filter=args.filter,
               threshold=args.threshold, margin=args.margin, depth=args.depth)
  write_mined(args.out, mined, queries, corpus, model=str(args.model), task=args.task,
              k=args.k, filter=args.filter, threshold=args.threshold, margin=args.margin)
  full = int(np.sum(np.all(mined["negative_indices"] >= 0, axis=1)))
  print(json.dumps({"out": str(args.out), "queries": len(queries), "k": args.k,
                    "rows_with_k_negatives": full,
                    "mean_negative_score": float(np.nanmean(mined["negative_scores"])),
                    "mean_positive_score": float(np.mean(mined["positive_scores"]))}))
