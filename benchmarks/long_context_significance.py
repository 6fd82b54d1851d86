"""Is one long-context model better than another on passkey/needle, or is it noise? (issue 15)

    python benchmarks/long_context_significance.py --task needle --length 2048 --seeds 0 1 2 3 \
        --models runs/pi_untuned_s4 runs/pi_distill/export runs/pi_distill_seed1/export

LongEmbed's synthetic tasks have 50 queries per length, where one query is 0.02 of Acc@1: too
few to tell the gains of position tuning (~0.05) from chance. The task is a seeded draw
(`jaxemb.data.longembed.make_data(seed=...)`: names, statements, depths), so independent draws
of the same task give more queries: each model is scored on every seed's draw (seed 0 is the
task `jaxemb eval` runs), the per-query scores are pooled, and every model after the first is
compared with the first (`jaxemb.evaluate.significance.compare`: paired bootstrap interval of
the difference and randomization-test p). Models are long-context exports read with their own
saved setting (their max_seq_length must reach `--length`).
Prints a table per metric and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time

import numpy as np


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", required=True,
                      help="two or more models; each after the first is compared with it")
  parser.add_argument("--task", choices=("passkey", "needle"), default="needle")
  parser.add_argument("--length", type=int, default=2048)
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3],
                      help="data seeds of the task's draws (0 = the task jaxemb eval runs)")
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--resamples", type=int, default=10_000)
  parser.add_argument("--cache", default="runs/long_context_significance",
                      help="per-query scores per (model, task, length, seed) are kept here, so "
                           "a stopped run resumes where it was")
  args = parser.parse_args(argv)
  if len(args.models) < 2:
    parser.error(f"--models needs two or more models to compare, got {args.models}")

  import jaxemb
  from jaxemb.data import longembed
  from jaxemb.evaluate import retrieval, significance
  draws = {s: longembed.make_data(args.task, args.length, seed=s) for s in args.seeds}
  scores = []
  for path in args.models:
    model = jaxemb.load_pretrained(path)
    if model.max_seq_length < args.length:
      raise SystemExit(f"{path} reads {model.max_seq_length} tokens, the documents have "
                       f"{args.length}: give models extended to >= {args.length} (e.g. "
                       "`jaxemb.long_context.extend` then `jaxemb.save_pretrained`)")
    per_model = []
    for seed, data in draws.items():
      name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{path}__{args.task}_{args.length}_seed{seed}")
      cached = os.path.join(args.cache, f"{name}.npz")
      if os.path.exists(cached):
        per_model.append(dict(np.load(cached)))
        continue
      start = time.perf_counter()
      embed = lambda texts: jaxemb.encode(model, texts, batch_size=args.batch_size,
                                          show_progress=False)
      per_query = retrieval.evaluate_retrieval(embed, embed, data["queries"], data["corpus"],
                                               data["relevant"], ks=(1, 10), per_query=True)
      os.makedirs(args.cache, exist_ok=True)
      with open(cached + ".tmp", "wb") as f:  # whole or not at all: a stopped run resumes
        np.savez(f, **per_query)
      os.replace(cached + ".tmp", cached)
      per_model.append(per_query)
      print(json.dumps({"model": path, "seed": seed, "acc@1": float(per_query["recall@1"].mean()),
                        "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    scores.append({k: np.concatenate([p[k] for p in per_model]) for k in ("recall@1", "mrr@10")})
  results = {}
  for metric in ("recall@1", "mrr@10"):
    label = "acc@1" if metric == "recall@1" else metric
    print(f"\n{args.task}:{args.length}, seeds {args.seeds}, {label} "
          f"({scores[0][metric].size} queries)\n| model | {label} | vs first | 95% interval | p |"
          "\n|---|---|---|---|---|")
    print(f"| {args.models[0]} | {scores[0][metric].mean():.3f} | | | |")
    for path, s in zip(args.models[1:], scores[1:]):
      r = significance.compare(scores[0][metric], s[metric], resamples=args.resamples)
      results.setdefault(label, {})[path] = r
      print(f"| {path} | {r['mean_b']:.3f} | {r['diff']:+.3f} | [{r['ci_low']:+.3f}, "
            f"{r['ci_high']:+.3f}] | {r['p_value']:.4f} |")
  print(json.dumps({"task": args.task, "length": args.length, "seeds": args.seeds,
                    "models": args.models, "results": results}))


if __name__ == "__main__":
  main()
