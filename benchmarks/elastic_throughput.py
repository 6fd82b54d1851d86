"""Encode throughput of an elastic model at each (layer, dim) size: texts/s, warm.

    python benchmarks/elastic_throughput.py [--model all-MiniLM-L6-v2] [--sizes 6:384,3:96,2:64]

Texts: the code snippets of the stdlib code-search test split (the corpus side of the task).
Each size is encoded once to compile its shapes, then timed over `--repeats` calls (best wall
time, plus process CPU seconds: on a shared machine the CPU seconds are the steadier figure).
A smaller layer runs fewer encoder layers; a smaller dim only slices the pooled vector (same
compute, smaller index). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="all-MiniLM-L6-v2")
  p.add_argument("--sizes", default="6:384,3:96,2:64", help="LAYER:DIM,... to time")
  p.add_argument("--n", type=int, default=512, help="texts (from the test split's code)")
  p.add_argument("--repeats", type=int, default=2)
  args = p.parse_args()
  import jaxemb
  from jaxemb.data import code_search
  model = jaxemb.load_pretrained(args.model)
  texts = code_search.load_split("test")[1][:args.n]
  out = {"model": args.model, "texts": len(texts), "sizes": {}}
  for item in args.sizes.split(","):
    layer, _, dim = item.partition(":")
    layer, dim = int(layer), int(dim)
    jaxemb.encode(model, texts, layer=layer, truncate_dim=dim, show_progress=False)  # compile
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(args.repeats):
      w0, c0 = time.perf_counter(), time.process_time()
      jaxemb.encode(model, texts, layer=layer, truncate_dim=dim, show_progress=False)
      best_wall = min(best_wall, time.perf_counter() - w0)
      best_cpu = min(best_cpu, time.process_time() - c0)
    out["sizes"][f"L{layer}_d{dim}"] = {"texts_per_s": len(texts) / best_wall,
                                        "texts_per_cpu_s": len(texts) / best_cpu,
                                        "bytes_per_vector": 4 * dim}
    print(f"layer {layer} dim {dim}: {len(texts) / best_wall:.1f} texts/s "
          f"({len(texts) / best_cpu:.1f} per CPU second)", flush=True)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
