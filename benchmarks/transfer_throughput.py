"""Encode throughput of all-MiniLM-L6-v2 moved to each experiment tokenizer (issue 13).

    python benchmarks/transfer_throughput.py --out runs/transfer_throughput [--repeats 3]

Throughput depends on the tokenizer (tokens per text, tokenising speed) and the vocabulary size,
not on how the new rows were initialised, so every tokenizer is transferred with `random` (no
work) and timed beside the original: `jaxemb.encode` over the code-search test split (queries
and code, truncation at the model's 256), one call to compile, then `--repeats` timed rounds
that visit the models in turn, so a load on the machine falls on all of them alike. Prints one
JSON line per model (median texts/s and tokens/s over the rounds, and texts/s as a ratio to the
original's in the same run). Tokenizers are trained on the train split as the experiment trains
them (`jaxemb.adapt.tokenizers_train.TOKENIZERS`) and kept in `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT = ("code_bpe_16k", "unigram_8k", "code_bpe_16k_uncased",
           "wordpiece_expanded_16k_punctuation", "wordpiece_expanded_16k_words_punctuation_once")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="directory for the trained tokenizers")
  parser.add_argument("--tokenizers", nargs="+", default=list(DEFAULT))
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch-size", type=int, default=64)
  args = parser.parse_args(argv)

  import numpy as np
  import tokenizers

  import jaxemb
  from jaxemb.adapt import tokenizers_train, transfer
  from jaxemb.data import code_search
  unknown = [t for t in args.tokenizers if t not in tokenizers_train.TOKENIZERS]
  if unknown:
    parser.error(f"unknown tokenizer(s) {unknown}; expected some of "
                 f"{list(tokenizers_train.TOKENIZERS)}")
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  source = jaxemb.load_pretrained("all-MiniLM-L6-v2")
  train_q, train_c = code_search.load_split("train")
  test_q, test_c = code_search.load_split("test")
  texts = list(test_q) + list(test_c)
  models = {"original": source}
  for name in args.tokenizers:
    path = out / f"{name}.json"
    if not path.exists():
      tokenizers_train.TOKENIZERS[name](list(train_q) + list(train_c),
                                        source.tokenizer).save(str(path))
    models[name] = transfer.transfer(source, transfer.load_tokenizer(path), "random")

  def tokens(model) -> int:
    tok = tokenizers.Tokenizer.from_str(model.tokenizer.to_str())  # the model's stays as it is
    tok.no_padding()
    tok.enable_truncation(max_length=model.max_seq_length)
    return sum(len(e.ids) for e in tok.encode_batch(texts))

  counts = {name: tokens(model) for name, model in models.items()}
  for model in models.values():  # compile every shape
    jaxemb.encode(model, texts, batch_size=args.batch_size, show_progress=False)
  seconds = {name: [] for name in models}
  for _ in range(args.repeats):
    for name, model in models.items():
      start = time.perf_counter()
      jaxemb.encode(model, texts, batch_size=args.batch_size, show_progress=False)
      seconds[name].append(time.perf_counter() - start)
  base = len(texts) / float(np.median(seconds["original"]))
  for name, model in models.items():
    median = float(np.median(seconds[name]))
    print(json.dumps({"tokenizer": name, "vocab": model.tokenizer.get_vocab_size(True),
                      "texts": len(texts), "tokens": counts[name],
                      "texts_per_s": round(len(texts) / median, 1),
                      "tokens_per_s": round(counts[name] / median, 1),
                      "ratio_to_original": round(len(texts) / median / base, 3),
                      "seconds": [round(s, 2) for s in seconds[name]]}), flush=True)


if __name__ == "__main__":
  main()
