"""Knowledge-graph embedding runs with PyKEEN 1.11.1's hyper-parameters (recipe `kge`).

    jaxemb train --config configs/kge.py:rotate_umls_nssa32 --workdir DIR
    jaxemb train --config configs/kge.py:rotate_umls_nssa32,runlocal --workdir DIR   # tiny

Every run: 100 epochs, Adam lr 1e-2 (constant), seed 0, `dim` = PyKEEN's `embedding_dim`
(complex dimensions for RotatE/ComplEx), basic negative sampler, filtered realistic ranks on
test at the end and on validation every 20 epochs (the test metrics are those of the checkpoint
best by validation MRR: `final_from_best`).
An epoch is ceil(#train / batch) steps, as PyKEEN's (which keeps the last, smaller batch; here
every batch is full and the shuffled order runs on across epochs).
Options after the run name: runlocal (a few steps), epochs=N, mesh=data|fsdp (fsdp: the entity
table sharded by rows over all devices).
"""

import math

import common

ROWS = 8  # rows per step: divisible by 1, 2, 4, 8 devices
TRAIN_TRIPLES = {"nations": 1592, "umls": 5216, "kinships": 8544}
# Unique LCWA training queries per graph and target (`jaxemb.data.kg.lcwa_queries`; tested).
TRAIN_QUERIES = {("nations", "tail"): 471, ("nations", "both"): 909, ("umls", "tail"): 810,
                 ("umls", "both"): 1560, ("kinships", "tail"): 1689, ("kinships", "both"): 3131}

RUNS = {
    "rotate_nations_default": dict(
        graph="nations", interaction="rotate", dim=64, batch=256,
        objective=dict(loss="margin_ranking", margin=1.0, num_negatives=1)),
    "rotate_nations_nssa64": dict(
        graph="nations", interaction="rotate", dim=64, batch=256,
        objective=dict(loss="nssa", margin=9.0, adversarial_temperature=1.0, num_negatives=64)),
    "rotate_umls_nssa32": dict(
        graph="umls", interaction="rotate", dim=128, batch=512,
        objective=dict(loss="nssa", margin=9.0, adversarial_temperature=1.0, num_negatives=32)),
    "complex_umls_softplus": dict(
        graph="umls", interaction="complex", dim=128, batch=512,
        objective=dict(loss="softplus", num_negatives=1, regularizer_weight=0.01,
                       regularizer_p=2.0, regularizer_normalize=True)),
    "transe_umls_margin": dict(
        graph="umls", interaction="transe", dim=128, batch=512, p=1,
        objective=dict(loss="margin_ranking", margin=1.0, num_negatives=1)),
    "rotate_kinships_nssa32": dict(
        graph="kinships", interaction="rotate", dim=128, batch=512,
        objective=dict(loss="nssa", margin=9.0, adversarial_temperature=1.0, num_negatives=32)),
    # rotate_umls_nssa32 with LEMON-style negatives: half from the replaced entity's cluster
    # of MiniLM label embeddings (16 clusters), half uniform.
    "rotate_umls_lemon": dict(
        graph="umls", interaction="rotate", dim=128, batch=512,
        objective=dict(loss="nssa", margin=9.0, adversarial_temperature=1.0, num_negatives=32,
                       sampler="lemon", lemon_clusters=16, lemon_mix=0.5)),
    # LCWA (1-N) beside complex_umls_softplus (sLCWA): batch counts queries, scored against all
    # entities, BCE over the multi-hot labels; both sides (tail and head queries).
    "complex_umls_lcwa": dict(
        graph="umls", interaction="complex", dim=128, batch=128,
        objective=dict(training="lcwa", target="both", loss="bce", regularizer_weight=0.01,
                       regularizer_p=2.0, regularizer_normalize=True)),
}


def get_config(arg=None):
  name, _, rest = (arg or "rotate_umls_nssa32").partition(",")
  if name not in RUNS:
    raise ValueError(f"unknown kge run {name!r}; choose one of {sorted(RUNS)}")
  opts = common.parse_arg(rest, runlocal=False, epochs=100, mesh="data")
  run = RUNS[name]
  c = common.base_config(recipe="kge")
  c.model = dict(interaction=run["interaction"], dim=run["dim"])
  if "p" in run:
    c.model.p = run["p"]
  # A step reads ROWS rows of batch / ROWS triples (see the recipe): PyKEEN's batch per step.
  c.data = dict(graph=run["graph"], data_dir="", triples_per_row=run["batch"] // ROWS)
  lcwa = run["objective"].get("training") == "lcwa"
  c.objective = dict(run["objective"]) if lcwa else {"sampler": "basic", **run["objective"]}
  c.optim = dict(lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=0.0)
  c.batch_size = ROWS
  examples = (TRAIN_QUERIES[run["graph"], run["objective"]["target"]] if lcwa
              else TRAIN_TRIPLES[run["graph"]])
  steps_per_epoch = math.ceil(examples / run["batch"])
  c.total_steps = steps_per_epoch * opts.epochs
  c.log_every = steps_per_epoch * 10
  c.eval_every = steps_per_epoch * 20
  c.checkpoint_every = c.total_steps
  c.keep_checkpoints = 1
  c.evaluators = [dict(split="validation")]
  c.final_evaluators = [dict(split="test")]
  c.best_metric = "validation/mrr"
  c.best_mode = "max"
  c.final_from_best = True  # test metrics of the checkpoint best on validation (early stopping)
  if opts.mesh == "fsdp":
    c.mesh = dict(data=1, fsdp=-1, tensor=1)
  elif opts.mesh != "data":
    raise ValueError(f"mesh={opts.mesh!r} is not 'data' or 'fsdp'")
  # Entity and relation tables shard by rows over 'fsdp' (replicated on a pure 'data' mesh).
  c.logical_axis_rules = (("entity", "fsdp"), ("relation", None), ("embed", None))
  if opts.runlocal:
    c.model.dim = 8
    c.data.triples_per_row = 4  # 32 triples per step
    c.total_steps = 6
    c.log_every = 2
    c.eval_every = 3
    c.checkpoint_every = 3
    c.progress = False
  return c
