"""Tuned position interpolation (issue 15): all-MiniLM-L6-v2's 512 position rows interpolated to
`length` / 512 times as many, then only the new rows trained, with PoSE position offsets.

    jaxemb train --config configs/long_pi_tune.py --workdir runs/pi_tune          # 2048 tokens
    jaxemb train --config configs/long_pi_tune.py:length=1024 --workdir runs/pi_tune_1k
    jaxemb train --config configs/long_pi_tune.py:loss=distill --workdir runs/pi_distill
    python benchmarks/long_context.py --model runs/pi_tune/export --methods pi ...  # evaluate

As LongEmbed's further tuning (appendix B): everything but the position table is frozen
(`optim.trainable`) and the recipe keeps the trained rows (i * s) as they were, so inputs within
512 tokens embed exactly as before; documents are cut at `doc_tokens` and their positions
skipped ahead by u ~ U[0, length - l] (`pose=shift`, LongEmbed's variant for absolute positions;
`pose=cut` is PoSE's own: one cut, the second part skipped), so short inputs teach positions up
to `length`; Adam at LongEmbed's rate 5e-4. Loss (`loss`): "infonce" = the default job's
in-batch InfoNCE (LongEmbed's); "distill" = self-distillation, the MSE between the embedding of
a text at its skipped positions and the untouched all-MiniLM-L6-v2's embedding of the same
text at 0 .. l - 1 (recipe `text_distill`, loss "mse"): no labels, and the target says exactly
what the new rows are for, that a text embeds the same wherever in the longer table it falls.
Data (`data`):
"modules" = module docstring -> module source (`stdlib_modules` train, 388 modules), "code" =
the default job's docstring -> function pairs (5,050), "both" = their union. The export
(WORKDIR/export) is a long-context model: `jaxemb.load_pretrained` reads its scaling back.
"""

import codesearch_minilm
import common

DATA = ("modules", "code", "both")
LOSSES = ("infonce", "distill")


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, length=2048, steps=200, lr=5e-4, pose="shift",
                         data="both", doc_tokens=256, batch_size=16, loss="infonce")
  if arg.data not in DATA:
    raise ValueError(f"data must be one of {DATA}, got {arg.data!r}")
  if arg.loss not in LOSSES:
    raise ValueError(f"loss must be one of {LOSSES}, got {arg.loss!r}")
  c = codesearch_minilm.get_config("runlocal" if arg.runlocal else None)
  c.model.position_scaling = "pi"
  c.model.max_seq_length = arg.length
  options = dict(data_dir="", query_lengths=(32,), code_lengths=(arg.doc_tokens,),
                 pose_length=arg.length, pose_mode=arg.pose)
  parts = {"modules": dict(name="stdlib_modules", split="train", **options),
           "code": dict(name=codesearch_minilm.TASK, split="train", **options)}
  c.data = (dict(name="concat", parts=[parts["code"], parts["modules"]])
            if arg.data == "both" else parts[arg.data])
  c.optim.update(lr=arg.lr, weight_decay=0.0, trainable=("model/encoder/embeddings/position",))
  c.batch_size = arg.batch_size
  c.total_steps = arg.steps
  c.optim.warmup_steps = max(1, arg.steps // 10)
  c.evaluators, c.final_evaluators = [], []
  c.eval_every, c.best_metric = 0, ""
  c.checkpoint_every = arg.steps
  c.export = True
  if arg.loss == "distill":
    c.recipe = "text_distill"
    c.teacher = dict(model=c.model.pretrained, cache="")  # the untouched model it starts from
    c.distill = dict(loss="mse", weight=1.0, task_weight=0.0)
  if arg.runlocal:  # the code-search pairs (built by the other tests), a few tiny steps
    c.data = dict(name="stdlib_code_search", split="train[:64]", data_dir="",
                  code_lengths=(32,), query_lengths=(16,), pose_length=arg.length,
                  pose_mode=arg.pose)
    c.batch_size, c.total_steps, c.optim.warmup_steps = 8, 3, 1
    c.checkpoint_every = 3
  return c
