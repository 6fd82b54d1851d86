"""New tokenizers for transfer (code BPE, UnigramLM), their token statistics, and the transfer
experiment on the stdlib code-search task.

    python -m jaxemb.adapt.tokenizers_train --out /tmp/transfer_exp    # the README table
    python -m jaxemb.adapt.tokenizers_train --out /tmp/transfer_exp --methods distill \
        --finetune=-,distill      # then the default job's fine-tuning of these models

The issue's two tokenizers are cased and carry only [PAD] and [UNK]; `transfer` gives them
MiniLM's [CLS] $A [SEP] template. The `*_uncased*` code BPE variants (TOKENIZERS) lowercase and
collapse whitespace as the uncased source reads text; `wordpiece_expanded_16k` is the source's
own WordPiece with up to 16k code tokens added (`expand_wordpiece`: vocabulary expansion).
  code BPE  byte-level BPE (GPT-2 pre-tokeniser: runs of spaces and indentation are tokens).
  UnigramLM SentencePiece-style Metaspace; whitespace runs collapse to one space first (as
            SentencePiece's remove_extra_whitespaces; BERT drops whitespace altogether).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

SPECIALS = ("[PAD]", "[UNK]")


# How a code BPE cuts text into words before merging (None: GPT-2's own split). Merges never
# cross a cut, so coarser cuts give longer tokens.
WORD_SPLITS = {
    "gpt2": None,                                                # "Ġ__", "init", "__("
    "identifiers": r" ?[\p{L}\p{N}_]+| ?[^\s\p{L}\p{N}_]+|\s+",  # GPT-2's, "_" a letter
    "spaces": r" ?\S+|\s+",                                      # "Ġ__init__(self,"
    "spans": "",                                                 # tokens span words
}


def train_code_bpe(texts: Sequence[str], vocab_size: int = 16000, *, min_frequency: int = 2,
                   lowercase: bool = False, collapse_whitespace: bool = False,
                   split: str = "gpt2") -> tokenizers.Tokenizer:
  """A byte-level BPE trained on `texts` (no unknown tokens: every byte is spelled).

  Cased, whitespace kept and GPT-2's word split by default. `lowercase` and
  `collapse_whitespace` (runs of whitespace -> one space, as the UnigramLM) read text as an
  uncased BERT source does, so the vocabulary spends no tokens on case or indentation;
  `split` (a key of WORD_SPLITS) sets where merges stop: "identifiers" keeps snake_case names
  whole, "spaces" cuts at whitespace only, "spans" lets tokens span words ("):Ġself.").
  """
  if vocab_size < 256 + len(SPECIALS):
    raise ValueError(f"vocab_size={vocab_size} is below the 256 bytes plus {len(SPECIALS)} "
                     "special tokens a byte-level BPE needs")
  if split not in WORD_SPLITS:
    raise ValueError(f"split={split!r} is not one of {list(WORD_SPLITS)}")
  tok = tokenizers.Tokenizer(models.BPE())
  steps = ([normalizers.Replace(tokenizers.Regex(r"\s+"), " "), normalizers.Strip()]
           if collapse_whitespace else []) + ([normalizers.Lowercase()] if lowercase else [])
  if steps:
    tok.normalizer = normalizers.Sequence(steps)
  pattern = WORD_SPLITS[split]
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pattern is None)
  tok.pre_tokenizer = (pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(pattern), "isolated"), byte_level])
                       if pattern else byte_level)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(list(texts), trainers.BpeTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
  return tok


def train_unigram(texts: Sequence[str], vocab_size: int = 8000) -> tokenizers.Tokenizer:
  """A cased UnigramLM (Metaspace) tokenizer trained on `texts`; unseen characters -> [UNK]."""
  if vocab_size < 1 + len(SPECIALS):
    raise ValueError(f"vocab_size={vocab_size} must exceed the {len(SPECIALS)} special tokens")
  tok = tokenizers.Tokenizer(models.Unigram())
  tok.normalizer = normalizers.Sequence([normalizers.NFKC(),
                                         normalizers.Replace(tokenizers.Regex(r"\s+"), " "),
                                         normalizers.Strip()])
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.train_from_iterator(list(texts), trainers.UnigramTrainer(
      vocab_size=vocab_size, special_tokens=list(SPECIALS), unk_token="[UNK]",
      show_progress=False))
  return tok


# BERT's punctuation (BasicTokenizer._is_punctuation): every ASCII non-alphanumeric symbol and
# Unicode P*. A word is a run of anything else but whitespace.
_BERT_PUNCT = r"!-/:-@\[-`{-~\p{P}"
_BERT_WORD = rf"[^\s{_BERT_PUNCT}]+"
# A snake_case name ("__init__", "_config_vars": letters or digits and "_"), which BERT cuts at
# every "_".
_NAME = r"(?=[\p{L}\p{N}_]*_)(?=[\p{L}\p{N}_]*[\p{L}\p{N}])[\p{L}\p{N}_]+"
_NAME_START, _NAME_END = r"(?<![\p{L}\p{N}_])", r"(?![\p{L}\p{N}_])"  # a whole word


EXPANSION_KINDS = ("words", "punctuation", "names")


def expand_wordpiece(source: tokenizers.Tokenizer, texts: Sequence[str], num_new: int = 16000, *,
                     min_frequency: int = 2,
                     kinds: Sequence[str] = EXPANSION_KINDS) -> tokenizers.Tokenizer:
  """The source WordPiece tokenizer with up to `num_new` tokens added (vocabulary expansion):
  the words, punctuation runs and snake_case names of `texts` that save the most tokens.

  A candidate is a word that the source splits into several pieces ("isinstance" = is ##ins
  ##tance), a run of punctuation without whitespace ("):", "()") or a snake_case name
  ("__init__"), both of which BERT cuts at every punctuation character; its saving is
  frequency x (source tokens - 1). Added names and runs are matched first (longest first; a
  name only as a whole word) and the rest is cut exactly as BERT does, so text without added
  tokens tokenises as under the source and every source token keeps its id (a transfer copies
  them all; only the added rows are initialised). `kinds` (of EXPANSION_KINDS) limits
  the candidates.
  """
  spec = json.loads(source.to_str())
  model = spec.get("model", {})
  if model.get("type") != "WordPiece":
    raise ValueError(f"expand_wordpiece needs a WordPiece source tokenizer, got "
                     f"{model.get('type')!r}")
  if (spec.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
    raise ValueError(f"expand_wordpiece reproduces BERT's word split; the source's "
                     f"pre-tokenizer is {(spec.get('pre_tokenizer') or {}).get('type')!r}")
  if num_new < 1 or min_frequency < 1:
    raise ValueError(f"num_new={num_new} and min_frequency={min_frequency} must be >= 1")
  if not kinds or set(kinds) - set(EXPANSION_KINDS):
    raise ValueError(f"kinds={tuple(kinds)} must be some of {EXPANSION_KINDS}")
  src = tokenizers.Tokenizer.from_str(source.to_str())
  # A tokenizer.json may pad to a fixed length (MiniLM's pads to 128): a piece's token count
  # must not include padding.
  src.no_padding()
  src.no_truncation()
  candidates = pre_tokenizers.Split(tokenizers.Regex(
      rf"{_NAME_START}{_NAME}{_NAME_END}|{_BERT_WORD}|[{_BERT_PUNCT}]+"), "isolated")
  counts: dict[str, int] = {}
  for text in texts:
    normalized = src.normalizer.normalize_str(text) if src.normalizer else text
    for piece, _ in candidates.pre_tokenize_str(normalized):
      if not piece.isspace():
        counts[piece] = counts.get(piece, 0) + 1
  vocab = model["vocab"]
  savings = []
  for piece, freq in counts.items():
    if freq >= min_frequency and piece not in vocab and _expansion_kind(piece) in kinds:
      n = len(src.encode(piece, add_special_tokens=False).ids)
      if n > 1:
        savings.append((freq * (n - 1), piece))
  savings.sort(key=lambda s: (-s[0], s[1]))
  added = [piece for _, piece in savings[:num_new]]
  vocab.update({piece: len(vocab) + i for i, piece in enumerate(added)})
  tok = tokenizers.Tokenizer.from_str(json.dumps(spec))
  # Names and runs are never a BERT pre-token, so they are matched as added tokens (before the
  # pre-tokeniser, longest first), a name only as a whole word; they keep their vocabulary ids.
  tok.add_tokens([tokenizers.AddedToken(p, single_word=_expansion_kind(p) == "names",
                                        normalized=True)
                  for p in added if _expansion_kind(p) != "words"])
  return tok


def _is_bert_punctuation(char: str) -> bool:
  code = ord(char)
  return (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
          or unicodedata.category(char).startswith("P"))


def _expansion_kind(piece: str) -> str:
  if all(map(_is_bert_punctuation, piece)):
    return "punctuation"
  return "names" if "_" in piece else "words"


def token_stats(tokenizer: tokenizers.Tokenizer, texts: Sequence[str], *,
                max_length: int = 256, unk_token: str | None = None) -> dict[str, float]:
  """Tokens per text with special tokens (mean, p95), % of texts longer than `max_length`,
  and the share of non-special tokens that are the unknown token (0 when it has none)."""
  tok = tokenizers.Tokenizer.from_str(tokenizer.to_str())
  tok.no_truncation()
  tok.no_padding()
  enc = tok.encode_batch(list(texts))
  lengths = np.array([len(e.ids) for e in enc])
  unk = tok.token_to_id(unk_token) if unk_token else next(
      (tok.token_to_id(t) for t in ("[UNK]", "<unk>") if tok.token_to_id(t) is not None), None)
  regular = sum(int(sum(1 for m in e.special_tokens_mask if not m)) for e in enc)
  unks = sum(int(np.sum((np.array(e.ids) == unk) & (np.array(e.special_tokens_mask) == 0)))
             for e in enc) if unk is not None else 0
  return {"mean": float(lengths.mean()), "p95": float(np.percentile(lengths, 95)),
          "truncated_pct": float(100 * np.mean(lengths > max_length)),
          "unk_pct": float(100 * unks / max(regular, 1))}


# ---------------------------------------------------------------------------------------------
# Tokenizers sampled per batch (ZeTT's hypernetwork training).
# ---------------------------------------------------------------------------------------------

SAMPLED_KINDS = ("unigram", "bpe", "wordpiece")


def sample_unigram(texts: Sequence[str], vocab_size: int, rng: np.random.Generator, *,
                   noise_std: float = 1.0, max_piece_chars: int = 12) -> tokenizers.Tokenizer:
  """A UnigramLM tokenizer from `texts` without an EM trainer, as ZeTT samples them.

  Candidate pieces are the substrings (<= `max_piece_chars`) of the Metaspace words of
  `texts`; each scores frequency x length times log-normal noise (sigma `noise_std`); every
  single character is kept, then the best-scoring others up to `vocab_size`. A piece's
  log-probability is its log share of the kept scores. Cased; whitespace runs collapse.
  """
  words: dict[str, int] = {}
  for text in texts:
    for w in " ".join(text.split()).split(" "):
      if w:
        words["\u2581" + w] = words.get("\u2581" + w, 0) + 1
  counts: dict[str, int] = {}
  for w, n in words.items():
    for i in range(len(w)):
      for j in range(i + 1, min(len(w), i + max_piece_chars) + 1):
        counts[w[i:j]] = counts.get(w[i:j], 0) + n
  chars = sorted(c for c in counts if len(c) == 1)
  others = sorted(c for c in counts if len(c) > 1)
  score = lambda pieces: np.array([counts[p] * len(p) for p in pieces], np.float64)
  noisy = score(others) * np.exp(rng.normal(0.0, noise_std, len(others))) if others else []
  keep = max(0, vocab_size - len(SPECIALS) - len(chars))
  top = np.argsort(-np.asarray(noisy), kind="stable")[:keep].astype(np.int64)
  pieces = chars + [others[i] for i in top]
  weights = np.concatenate([score(chars), np.asarray(noisy, np.float64)[top]])
  logp = np.log(weights / weights.sum())
  vocab = [(t, 0.0) for t in SPECIALS] + [(p, float(lp)) for p, lp in zip(pieces, logp)]
  tok = tokenizers.Tokenizer(models.Unigram(vocab, unk_id=SPECIALS.index("[UNK]")))
  tok.normalizer = normalizers.Sequence([normalizers.Replace(tokenizers.Regex(r"\s+"), " "),
                                         normalizers.Strip()])
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.add_special_tokens(list(SPECIALS))
  return tok


def sample_tokenizer(texts: Sequence[str], rng: np.random.Generator, *,
                     kinds: Sequence[str] = SAMPLED_KINDS,
                     probs: Sequence[float] = (0.6, 0.2, 0.2),
                     vocab_range: tuple[int, int] = (1000, 8000),
                     noise_std: float = 1.0) -> tokenizers.Tokenizer:
  """A random tokenizer for a batch of `texts`: a kind drawn with `probs`, a vocabulary size
  log-uniform in `vocab_range`. "unigram" is `sample_unigram`; "bpe" (byte-level) and
  "wordpiece" (lowercasing BERT pre-tokeniser) are trained on `texts`."""
  if len(kinds) != len(probs) or not kinds:
    raise ValueError(f"kinds {list(kinds)} and probs {list(probs)} must be non-empty and "
                     "equally long")
  bad = sorted(set(kinds) - set(SAMPLED_KINDS))
  if bad:
    raise ValueError(f"unknown tokenizer kind(s) {bad}; expected some of {SAMPLED_KINDS}")
  lo, hi = vocab_range
  if not 300 <= lo <= hi:
    raise ValueError(f"vocab_range={vocab_range} must satisfy 300 <= low <= high")
  kind = kinds[rng.choice(len(kinds), p=np.asarray(probs) / np.sum(probs))]
  size = int(np.exp(rng.uniform(np.log(lo), np.log(hi))))
  if kind == "unigram":
    return sample_unigram(texts, size, rng, noise_std=noise_std)
  if kind == "bpe":
    return train_code_bpe(texts, max(size, 300), min_frequency=1)
  tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece()
  tok.train_from_iterator(list(texts), trainers.WordPieceTrainer(
      vocab_size=size, special_tokens=list(SPECIALS), show_progress=False))
  return tok


# ---------------------------------------------------------------------------------------------
# The experiment: every method on both tokenizers, beside the original model.
# ---------------------------------------------------------------------------------------------

def _parameters(model) -> int:
  from flax import nnx
  state = nnx.state(model.module, nnx.Param)
  return int(sum(np.prod(v[...].shape) for _, v in nnx.to_flat_state(state)))


def _row(model, queries, codes, tokenizer, split) -> dict:
  import jaxemb
  from jaxemb.data import code_search
  started = time.time()
  metrics = code_search.evaluate_model(
      lambda texts: jaxemb.encode(model, texts, show_progress=False), split)
  q, c = (token_stats(tokenizer, t, max_length=model.max_seq_length) for t in (queries, codes))
  return {"mrr@10": metrics["mrr@10"], "recall@10": metrics["recall@10"],
          "query_tokens_mean": q["mean"], "query_tokens_p95": q["p95"],
          "code_tokens_mean": c["mean"], "code_tokens_p95": c["p95"],
          "code_truncated_pct": c["truncated_pct"],
          "unk_pct": (q["unk_pct"] * q["mean"] + c["unk_pct"] * c["mean"]) / (q["mean"] + c["mean"]),
          "parameters": _parameters(model), "eval_seconds": time.time() - started}


# The experiment's tokenizers, built from the train split's texts and the source tokenizer:
# the two first (the default), then code BPE variants that read text as the uncased
# source does, then the source's own WordPiece expanded with code tokens.
TOKENIZERS = {
    "code_bpe_16k": lambda texts, source: train_code_bpe(texts, 16000),
    "unigram_8k": lambda texts, source: train_unigram(texts, 8000),
    **{f"code_bpe_16k_uncased{'' if split == 'gpt2' else '_' + split}":
       (lambda texts, source, split=split: train_code_bpe(
           texts, 16000, lowercase=True, collapse_whitespace=True, split=split))
       for split in WORD_SPLITS},
    "wordpiece_expanded_16k": lambda texts, source: expand_wordpiece(source, texts, 16000),
    # The same with only some kinds of added tokens (which kinds cost quality).
    **{"wordpiece_expanded_16k_" + "_".join(kinds):
       (lambda texts, source, kinds=kinds: expand_wordpiece(source, texts, 16000, kinds=kinds))
       for kinds in itertools.chain(*(itertools.combinations(EXPANSION_KINDS, n) for n in (1, 2)))},
    # Without names (many tokens, few saved) but with words and runs seen once.
    "wordpiece_expanded_16k_words_punctuation_once": lambda texts, source: expand_wordpiece(
        source, texts, 16000, kinds=("words", "punctuation"), min_frequency=1),
}
DEFAULT_TOKENIZERS = ("code_bpe_16k", "unigram_8k")

# The default job (configs/codesearch_minilm.py): the "same short contrastive fine-tuning".
DEFAULT_JOB = Path(__file__).resolve().parents[2] / "configs" / "codesearch_minilm.py"


def finetune(model, workdir: str | Path, *, split: str = "test",
             config: str = str(DEFAULT_JOB)) -> dict:
  """Fine-tunes `model` (e.g. a transferred one) with the default job's recipe, data and
  steps, and returns its code-search metrics on `split` before and after.

  The model is saved to `workdir/model` (its own tokenizer.json) and trained from there into
  `workdir/run`, so the job tokenises with the model's tokenizer; the token lengths of the job
  (queries 16/32, code 32/64) are kept as they are, in the new tokenizer's tokens.
  """
  from jaxemb.pretrained.sentence_transformers import save_pretrained
  from jaxemb.train.config import load_config
  from jaxemb.train.loop import run
  workdir = Path(workdir)
  job = load_config(config)
  job.model.pretrained = str(save_pretrained(model, workdir / "model"))
  job.final_evaluators = [dict(task="stdlib_code_search", split=split)]
  job.export = False
  summary = run(job, str(workdir / "run"))
  start, end = summary["eval_start"], summary["eval_end"]
  if not end:
    raise ValueError(f"{workdir / 'run'} holds a finished run (no final evaluation was run): "
                     "delete it to fine-tune again")
  # A run resumed from a checkpoint has no step-0 evaluation: NaN then.
  return {"zero_shot_mrr@10": start.get(f"{split}/mrr@10", float("nan")),
          "mrr@10": end[f"{split}/mrr@10"],
          "recall@10": end[f"{split}/recall@10"], "steps": summary["step"]}


def experiment(out: str | Path, *, methods: Sequence[str] | None = None, split: str = "test",
               distill_steps: int = 300, distill_batch: int = 32,
               distill_texts: int = 4000, distill_chars: int = 300,
               distill_lr: float = 1e-3, distill_token_weight: float = 0.0,
               finetune_methods: Sequence[str] = (),
               hypernet: str | Path | None = None,
               tokenizer_names: Sequence[str] = DEFAULT_TOKENIZERS) -> list[dict]:
  """Trains the tokenizers `tokenizer_names` (keys of TOKENIZERS) on the train split, transfers
  MiniLM with every method to each, and writes one JSON line per (tokenizer, method) to
  `out/results.jsonl` as each finishes (a rerun skips the pairs already there). `distill`
  trains on `distill_texts` train texts cut to `distill_chars` characters at Adam learning rate
  `distill_lr`, with `distill_token_weight` on the token-level term (`transfer.distill`; the
  source's pooled embeddings of the cut texts are cached in `out`); `zett` (run
  only when `hypernet`, the export of a configs/zett_minilm.py run, is given) predicts every
  row.

  The models of `finetune_methods` ("-" is the original) are then fine-tuned by `finetune`
  (the default job) under `out/finetune/`, one more line each, method "METHOD + fine-tune"."""
  import jaxemb
  from jaxemb.adapt import transfer as transfer_lib
  from jaxemb.data import code_search
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  methods = list(methods or [m for m in transfer_lib.METHODS if m != "zett" or hypernet])
  if "zett" in methods and hypernet is None:
    raise ValueError("method 'zett' needs hypernet= (the export directory of a "
                     "configs/zett_minilm.py run)")
  unknown = [name for name in tokenizer_names if name not in TOKENIZERS]
  if unknown:
    raise ValueError(f"unknown tokenizer(s) {unknown}; expected some of {list(TOKENIZERS)}")
  train_q, train_c = code_search.load_split("train")
  test_q, test_c = code_search.load_split(split)
  train_texts = list(train_q) + list(train_c)
  source = jaxemb.load_pretrained("all-MiniLM-L6-v2")
  results_file = out / "results.jsonl"
  done = set()
  if results_file.exists():
    done = {(r["tokenizer"], r["method"]) for r in map(json.loads, results_file.open())}

  def record(row):
    print(json.dumps(row), flush=True)
    with results_file.open("a") as f:
      f.write(json.dumps(row) + "\n")

  def finetuned(method):
    return f"{method} + fine-tune"

  def record_finetuned(model, name, method):
    if method in finetune_methods and (name, finetuned(method)) not in done:
      record({"tokenizer": name, "method": finetuned(method),
              **finetune(model, out / "finetune" / f"{name}-{method}", split=split)})

  if ("original", "-") not in done:
    record({"tokenizer": "original", "method": "-",
            **_row(source, test_q, test_c, source.tokenizer, split)})
  record_finetuned(source, "original", "-")
  built = {}
  for name in tokenizer_names:
    path = out / f"{name}.json"
    if not path.exists():
      TOKENIZERS[name](train_texts, source.tokenizer).save(str(path))
    built[name] = transfer_lib.load_tokenizer(path)
  teacher = None
  for method in methods:
    for name, tok in built.items():
      if (name, method) in done and (method not in finetune_methods
                                     or (name, finetuned(method)) in done):
        continue
      started = time.time()
      options = {}
      if method == "distill":
        # A fixed pool of train texts (queries and code starts) for the teacher, cached.
        pool = np.random.default_rng(0).permutation(len(train_texts))[:distill_texts]
        cut = [train_texts[i][:distill_chars] for i in pool]
        teacher_file = out / f"teacher_{distill_texts}_{distill_chars}.npy"
        if teacher is None and teacher_file.exists():
          teacher = np.load(teacher_file)
        if teacher is None:
          teacher = jaxemb.encode(source, cut, normalize=False, show_progress=False)
          np.save(teacher_file, teacher)
        options = {"distill_options": {"steps": distill_steps, "batch_size": distill_batch,
                                       "teacher": teacher, "max_chars": distill_chars,
                                       "learning_rate": distill_lr,
                                       "token_weight": distill_token_weight,
                                       "lengths": transfer_lib.distill_buckets(distill_chars),
                                       "log_every": 50}}
      if method == "zett":
        options = {"hypernet": hypernet}
      texts = cut if method == "distill" else train_texts
      model = transfer_lib.transfer(source, tok, method, texts=texts, **options)
      build_s = time.time() - started
      if (name, method) not in done:
        record({"tokenizer": name, "method": method, "vocab": tok.get_vocab_size(True),
                "build_seconds": build_s, **_row(model, test_q, test_c, model.tokenizer, split)})
      record_finetuned(model, name, method)
  return [json.loads(line) for line in results_file.open()]


def table(rows: Sequence[dict]) -> str:
  """The results as a Markdown table (fine-tuned rows have no token statistics: "–")."""
  head = ("| tokenizer | method | MRR@10 | R@10 | query tok mean / p95 | code tok mean / p95 | "
          "code truncated % | UNK % | params |")
  lines = [head, "|" + "---|" * 9]
  for r in rows:
    stats = ["–"] * 4
    if "query_tokens_mean" in r:
      stats = [f"{r['query_tokens_mean']:.1f} / {r['query_tokens_p95']:.0f}",
               f"{r['code_tokens_mean']:.1f} / {r['code_tokens_p95']:.0f}",
               f"{r['code_truncated_pct']:.1f}", f"{r['unk_pct']:.2f}"]
    params = f"{r['parameters'] / 1e6:.1f}M" if "parameters" in r else "–"
    lines.append(f"| {r['tokenizer']} | {r['method']} | {r['mrr@10']:.3f} | {r['recall@10']:.3f}"
                 f" | {' | '.join(stats)} | {params} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="directory for tokenizers and results.jsonl")
  parser.add_argument("--methods", default="", help="comma-separated subset of the methods")
  parser.add_argument("--split", default="test")
  parser.add_argument("--distill-steps", type=int, default=300)
  parser.add_argument("--distill-texts", type=int, default=4000)
  parser.add_argument("--distill-chars", type=int, default=300,
                      help="distill: each train text cut to this many characters")
  parser.add_argument("--distill-lr", type=float, default=1e-3, help="distill: Adam's rate")
  parser.add_argument("--distill-token-weight", type=float, default=0.0,
                      help="distill: weight of the token-level term (0 = pooled embeddings only)")
  parser.add_argument("--finetune", default="",
                      help="comma-separated methods ('-' = the original) whose models are then "
                           "fine-tuned with the default job (configs/codesearch_minilm.py)")
  parser.add_argument("--tokenizers", default=",".join(DEFAULT_TOKENIZERS),
                      help=f"comma-separated, of {', '.join(TOKENIZERS)}")
  parser.add_argument("--hypernet", default=None,
                      help="zett: the hypernetwork a configs/zett_minilm.py run exported")
  args = parser.parse_args(argv)
  names = lambda arg: [name for name in arg.split(",") if name]  # noqa: E731
  rows = experiment(args.out, methods=names(args.methods) or None,
                    split=args.split, distill_steps=args.distill_steps,
                    distill_texts=args.distill_texts, distill_chars=args.distill_chars,
                    distill_lr=args.distill_lr, distill_token_weight=args.distill_token_weight,
                    finetune_methods=names(args.finetune),
                    hypernet=args.hypernet, tokenizer_names=names(args.tokenizers))
  print(table(rows))


if __name__ == "__main__":
  main()
