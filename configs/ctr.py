"""Click-through-rate prediction: a DLRM over one kind of embedding table (recipe `ctr`).

    jaxemb train --config configs/ctr.py:unified --workdir runs/ctr_unified
    jaxemb train --config configs/ctr.py:hashed,budget=0.25 --workdir runs/ctr_hashed_q
    jaxemb train --config configs/ctr.py:optembed,runlocal --workdir /tmp/ctr
    jaxemb train --config configs/ctr.py:optembed,stages,budget=0.25 --workdir runs/optembed

The first word names the table (full, hashed, qr, unified, optembed); then options:
`budget` (fraction of the full tables' parameters), `data` (a synthetic_ctr config: ci, cpu,
drift, full), `rowwise` (row-wise Adagrad for the tables), `runlocal` (tiny, seconds),
`stages` (optembed: supernet + pruning in DIR/supernet, the dims search under `budget`, then the
retrain in DIR, in one command; `jaxemb.recipes.ctr.run_optembed_stages`), `init_std` (table
rows start N(0, init_std^2); 0: each table's own unit-norm default).

Tables start small (std 0.01, as TorchRec's uniform(+-1/sqrt(rows)) does for large tables): with
about unit-norm rows, the many rows a short run barely updates stay random noise in the
interactions, which cost the full tables 0.023 AUC on `ci` data and reversed the ordering of
the compressed tables (README). OptEmbed keeps its own default: its row pruning compares row
magnitudes with thresholds that start at 0, and small rows were pruned wholesale.
"""

import common

TABLES = ("full", "hashed", "qr", "unified", "optembed")
# table rows over the data axis (the lookup is a shard_map: no table all-gather); the rest as the
# loop's defaults
RULES = (("table_rows", "data"), ("table_dim", None), ("vocab", "tensor"), ("embed", "fsdp"),
         ("mlp", "tensor"))


def get_config(arg: str | None = None):
  words = [w.strip() for w in (arg or "").split(",") if w.strip()]
  table = words.pop(0) if words and words[0] in TABLES else "unified"
  arg = common.parse_arg(",".join(words), runlocal=False, budget=1.0, data="ci", rowwise=False,
                         dim=16, steps=800, stages=False, init_std=0.01)
  if arg.stages and table != "optembed":
    raise ValueError(f"the stages option is OptEmbed's (supernet, search, retrain); got table "
                     f"{table!r}")
  c = common.base_config(recipe="ctr")
  c.model = dict(table=table, dim=arg.dim, budget=arg.budget, num_hashes=2, probes=2,
                 qr_combine="mult", bottom=(64,), top=(64, 32), row_axis="data",
                 optembed_dims=(), optembed_keep="", threshold_init=0.0, pad_rows_to=64,
                 optembed_stages=arg.stages, optembed_population=8, optembed_generations=3,
                 init_std=0.0 if table == "optembed" else arg.init_std)
  c.data = dict(builder=arg.data, spec={}, data_dir="")
  c.objective = dict(table_optimizer="rowwise_adagrad" if arg.rowwise else "adamw",
                     table_lr=0.05, optembed_reg=1e-4)
  c.logical_axis_rules = RULES
  c.optim.update(lr=2e-3, warmup_steps=20, weight_decay=0.0, clip_norm=0.0)
  c.batch_size = 256
  c.total_steps = arg.steps
  c.log_every = 50
  c.checkpoint_every = 400
  c.eval_every = 0
  c.evaluators = [dict(split="validation")]
  c.final_evaluators = [dict(split="test")]
  if arg.runlocal:
    c.data.spec = dict(num_train=2048, num_validation=256, num_test=512)
    c.model.dim = 8
    c.model.bottom = (16,)
    c.model.top = (16,)
    c.batch_size = 64
    c.total_steps = 20
    c.optim.warmup_steps = 2
    c.log_every = 5
    c.checkpoint_every = 10
    c.model.optembed_population = 4
    c.model.optembed_generations = 2
  return c
