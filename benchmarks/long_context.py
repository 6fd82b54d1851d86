"""Long-context table: all-MiniLM-L6-v2 under truncation (256, 512 tokens) and the long-context
methods (pcw, gp, rp, pi; with --attention-scaling also gp, rp and pi with LongEmbed's attention
scaling; `jaxemb.long_context`) on passkey / needle (Acc@1) and stdlib_modules (nDCG@10), one
JSON line per (task, length, method), flushed as it goes.

    python benchmarks/long_context.py --lengths 1024 2048 --num-docs 50 --num-queries 25 \\
        --module-lengths 1024 > /tmp/long_context.jsonl

Inputs within the trained 512 positions embed exactly as under truncation at 512 for every
method (tested in tests/test_long_context.py), so at lengths <= 512 only truncation runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def runs(length: int, trained: int = 512, attention_scaling: bool = False):
  """(label, max_seq_length, position_scaling, attention scaling) of every method at a
  document length; "+as" labels the methods with LongEmbed's attention scaling."""
  out = [("truncate@256", 256, None, False), ("truncate@512", 512, None, False)]
  if length > trained:
    out += [(m, length, m, False) for m in ("pcw", "gp", "rp", "pi")]
    if attention_scaling:
      out += [(f"{m}+as", length, m, True) for m in ("gp", "rp", "pi")]
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="all-MiniLM-L6-v2")
  parser.add_argument("--tasks", nargs="+", default=["passkey", "needle"])
  parser.add_argument("--lengths", nargs="+", type=int, default=[256, 512, 1024, 2048])
  parser.add_argument("--num-docs", type=int, default=100)
  parser.add_argument("--num-queries", type=int, default=50)
  parser.add_argument("--module-lengths", nargs="*", type=int, default=[4096],
                      help="max_seq_length of the long-context methods on stdlib_modules:test "
                           "(none: skip the task)")
  parser.add_argument("--methods", nargs="*", help="only these labels")
  parser.add_argument("--attention-scaling", action="store_true",
                      help="also gp, rp and pi with LongEmbed's attention scaling (gp+as, ...)")
  parser.add_argument("--batch-size", type=int, default=16)
  args = parser.parse_args(argv)

  import jaxemb
  from jaxemb.data import longembed, stdlib_modules
  model = jaxemb.load_pretrained(args.model)

  def report(row):
    print(json.dumps(row), flush=True)

  def run(task, split, data, evaluate, label, length, scaling, attention):
    if args.methods and label not in args.methods:
      return
    start = time.perf_counter()
    embed = lambda texts: jaxemb.encode(model, texts, batch_size=args.batch_size,
                                        max_seq_length=length, position_scaling=scaling,
                                        attention_scaling=attention, show_progress=False)
    metrics = evaluate(embed, data)
    report({"task": task, "split": split, "method": label, "max_seq_length": length,
            **{k: round(v, 4) for k, v in metrics.items()},
            "seconds": round(time.perf_counter() - start, 1)})

  for length in args.lengths:
    for task in args.tasks:
      data = longembed.make_data(task, length, num_docs=args.num_docs,
                                 num_queries=args.num_queries)
      for method in runs(length, attention_scaling=args.attention_scaling):
        run(task, str(length), data, longembed.evaluate_data, *method)
  if args.module_lengths:
    data = stdlib_modules.retrieval_data("test")
    done = set()
    for length in args.module_lengths:
      for method in runs(length, attention_scaling=args.attention_scaling):
        if method[0] not in done:
          run("stdlib_modules", "test", data, stdlib_modules.evaluate_data, *method)
          done.add(method[0] if method[2] is None else None)

if __name__ == "__main__":
  sys.exit(main())
