"""Static (model2vec-style) export vs the full model: code-search quality and encode speed.

    python benchmarks/static_export.py [--model all-MiniLM-L6-v2] [--split test] [--dims 256]

Distils the model with `jaxemb.static_export.distill_static` (every vocabulary token through the
encoder, PCA to `--dims`, Zipf SIF weights), then on the stdlib code-search split reports MRR@10 /
nDCG@10 / recall@10 of the full model and of the static table, and texts/s for encoding queries +
corpus (warm: best of `--repeats`; the full model's first call includes its compiles).
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default="all-MiniLM-L6-v2")
  p.add_argument("--split", default="test")
  p.add_argument("--dims", type=int, nargs="+", default=[256, 128])
  p.add_argument("--repeats", type=int, default=2)
  args = p.parse_args(argv)

  import jaxemb
  from jaxemb import static_export as se
  from jaxemb.data import code_search
  from jaxemb.evaluate.retrieval import evaluate_retrieval

  data = code_search.retrieval_data(args.split)
  texts = data["queries"] + data["corpus"]
  model = jaxemb.load_pretrained(args.model)

  def run(name, embed):
    start = time.perf_counter()
    embed(texts)
    first = time.perf_counter() - start
    warm = min(_timed(lambda: embed(texts)) for _ in range(args.repeats))
    m = evaluate_retrieval(embed, embed, data["queries"], data["corpus"], data["relevant"])
    return {"name": name, "mrr@10": m["mrr@10"], "ndcg@10": m["ndcg@10"],
            "recall@10": m["recall@10"], "texts_per_s": len(texts) / warm, "first_s": first}

  rows = [run(f"{args.model} (full)",
              lambda t: jaxemb.encode(model, t, show_progress=False))]
  for dims in args.dims:
    start = time.perf_counter()
    weights, tok = se.distill_static(model, dims=dims)
    distill_s = time.perf_counter() - start
    row = run(f"static, PCA {dims}", lambda t: se.encode_static(weights, tok, t))
    row["distill_s"] = distill_s
    rows.append(row)

  print(f"stdlib code search ({args.split}: {len(data['queries'])} queries, "
        f"{len(data['corpus'])} functions); encode = queries + corpus, {len(texts)} texts")
  print(f"| model | MRR@10 | nDCG@10 | recall@10 | texts/s (warm) | speed-up |")
  print("| --- | --- | --- | --- | --- | --- |")
  for r in rows:
    print(f"| {r['name']} | {r['mrr@10']:.3f} | {r['ndcg@10']:.3f} | {r['recall@10']:.3f} | "
          f"{r['texts_per_s']:.0f} | {r['texts_per_s'] / rows[0]['texts_per_s']:.1f}x |")
  print(json.dumps(rows))


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


if __name__ == "__main__":
  main()
