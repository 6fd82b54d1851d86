"""The model-merging experiment's fine-tunes (issue 15): one per task, and one on their union.

    python benchmarks/merging.py --workdir runs/merging      # all of it: trains, merges, table
    jaxemb train --config configs/codesearch_merge.py:continuation --workdir runs/merging/cont
    jaxemb train --config configs/codesearch_merge.py:joint,runlocal --workdir /tmp/joint

Variants (exactly one), each all-MiniLM-L6-v2 fine-tuned with the default job's objective,
optimiser, batch (32) and steps (100):

  code          docstring -> function search on the stdlib corpus (the default job's data,
                5,050 pairs): task A;
  continuation  a function's first half -> its second half, on the stdlib's test suite
                (`stdlib_test_continuation`, a package set disjoint from A's; `b_pairs` of its
                training pairs, default 2,000): task B, code -> code, the smaller one;
  modules       module docstring -> module source (`stdlib_modules`, 388 modules): the B task
                of the first run of the experiment, which its 100 steps overfit;
  joint         A and B (`b=continuation` or `b=modules`) as one shuffled union: the
                data-imbalanced joint training merging is compared with.

Every variant pads queries and code to the same ladders, so they differ only in data. No
evaluation during or after training (benchmarks/merging.py evaluates every model, merged or
not, on both tasks with `jaxemb eval`); each exports to WORKDIR/export.
"""

import codesearch_minilm
import common

VARIANTS = ("code", "continuation", "modules", "joint")
B_TASKS = ("continuation", "modules")
QUERY_LENGTHS, CODE_LENGTHS = (16, 32, 64, 128), (64, 128)


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, steps=100, b="continuation", b_pairs=2000,
                         **{v: False for v in VARIANTS})
  chosen = [v for v in VARIANTS if arg[v]]
  if len(chosen) != 1:
    raise ValueError(f"codesearch_merge needs exactly one variant of {list(VARIANTS)}, got "
                     f"{chosen or 'none'}")
  if arg.b not in B_TASKS:
    raise ValueError(f"b must be one of {B_TASKS}, got {arg.b!r}")
  c = codesearch_minilm.get_config("runlocal" if arg.runlocal else None)
  lengths = dict(query_lengths=QUERY_LENGTHS, code_lengths=CODE_LENGTHS, data_dir="")
  small = "train[:64]" if arg.runlocal else None
  parts = {
      "code": dict(name=codesearch_minilm.TASK, split=c.data.split, **lengths),
      "continuation": dict(name="stdlib_test_continuation",
                           split=small or f"train[:{arg.b_pairs}]", **lengths),
      "modules": dict(name="stdlib_modules", split=small or "train", **lengths),
  }
  parts["joint"] = dict(name="concat", parts=[parts["code"], parts[arg.b]])
  c.data = parts[chosen[0]]
  if not arg.runlocal:
    c.total_steps = arg.steps
    c.optim.warmup_steps = max(1, arg.steps // 10)
    c.checkpoint_every = arg.steps
  c.evaluators, c.final_evaluators = [], []
  c.eval_every, c.best_metric = 0, ""
  return c
