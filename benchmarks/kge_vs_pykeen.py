"""jaxemb vs PyKEEN 1.11 on the runs of `configs/kge.py`: filtered MRR / Hits@10 and wall time.

    python benchmarks/kge_vs_pykeen.py --reference-python /root/refenv/bin/python
    python benchmarks/kge_vs_pykeen.py --runs rotate_umls_nssa32,transe_umls_margin \
        --reference-python /root/refenv/bin/python --json out.json
    python benchmarks/kge_vs_pykeen.py --scale 1000000,10000000 --devices 8   # sharded scale

Each run is one fresh process per tool (whole-process wall time: interpreter start, imports,
data, compilation, 100 epochs of training, evaluation), jaxemb first, then PyKEEN via
`pykeen.pipeline` with the same hyper-parameters (sLCWA, basic sampler, Adam lr 1e-2, seed 0;
filtered realistic ranks on test with train+valid as extra filters). PyKEEN's per-epoch
`gc.collect()` is disabled (it only costs time; the metrics are unchanged). The reference Python
needs `pip install pykeen==1.11.1` (torch CPU is enough); without `--reference-python` only
jaxemb runs. CPU seconds (user + sys of the child) are printed too: on a shared machine they are
steadier than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs"))
import kge as kge_configs  # noqa: E402  (configs/kge.py: the run table)

_JAXEMB = r"""
import json, sys, time
t0 = time.perf_counter()
from jaxemb.train.config import load_config
from jaxemb.train.loop import run
c = load_config(sys.argv[1])
c.progress = False
c.evaluators = []          # no periodic validation: PyKEEN's pipeline runs none either
c.eval_every = 0
c.final_evaluators = [dict(split="test")]
s = run(c, sys.argv[2])
out = {k.split("/", 1)[1]: v for k, v in s["eval_end"].items()}
out["in_process_s"] = time.perf_counter() - t0
print("RESULT " + json.dumps(out), flush=True)
"""

_PYKEEN = r"""
import json, sys, time, types
t0 = time.perf_counter()
import pykeen.training.training_loop as training_loop
training_loop.gc = types.SimpleNamespace(collect=lambda: 0)  # per-epoch gc.collect(): time only
from pykeen.pipeline import pipeline
spec = json.loads(sys.argv[1])
loss_kwargs = {k: spec["objective"][k] for k in ("margin", "adversarial_temperature")
               if k in spec["objective"]}
names = {"margin_ranking": "marginranking", "nssa": "nssa", "softplus": "softplus",
         "bce": "bcewithlogits", "cross_entropy": "crossentropy"}
model_kwargs = dict(embedding_dim=spec["dim"])
if spec["interaction"] == "transe":
    model_kwargs["scoring_fct_norm"] = spec.get("p", 1)
result = pipeline(
    dataset=spec["graph"], model={"rotate": "RotatE", "complex": "ComplEx", "transe": "TransE",
                                  "distmult": "DistMult"}[spec["interaction"]],
    model_kwargs=model_kwargs, loss=names[spec["objective"]["loss"]], loss_kwargs=loss_kwargs,
    training_loop="sLCWA", negative_sampler="basic",
    negative_sampler_kwargs=dict(num_negs_per_pos=spec["objective"]["num_negatives"]),
    optimizer="Adam", optimizer_kwargs=dict(lr=1e-2),
    training_kwargs=dict(num_epochs=spec["epochs"], batch_size=spec["batch"]),
    random_seed=0, device="cpu", use_tqdm=False)
m = result.metric_results
out = {"mrr": m.get_metric("both.realistic.inverse_harmonic_mean_rank"),
       "hits@10": m.get_metric("both.realistic.hits_at_10"),
       "mr": m.get_metric("both.realistic.arithmetic_mean_rank"),
       "train_s": result.train_seconds, "in_process_s": time.perf_counter() - t0}
