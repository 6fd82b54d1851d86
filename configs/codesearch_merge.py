"""The model-merging experiment's fine-tunes (issue 15): one per task, and one on their union.

    python benchmarks/merging.py --workdir runs/merging      # all of it: trains, merges, table
    jaxemb train --config configs/codesearch_merge.py:modules --workdir runs/merging/modules
    jaxemb train --config configs/codesearch_merge.py:joint,runlocal --workdir /tmp/joint

Variants (exactly one), each all-MiniLM-L6-v2 fine-tuned with the default job's objective,
optimiser, batch (32) and steps (100):

  code     docstring -> function search on the stdlib corpus (the default job's data);
  modules  module docstring -> module source (`stdlib_modules`: 388 training modules, sources
           truncated at 128 tokens): the smaller task, documents of another kind;
  joint    both training sets as one shuffled union (11.6k pairs, 3% of them modules): the
           data-imbalanced joint training merging is compared with.

Every variant pads code to the same ladder (64, 128), so the three differ only in data. No
evaluation during or after training (benchmarks/merging.py evaluates every model, merged or
not, on both tasks with `jaxemb eval`); each exports to WORKDIR/export.
"""

import codesearch_minilm
import common

VARIANTS = ("code", "modules", "joint")
QUERY_LENGTHS, CODE_LENGTHS = (16, 32), (64, 128)


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, steps=100, **{v: False for v in VARIANTS})
  chosen = [v for v in VARIANTS if arg[v]]
  if len(chosen) != 1:
    raise ValueError(f"codesearch_merge needs exactly one variant of {list(VARIANTS)}, got "
                     f"{chosen or 'none'}")
  c = codesearch_minilm.get_config("runlocal" if arg.runlocal else None)
  lengths = dict(query_lengths=QUERY_LENGTHS, code_lengths=CODE_LENGTHS, data_dir="")
  code = dict(name=codesearch_minilm.TASK, split=c.data.split, **lengths)
  modules = dict(name="stdlib_modules", split="train[:64]" if arg.runlocal else "train",
                 **lengths)
  c.data = {"code": code, "modules": modules,
            "joint": dict(name="concat", parts=[code, modules])}[chosen[0]]
  if not arg.runlocal:
    c.total_steps = arg.steps
    c.optim.warmup_steps = max(1, arg.steps // 10)
    c.checkpoint_every = arg.steps
  c.evaluators, c.final_evaluators = [], []
  c.eval_every, c.best_metric = 0, ""
  return c
