"""Tuned position interpolation (issue 15): all-MiniLM-L6-v2's 512 position rows interpolated to
`length` / 512 times as many, then only the new rows trained, with PoSE position offsets.

    jaxemb train --config configs/long_pi_tune.py --workdir runs/pi_tune          # 2048 tokens
    jaxemb train --config configs/long_pi_tune.py:length=1024 --workdir runs/pi_tune_1k
    python benchmarks/long_context.py --model runs/pi_tune/export --methods pi ...  # evaluate

Data: module docstring -> module source pairs (`stdlib_modules` train, 388 modules), sources
truncated at 256 tokens whose positions are PoSE-skipped over `length` (the first part at
0 .., the rest shifted by a random offset), so short inputs teach positions up to `length`.
Everything but the position table is frozen (`optim.trainable`), and the recipe keeps the
trained rows (i * s) as they were, so inputs within 512 tokens embed exactly as before; the
in-batch InfoNCE objective of the default job. The export (WORKDIR/export) is a long-context
model: `jaxemb.load_pretrained` reads its position scaling back.
"""

import codesearch_minilm
import common


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, length=2048, steps=60, lr=5e-4)
  c = codesearch_minilm.get_config("runlocal" if arg.runlocal else None)
  c.model.position_scaling = "pi"
  c.model.max_seq_length = arg.length
  c.data = dict(name="stdlib_modules", split="train", data_dir="", query_lengths=(32,),
                code_lengths=(256,), pose_length=arg.length)
  c.optim.update(lr=arg.lr, weight_decay=0.0, trainable=("model/encoder/embeddings/position",))
  c.batch_size = 16
  c.total_steps = arg.steps
  c.optim.warmup_steps = max(1, arg.steps // 10)
  c.evaluators, c.final_evaluators = [], []
  c.eval_every, c.best_metric = 0, ""
  c.checkpoint_every = arg.steps
  c.export = True
  if arg.runlocal:  # the code-search pairs (built by the other tests), a few tiny steps
    c.data.update(name="stdlib_code_search", split="train[:64]", code_lengths=(32,),
                  query_lengths=(16,))
    c.batch_size, c.total_steps, c.optim.warmup_steps = 8, 3, 1
    c.checkpoint_every = 3
  return c