print("RESULT " + json.dumps(out), flush=True)
"""


_SCALE = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np, optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxemb import functional
from jaxemb.data import kg
from jaxemb.evaluate import link_prediction as lp
from jaxemb.nn import kge
from jaxemb.objectives import kge as obj
from jaxemb.train import mesh as mesh_lib
E, T, steps, dim, batch, negs, n_eval = (int(x) for x in sys.argv[1:8])
t = time.perf_counter()
g = kg.synthetic(E, 100, T, seed=0, valid_fraction=0.0, test_fraction=n_eval / T)
gen_s = time.perf_counter() - t
mesh = mesh_lib.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
n = mesh.shape["fsdp"]
model = kge.KGEModel("rotate", E, 100, dim, row_axis="fsdp", rngs=nnx.Rngs(0))
graph, params = functional.split(model)
shard = {"entity": NamedSharding(mesh, P("fsdp", None)), "relation": NamedSharding(mesh, P())}
params = {k: jax.device_put(v, shard[k]) for k, v in params.items()}
tx = optax.adam(1e-2)
opt = jax.jit(tx.init)(params)

def loss(p, pos, key):
  m = functional.merge(graph, p)
  neg = obj.corrupt_basic(key, pos, negs, E)
  ps = m.score_hrt(pos[:, 0], pos[:, 1], pos[:, 2])
  ns = m.score_hrt(neg[..., 0], neg[..., 1], neg[..., 2])
  return obj.nssa(ps, ns)[0]

@jax.jit
def step(p, o, pos, key):
  l, grads = jax.value_and_grad(loss)(p, pos, key)
  updates, o = tx.update(grads, o, p)
  return kge.constrain("rotate", optax.apply_updates(p, updates)), o, l

rng = np.random.default_rng(0)
with jax.set_mesh(mesh):
  bs = NamedSharding(mesh, P("fsdp", None))
  batches = [jax.device_put(g.train[rng.integers(0, len(g.train), batch)], bs) for _ in range(4)]
  params, opt, l = step(params, opt, batches[0], jax.random.key(0))
  jax.block_until_ready(l)
  t = time.perf_counter()
  for i in range(steps):
    params, opt, l = step(params, opt, batches[i % 4], jax.random.key(i))
  jax.block_until_ready(l)
  train_s = time.perf_counter() - t
  m = functional.merge(graph, params)
  fns = (lambda p, h, r: functional.merge(graph, p).score_t_matmul(h, r),
         lambda p, r, t: functional.merge(graph, p).score_h_matmul(r, t))
  t = time.perf_counter()
  metrics = lp.evaluate(*fns, params, g.test, g.all_triples(), E, budget=1 << 24)
  eval_s = time.perf_counter() - t
shard_bytes = params["entity"].addressable_shards[0].data.nbytes
out = {"entities": E, "triples": int(len(g.all_triples())), "devices": n, "dim": dim,
       "batch": batch, "negatives": negs, "generate_s": gen_s,
       "triples_per_s": steps * batch / train_s, "step_ms": 1000 * train_s / steps,
       "eval_triples": int(len(g.test)), "eval_s": eval_s, "eval_mrr": metrics["mrr"],
       "entity_shard_mb": shard_bytes / 2**20,
       "entity_param_plus_adam_mb_per_device": 3 * shard_bytes / 2**20}
print("RESULT " + json.dumps(out), flush=True)
"""


def run_scale(entities: int, triples: int, steps: int, devices: int, dim: int = 32,
              batch: int = 4096, negatives: int = 32, eval_triples: int = 1000) -> dict:
  """RotatE NSSA steps on a synthetic power-law graph with the entity table row-sharded over
  `devices` (fake CPU devices unless real ones exist), then filtered evaluation of about
  `eval_triples` held-out triples (both sides, against all entities). Memory per device is
  computed from the shard: entity rows plus Adam's two moments of the same shape."""
  # A longer collective timeout: on a loaded CPU the 8 device threads may take more than
  # XLA's default 40 s to meet at an all-gather, which aborts the process.
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} "
                                    "--xla_cpu_collective_call_terminate_timeout_seconds=1200"}
  return _child([sys.executable, "-c", _SCALE, str(entities), str(triples), str(steps),
                 str(dim), str(batch), str(negatives), str(eval_triples)], env)


