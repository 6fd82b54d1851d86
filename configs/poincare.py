"""Poincaré embeddings of WordNet closures (recipe `poincare`), Nickel & Kiela 2017.

    jaxemb train --config configs/poincare.py:mammals --workdir DIR
    jaxemb train --config configs/poincare.py:mammals,runlocal --workdir DIR   # a few steps
    jaxemb train --config configs/poincare.py:nouns --workdir DIR    # needs wordnet-base

mammals: the filtered mammal.n.01 closure (1,180 nodes, 6,540 edges, shipped), 5-d ball,
50 negatives, Riemannian SGD, 300 epochs of which 20 burn-in at lr/10; reconstruction mean
rank / MAP at the end (`test/mean_rank`, `test/map`). The reference (train-mammals.sh) uses
batch 10 at lr 0.3 (mean loss: 0.03 per edge); here 64 edges per step (8 rows of 8) at lr 4
(0.0625 per edge), 6.4x fewer steps.
Options: runlocal, dim=N, epochs=N, burnin=N, lr=X, negatives=N, edges=N (edges per step),
optimizer=rsgd|radam, evals=N (evaluations during training), burnin_negatives=uniform|degree
(degree: burn-in negatives ∝ descendants^0.75, as the reference implementation).
"""

import math

import common

ROWS = 8  # rows per step: divisible by 1, 2, 4, 8 devices
# Closure sizes (jaxemb.data.hierarchy on WordNet 3.0): epochs -> steps without loading the data.
EDGES = {"mammals": 6540, "nouns": 743086}


def get_config(arg=None):
  name, _, rest = (arg or "mammals").partition(",")
  if name not in EDGES:
    raise ValueError(f"unknown poincare run {name!r}; choose one of {sorted(EDGES)}")
  opts = common.parse_arg(rest, runlocal=False, dim=5, epochs=300, burnin=20, lr=4.0,
                          negatives=50, edges=64, optimizer="rsgd", evals=0,
                          burnin_negatives="uniform")
  c = common.base_config(recipe="poincare")
  if opts.edges % ROWS:
    raise ValueError(f"edges={opts.edges} (edges per step) must be a multiple of {ROWS}")
  rows = ROWS
  c.batch_size = rows
  c.model = dict(dim=opts.dim, c=1.0, init_range=1e-3, eps=1e-5)
  c.data = dict(closure=name, edges_per_row=opts.edges // rows)
  c.objective = dict(num_negatives=opts.negatives, burnin_epochs=opts.burnin,
                     burnin_factor=0.1, burnin_negatives=opts.burnin_negatives)
  c.optim.lr = opts.lr
  c.riemannian = dict(optimizer=opts.optimizer, momentum=0.0, retraction="retr")
  steps_per_epoch = math.ceil(EDGES[name] / (rows * (opts.edges // rows)))
  c.total_steps = steps_per_epoch * opts.epochs
  c.log_every = steps_per_epoch * 10
  c.eval_every = c.total_steps // opts.evals if opts.evals else 0
  c.checkpoint_every = c.total_steps
  c.keep_checkpoints = 1
  c.evaluators = [dict(split="test")] if opts.evals else []
  c.final_evaluators = [dict(split="test")]
  c.mesh = dict(data=-1, fsdp=1, tensor=1)
  c.logical_axis_rules = (("node", None), ("embed", None))  # a small table: replicated
  if opts.runlocal:
    c.model.dim = 2
    c.objective.num_negatives = 5
    c.objective.burnin_epochs = 0
    c.total_steps = 6
    c.log_every = 2
    c.eval_every = 3
    c.evaluators = [dict(split="test")]
    c.checkpoint_every = 3
    c.progress = False
  return c
