"""Model merging on two conflicting tasks (issue 15): single-task fine-tunes, joint training on
their union, and every `jaxemb merge` method, each scored on both tasks.

    python benchmarks/merging.py --workdir runs/merging
    python benchmarks/merging.py --workdir runs/merging --steps 20 --merge-steps 10   # quicker

Tasks: A = docstring -> function search on the stdlib corpus (`stdlib_code_search`, MRR@10 on
test, 630 queries); B = module docstring -> module source (`stdlib_modules`, nDCG@10 on
validation, 138 modules, and test, 22 modules). Models (configs/codesearch_merge.py): all-MiniLM-
L6-v2 zero-shot, fine-tuned on A ("code"), on B ("modules"), on A + B ("joint"), and the merges
of code and modules by average, task_arithmetic (lambda 1), ties (density 0.2), self_positioning
and atlas (coefficients learned on a balanced probe of 128 training pairs per task). Each step is
a subprocess of the `jaxemb` CLI; finished trainings and merges are reused. Prints a markdown
table, what held of issue 15's target (the best merge within 0.01 of each single-task model on
its own task and above joint training on the smaller task B), and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "all-MiniLM-L6-v2"
METHODS = ("average", "task_arithmetic", "ties", "self_positioning", "atlas")
EVALS = (("A", "stdlib_code_search:test", "mrr@10"),
         ("B", "stdlib_modules:validation", "ndcg@10"),
         ("B test", "stdlib_modules:test", "ndcg@10"))
PROBES = ("stdlib_code_search:train", "stdlib_modules:train")


def _cli(args: list[str]) -> dict:
  """Runs `jaxemb ARGS`; the JSON object it prints last."""
  proc = subprocess.run([sys.executable, "-m", "jaxemb.cli", *args], capture_output=True,
                        text=True, cwd=REPO)
  if proc.returncode:
    raise RuntimeError(f"jaxemb {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  return json.loads(lines[-1]) if lines else {}


def train(workdir: str, variant: str, steps: int) -> str:
  out = os.path.join(workdir, variant)
  if not os.path.exists(os.path.join(out, "export")):
    print(f"training {variant} ...", flush=True)
    _cli(["train", "--config", f"configs/codesearch_merge.py:{variant},steps={steps}",
          "--workdir", out])
  return os.path.join(out, "export")


def merge(workdir: str, method: str, models: list[str], merge_steps: int) -> str:
  out = os.path.join(workdir, f"merge_{method}")
  if not os.path.exists(os.path.join(out, "config.json")):
    print(f"merging: {method} ...", flush=True)
    args = ["merge", "--base", BASE, "--models", *models, "--method", method, "--out", out]
    if method in ("self_positioning", "atlas"):
      args += [a for p in PROBES for a in ("--probe-task", p)]
      args += ["--probe-size", "128", "--steps", str(merge_steps)]
    summary = _cli(args)
    with open(os.path.join(workdir, f"merge_{method}.json"), "w") as f:
      json.dump(summary, f)
  return out


def scores(workdir: str, name: str, model: str) -> dict:
  path = os.path.join(workdir, f"scores_{name}.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  print(f"evaluating {name} ...", flush=True)
  out = {label: _cli(["eval", "--model", model, "--task", task, "--quiet"])[metric]
         for label, task, metric in EVALS}
  with open(path, "w") as f:
    json.dump(out, f)
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/merging")
  parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps per model")
  parser.add_argument("--merge-steps", type=int, default=30,
                      help="coefficient steps of self_positioning / atlas")
  args = parser.parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  models = {"zero-shot": BASE}
  for variant in ("code", "modules", "joint"):
    models[variant] = train(args.workdir, variant, args.steps)
  for method in METHODS:
    models[f"merge: {method}"] = merge(args.workdir, method,
                                       [models["code"], models["modules"]], args.merge_steps)
  rows = {name: scores(args.workdir, name.replace(": ", "_"), path)
          for name, path in models.items()}
  labels = [label for label, _, _ in EVALS]
  print("\n| model | " + " | ".join(f"{l} ({m})" for l, _, m in EVALS) + " |")
  print("|---|" + "---|" * len(EVALS))
  for name, row in rows.items():
    print(f"| {name} | " + " | ".join(f"{row[l]:.3f}" for l in labels) + " |")
  code, modules, joint = rows["code"], rows["modules"], rows["joint"]
  held = {m: (rows[f"merge: {m}"]["A"] >= code["A"] - 0.01
              and rows[f"merge: {m}"]["B"] >= modules["B"] - 0.01
              and rows[f"merge: {m}"]["B"] > joint["B"]) for m in METHODS}
  best = max(METHODS, key=lambda m: rows[f"merge: {m}"]["A"] + rows[f"merge: {m}"]["B"])
  print(f"\nbest merge (sum of A and B): {best}; target held by: "
        f"{[m for m, ok in held.items() if ok] or 'none'}")
  print(json.dumps({"rows": rows, "target_held": held, "best_merge": best,
                    "steps": args.steps, "merge_steps": args.merge_steps}))


if __name__ == "__main__":
  main()