def _child(cmd: list[str], env: dict | None = None) -> dict:
  """Runs `cmd`; its RESULT json plus whole-process wall and CPU seconds."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode != 0:
    raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
  out = json.loads(line[len("RESULT "):])
  out["wall_s"] = wall
  out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  return out


def run_jaxemb(name: str, epochs: int, data_dir: str | None) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    config = f"{REPO}/configs/kge.py:{name},epochs={epochs}"
    env = dict(os.environ)
    if data_dir:
      env["JAXEMB_DATA_DIR"] = data_dir
    return _child([sys.executable, "-c", _JAXEMB, config, workdir], env)


def pykeen_has(name: str) -> bool:
  """Whether the run has a PyKEEN counterpart here: not LEMON negatives (not in PyKEEN) and
  not LCWA (this script drives PyKEEN's sLCWA pipeline only)."""
  objective = kge_configs.RUNS[name]["objective"]
  return objective.get("sampler", "basic") == "basic" and objective.get("training") != "lcwa"


def run_pykeen(python: str, name: str, epochs: int) -> dict:
  spec = dict(kge_configs.RUNS[name], epochs=epochs)
  return _child([python, "-c", _PYKEEN, json.dumps(spec)])


def table(rows: list[dict]) -> str:
  """Markdown table: MRR / Hits@10 side by side, wall and CPU seconds, speed-up."""
  head = ("| run | MRR jaxemb | MRR PyKEEN | H@10 jaxemb | H@10 PyKEEN | wall s jaxemb | "
          "wall s PyKEEN | wall ratio | CPU s jaxemb | CPU s PyKEEN |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    j, p = r["jaxemb"], r.get("pykeen")
    f = lambda d, k, fmt: format(d[k], fmt) if d and k in d else "-"
    ratio = f"{p['wall_s'] / j['wall_s']:.1f}x" if p else "-"
    lines.append(f"| {r['run']} | {f(j, 'mrr', '.3f')} | {f(p, 'mrr', '.3f')} | "
                 f"{f(j, 'hits@10', '.3f')} | {f(p, 'hits@10', '.3f')} | "
                 f"{f(j, 'wall_s', '.1f')} | {f(p, 'wall_s', '.1f')} | {ratio} | "
                 f"{f(j, 'cpu_s', '.1f')} | {f(p, 'cpu_s', '.1f')} |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", default=",".join(kge_configs.RUNS),
                      help="comma-separated names from configs/kge.py")
  parser.add_argument("--reference-python", default="",
                      help="a Python with pykeen==1.11.1 installed (omit: jaxemb only)")
  parser.add_argument("--epochs", type=int, default=100)
  parser.add_argument("--data-dir", default="", help="TFDS data directory for jaxemb")
  parser.add_argument("--json", default="", help="also write the rows as JSON here")
  parser.add_argument("--scale", default="",
                      help="ENTITIES,TRIPLES: instead, the sharded scale benchmark (e.g. "
                           "1000000,10000000) on --devices devices")
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--scale-steps", type=int, default=200)
  parser.add_argument("--scale-eval", type=int, default=1000,
                      help="held-out triples evaluated in the scale benchmark")
  args = parser.parse_args(argv)
  if args.scale:
    entities, triples = (int(x) for x in args.scale.split(","))
    result = run_scale(entities, triples, args.scale_steps, args.devices,
                       eval_triples=args.scale_eval)
    print(json.dumps(result, indent=2))
    if args.json:
      with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    return
  names = [n for n in args.runs.split(",") if n]
  unknown = sorted(set(names) - set(kge_configs.RUNS))
  if unknown:
    raise SystemExit(f"unknown runs {unknown}; choose from {sorted(kge_configs.RUNS)}")
  rows = []
  for name in names:
    row = {"run": name, "jaxemb": run_jaxemb(name, args.epochs, args.data_dir or None)}
    print(f"{name}: jaxemb {row['jaxemb']}", flush=True)
    if args.reference_python and pykeen_has(name):
      row["pykeen"] = run_pykeen(args.reference_python, name, args.epochs)
      print(f"{name}: pykeen {row['pykeen']}", flush=True)
    rows.append(row)
  print(table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
