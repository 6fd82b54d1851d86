"""Size and encode throughput of the models the pooling / distillation configs build.

    python benchmarks/encoder_rows.py configs/codesearch_pooling.py:cls \
        configs/codesearch_distill.py:mse [--n 512] [--zero-shot]

For each config: the recipe's model as training starts (pretrained weights, the config's head
and layer count; throughput depends on the architecture only, not on the trained values),
its parameters and layers, and `jaxemb.encode` texts/s on the first `--n` code snippets of the
stdlib code-search test split: one call to compile, then one timed call (wall and process CPU
seconds; on a shared machine CPU seconds are the steadier figure). `--zero-shot` also reports
test MRR@10 / R@10 of that untrained model (e.g. the 3-layer student before distillation).
One JSON line per config.
"""

from __future__ import annotations

import argparse
import json
import time


def row(spec: str, n: int, zero_shot: bool) -> dict:
  """Size and warm throughput of the model `spec`'s recipe builds (see the module doc)."""
  import jax
  from flax import nnx

  import jaxemb
  from jaxemb import recipes, tasks
  from jaxemb.data import code_search
  from jaxemb.train.config import load_config
  config = load_config(spec)
  recipe = recipes.get(config.recipe)(config)
  module = recipe.model(nnx.Rngs(config.seed))
  model = recipe.embedding_model(module, name=spec)
  params = sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
  texts = code_search.load_split("test")[1][:n]
  jaxemb.encode(model, texts, show_progress=False)  # compile every shape
  w0, c0 = time.perf_counter(), time.process_time()
  jaxemb.encode(model, texts, show_progress=False)
  wall, cpu = time.perf_counter() - w0, time.process_time() - c0
  out = {"config": spec, "params": int(params), "layers": module.num_layers,
         "dim": module.dim, "pooling": module.pooler.kind, "texts": len(texts),
         "texts_per_s": round(len(texts) / wall, 1), "texts_per_cpu_s": round(len(texts) / cpu, 1)}
  if zero_shot:
    metrics = tasks.evaluate(tasks.get("stdlib_code_search"), "test",
                             lambda t: jaxemb.encode(model, t, show_progress=False))
    out.update({f"test/{k}": round(float(metrics[k]), 4) for k in ("mrr@10", "recall@10")})
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("configs", nargs="+", help="config specs, path.py:arg")
  p.add_argument("--n", type=int, default=512, help="texts (from the test split's code)")
  p.add_argument("--zero-shot", action="store_true", help="also test MRR@10 before training")
  args = p.parse_args()
  for spec in args.configs:
    print(json.dumps(row(spec, args.n, args.zero_shot)), flush=True)


if __name__ == "__main__":
  main()
