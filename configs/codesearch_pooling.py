"""Pooling ablation: all-MiniLM-L6-v2 fine-tuned for code search with each pooling head.

    jaxemb train --config configs/codesearch_pooling.py:latent_attention --workdir runs/pool_la
    jaxemb train --config configs/codesearch_pooling.py:runlocal,cls --workdir /tmp/pool_cls

Exactly one head: `mean` (MiniLM's own), `cls`, `last_token`, `latent_attention` (NV-Embed:
token states attend to 512 trainable latents, residual + MLP, masked mean) or `multi_layer`
(trainable softmax weights over the mean-pooled embeddings and 6 layers). The pretrained encoder
keeps its weights; a trainable head starts from its initialisation. Data, batch and optimiser
are the default job's (`codesearch_minilm.py`); the budget is smaller, `STEPS` = 15 steps
(`:steps=100` gives the default job's), because 8 runs had to share a loaded 2-core CPU. One
length per side (32 query / 64 code tokens, the default ladder's longest) compiles one step
program. Test is evaluated once, after the last step; no validation, BM25 or zero-shot rows
(the same for every head); only heads with a sentence-transformers equivalent export.
"""

import codesearch_minilm
import common

KINDS = ("mean", "cls", "last_token", "latent_attention", "multi_layer")
OPTIONS = {"latent_attention": dict(num_latents=512, num_heads=8)}
EXPORTABLE = ("mean", "cls", "last_token")
STEPS = 15


def short_budget(c, steps: int):
  """The ablation budget on a default-job config `c`: `steps` steps (10% warm-up), one length
  per side, test evaluated once after the last step, checkpoint at the end only."""
  c.total_steps = steps
  c.optim.warmup_steps = max(1, steps // 10)
  c.data.query_lengths = (c.data.query_lengths[-1],)
  c.data.code_lengths = (c.data.code_lengths[-1],)
  c.evaluators = [dict(task=codesearch_minilm.TASK, split="test")]
  c.eval_every = steps
  c.final_evaluators = []
  c.best_metric = ""
  c.checkpoint_every = steps
  c.keep_checkpoints = 1
  return c


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, steps=STEPS, **{k: False for k in KINDS})
  chosen = [k for k in KINDS if arg[k]]
  if len(chosen) != 1:
    raise ValueError(f"codesearch_pooling needs exactly one pooling head of {list(KINDS)}, got "
                     f"{chosen or 'none'}")
  kind = chosen[0]
  c = codesearch_minilm.get_config("runlocal" if arg.runlocal else None)
  c.model.pooling = kind
  c.model.pooling_options = dict(OPTIONS.get(kind, {}))
  c.export = kind in EXPORTABLE
  if not arg.runlocal:
    short_budget(c, arg.steps)
  return c
