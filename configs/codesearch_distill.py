"""Distillation: a 3-layer student (all-MiniLM-L6-v2's first 3 layers) from the 6-layer model.

    jaxemb train --config configs/codesearch_distill.py:score_kl --workdir runs/distill_kl
    jaxemb train --config configs/codesearch_distill.py:runlocal,trg --workdir /tmp/distill_trg

Exactly one loss: `mse` (embedding MSE to the teacher, queries and codes), `score_kl` (in-batch
score KL from the teacher's similarity matrix, T = 0.05) or `trg` (token relationship graph:
node + edge terms on query and code tokens). Pure distillation (`distill.task_weight=0`) on the
stdlib code-search training pairs (queries and code as the texts to match), the same data,
batch, optimiser and budget as the pooling ablation (`codesearch_pooling.py`, 15 steps); mse and
score_kl read teacher embeddings cached once (`--config.teacher.cache=FILE` keeps them across
runs), trg runs the frozen teacher in the loss. Test is evaluated after the last step; the
student exports to WORKDIR/export.
"""

import codesearch_minilm
import codesearch_pooling
import common

LOSSES = ("mse", "score_kl", "trg")
STUDENT_LAYERS = 3


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, steps=codesearch_pooling.STEPS,
                         **{k: False for k in LOSSES})
  chosen = [k for k in LOSSES if arg[k]]
  if len(chosen) != 1:
    raise ValueError(f"codesearch_distill needs exactly one loss of {list(LOSSES)}, got "
                     f"{chosen or 'none'}")
  c = codesearch_minilm.get_config("runlocal" if arg.runlocal else None)
  c.recipe = "text_distill"
  c.model.num_layers = STUDENT_LAYERS
  c.teacher = dict(model="all-MiniLM-L6-v2", cache="")
  c.distill = dict(loss=chosen[0], weight=1.0, task_weight=0.0, temperature=0.05,
                   teacher_temperature=0.0, node_weight=1.0, edge_weight=1.0,
                   node_temperature=0.1, edge_temperature=0.1)
  if not arg.runlocal:
    codesearch_pooling.short_budget(c, arg.steps)
  return c
