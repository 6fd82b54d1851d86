"""Where two task vectors conflict (issue 15): the A model plus B's task vector on some layers only.

    python benchmarks/merging.py --workdir runs/merging_cont            # the models, first
    python benchmarks/merging_layers.py --workdir runs/merging_cont     # then this

For each group G of parameter tensors (the embeddings, pairs of transformer layers, ...), the
model base + tau_A + tau_B[G] (tau = fine-tuned minus base, tau_B zero outside G) is scored on
both tasks of benchmarks/merging.py (test MRR@10): how much of B's gain G carries, and what
it costs A. A layer group that gave B its gain at no cost to A would be a merge that keeps
both single-task models; the table shows whether one exists. All models are built in this
process from the three checkpoints, so each row costs only its two evaluations (~75 s on a
2-core CPU). Prints a markdown table and one JSON line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jaxemb  # noqa: E402
from jaxemb import tasks  # noqa: E402
from jaxemb.adapt import merge  # noqa: E402
from jaxemb.functional import split  # noqa: E402

EVALS = (("A", "stdlib_code_search:test"), ("B", "stdlib_test_continuation:test"))
# id -> (label, regular expression over MiniLM's tensor paths (6 layers) that tau_B keeps).
GROUPS = {
    "none": ("nothing (= the A model)", r"^$"),
    "emb": ("embeddings", r"\['embeddings'\]"),
    "l01": ("layers 0-1", r"\['layers'\]\[[01]\]"),
    "l23": ("layers 2-3", r"\['layers'\]\[[23]\]"),
    "l45": ("layers 4-5", r"\['layers'\]\[[45]\]"),
    "l23att": ("layers 2-3, attention only", r"\['layers'\]\[[23]\]\['attention"),
    "l23ffn": ("layers 2-3, feed-forward only", r"\['layers'\]\[[23]\]\['ffn"),
    "not23": ("all but layers 2-3", r"\['embeddings'\]|\['layers'\]\[[0145]\]"),
    "all": ("everything (task arithmetic, lambda 1)", r"."),
}


def restrict(model, base, pattern: str):
  """`model`'s tensors whose path matches `pattern`, the `base`'s elsewhere (so the task
  vector model - base is zero outside the group)."""
  keep = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(
      lambda p, m, b: m if keep.search(jax.tree_util.keystr(p)) else b, model, base)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/merging_cont",
                      help="benchmarks/merging.py's workdir (code/ and continuation/ exports)")
  parser.add_argument("--base", default="all-MiniLM-L6-v2")
  parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS),
                      help="which rows (default all)")
  args = parser.parse_args(argv)
  base = jaxemb.load_pretrained(args.base)
  graph, base_params = split(base.module)
  fine_tuned = [split(jaxemb.load_pretrained(os.path.join(args.workdir, v, "export")).module)[1]
                for v in ("code", "continuation")]
  data = [(label, *tasks.parse(spec)) for label, spec in EVALS]
  data = [(label, task, task.load(split_name, None)) for label, task, split_name in data]
  rows = {}
  for group in args.groups:
    name, pattern = GROUPS[group]
    start = time.time()
    b_in_group = restrict(fine_tuned[1], base_params, pattern)
    params = merge.task_arithmetic(base_params, [fine_tuned[0], b_in_group], 1.0)
    model = dataclasses.replace(base, module=graph.merge(params))
    embed = lambda texts, model=model: jaxemb.encode(model, texts, show_progress=False)
    rows[name] = {label: task.evaluate(embed, d)["mrr@10"] for label, task, d in data}
    print(f"{name}: A {rows[name]['A']:.4f}  B {rows[name]['B']:.4f}  "
          f"({time.time() - start:.0f} s)", flush=True)
  print("\n| tau_B on | A: code search | B: continuation |\n|---|---|---|")
  for name, row in rows.items():
    print(f"| {name} | {row['A']:.3f} | {row['B']:.3f} |")
  print(json.dumps({"workdir": args.workdir, "rows": rows}))


if __name__ == "__main__":
  main()
