"""Elastic embeddings and mined negatives on the default code-search job (issue 14).

    jaxemb train --config configs/codesearch_elastic.py:starbucks --workdir runs/cs_starbucks
    jaxemb train --config configs/codesearch_elastic.py:starbucks,runlocal --workdir /tmp/cs

One variant per run, each the default job (`configs/codesearch_minilm.py`: same data, steps,
batch, optimiser) with another objective or data:

  default     in-batch InfoNCE (the default job itself, plus the grid evaluator);
  matryoshka  InfoNCE on nested prefixes (384, 256, 128, 96, 64, 32) of the last layer;
  2dmse       sentence-transformers' Matryoshka2dLoss: last layer + one sampled earlier layer,
              one sampled prefix each, KL alignment to the last layer;
  starbucks   every (layer, dim) of `elastic.MINILM_PAIRS` every step, CE + score KL, with
              the full-size CE weighted `full_weight=120` and symmetric as the default job's
              (`full_weight=1,symmetric=false` is ielab/Starbucks' own weighting; in 100
              steps it leaves the full size 0.07 MRR@10 below the default job, see README);
  mined       InfoNCE with one mined hard negative per query, from
                  jaxemb mine --model all-MiniLM-L6-v2 --task stdlib_code_search:train \
                    --out runs/mined/stdlib_train.jsonl
              (`mined_path=FILE` points elsewhere).

Final evaluation: the (layer, dim) grid (2, 3, 6) x (64, 96, 384) on test, the split of held-out
top-level packages, logged as `test/L<layer>_d<dim>/<metric>`, beside BM25 (`grid=false`: the
full size only, as `test/<metric>`). Each run exports a
sentence-transformers directory to WORKDIR/export (`export_dim=D`: with `truncate_dim` D).
"""

import codesearch_minilm
import common

TASK = codesearch_minilm.TASK
VARIANTS = ("default", "matryoshka", "2dmse", "starbucks", "mined")
DIMS = (384, 256, 128, 96, 64, 32)
GRID = dict(layers=(2, 3, 6), dims=(64, 96, 384))


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, mined_path="runs/mined/stdlib_train.jsonl",
                         export_dim=0, grid=True, full_weight=120.0, symmetric=True,
                         **{v: False for v in VARIANTS})
  chosen = [v for v in VARIANTS if arg[v]]
  if len(chosen) != 1:
    raise ValueError(f"choose exactly one variant of {VARIANTS}, got {chosen or 'none'} "
                     "(e.g. configs/codesearch_elastic.py:starbucks)")
  variant = chosen[0]
  c = codesearch_minilm.get_config("runlocal" if arg.runlocal else None)
  base = dict(c.objective)
  if variant == "matryoshka":
    c.objective = dict(base, name="matryoshka", dims=DIMS, weights=())
  elif variant == "2dmse":
    c.objective = dict(base, name="2dmse", dims=DIMS, weights=(), n_layers_per_step=1,
                       kl_weight=1.0, kl_temperature=0.3, layer_weighting="linear")
  elif variant == "starbucks":
    # ielab/Starbucks: CE query-to-document only, every term weight 1 (full_weight=1,
    # symmetric=false); the default here keeps the full size's share of a 100-step budget.
    c.objective = dict(base, name="starbucks", symmetric=arg.symmetric, kl_weight=1.0,
                       full_weight=arg.full_weight, pairs=(), renormalize=True)
  elif variant == "mined":
    c.data = dict(name="mined_negatives", path=arg.mined_path, num_negatives=1,
                  query_lengths=c.data.query_lengths, code_lengths=c.data.code_lengths)
  c.export_truncate_dim = arg.export_dim  # > 0: the export says truncate_dim (e.g. 96)
  # grid=false: the full size only (one encode of test instead of three, initial and final).
  test = dict(task=TASK, split="test", grid=GRID) if arg.grid else dict(task=TASK, split="test")
  c.final_evaluators = [test, dict(task=TASK, split="test", baseline="bm25")]
  if arg.runlocal:
    c.final_evaluators = [dict(task=TASK, split="validation[:64]",
                               grid=dict(layers=(2, 6), dims=(64, 384)))]
  return c
