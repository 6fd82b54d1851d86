"""jaxemb's Poincaré recipe vs gensim 4.4 `PoincareModel` on the WordNet mammal closure.

Both train on the same shipped closure (1,180 nodes, 6,540 edges) with the same dimension,
negatives, burn-in and epochs, each as its own process (whole-process wall time: start-up,
compilation and training), and both embeddings are scored by the same reconstruction
evaluation (`jaxemb.evaluate.reconstruction`, the paper's mean rank and MAP).

    .venv/bin/python benchmarks/poincare_vs_gensim.py --reference-python /root/refenv/bin/python

gensim runs in a separate interpreter that has it (`pip install gensim==4.4.*` into any venv;
gensim is never a jaxemb dependency); without `--reference-python` only jaxemb runs.
Defaults follow the gensim run of the issue: 5-d, 10 negatives, burn-in 10 epochs + 100
epochs, gensim batch 10 (its default lr 0.1, burn-in lr 0.01); jaxemb uses its config's own
batch (64 edges per step) and lr (4.0).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxemb.data import hierarchy  # noqa: E402
from jaxemb.evaluate.reconstruction import reconstruction  # noqa: E402

_GENSIM = r"""
import json, sys, time
import numpy as np
from gensim.models.poincare import PoincareModel
import gensim
args = json.loads(sys.argv[1])
rel = [tuple(l.rstrip("\n").split("\t")) for l in open(args["closure"])]
t = time.time()
model = PoincareModel(rel, size=args["dim"], negative=args["negatives"], burn_in=args["burnin"],
                      alpha=args["lr"], burn_in_alpha=args["lr"] / 10, seed=args["seed"],
                      workers=1)
model.train(epochs=args["epochs"], batch_size=args["batch"], print_every=10 ** 9)
train_s = time.time() - t
np.savez(args["out"], vectors=model.kv.vectors, names=np.asarray(model.kv.index_to_key))
print(json.dumps({"train_s": train_s, "gensim": gensim.__version__}))
"""


def _dist_rows(points: np.ndarray):
  import jax
  import jax.numpy as jnp
  from jaxemb.geometry import poincare
  pts = jnp.asarray(points, jnp.float32)
  fn = jax.jit(lambda rows: poincare.dist(jnp.take(pts, rows, axis=0)[:, None], pts[None]))
  return lambda rows: fn(jnp.asarray(rows))


def run_jaxemb(args, workdir: str) -> dict:
  spec = (f"configs/poincare.py:mammals,dim={args.dim},negatives={args.negatives},"
          f"epochs={args.epochs + args.burnin},burnin={args.burnin}")
  cmd = [sys.executable, "-m", "jaxemb.cli", "train", "--config", spec, "--workdir", workdir]
  t = time.time()
  subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  wall = time.time() - t
  final = {}
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    final.update({k: v for k, v in json.loads(line).items() if k.startswith("test/")})
  return {"wall_s": wall, "map": final["test/map"], "mean_rank": final["test/mean_rank"],
          "config": spec}


def run_gensim(args, tmp: str) -> dict:
  closure = os.path.join(tmp, "mammals.tsv")
  hierarchy.write_closure(hierarchy.load_mammals(), closure)
  out = os.path.join(tmp, "gensim.npz")
  opts = dict(closure=closure, out=out, dim=args.dim, negatives=args.negatives,
              burnin=args.burnin, epochs=args.epochs, batch=args.gensim_batch,
              lr=args.gensim_lr, seed=args.seed)
  t = time.time()
  res = subprocess.run([args.reference_python, "-c", _GENSIM, json.dumps(opts)], check=True,
                       capture_output=True, text=True)
  wall = time.time() - t
  info = json.loads(res.stdout.strip().splitlines()[-1])
  saved = np.load(out)
  index = {n: i for i, n in enumerate(saved["names"].tolist())}
  graph = hierarchy.to_graph(hierarchy.load_mammals())
  points = saved["vectors"][[index[n] for n in graph.names]]
  m = reconstruction(_dist_rows(points), graph.edges, graph.num_nodes)
  return {"wall_s": wall, "train_s": info["train_s"], "map": m["map"],
          "mean_rank": m["mean_rank"], "version": info["gensim"]}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--reference-python", default="",
                 help="an interpreter with gensim 4.4 (e.g. /root/refenv/bin/python)")
  p.add_argument("--dim", type=int, default=5)
  p.add_argument("--negatives", type=int, default=10)
  p.add_argument("--burnin", type=int, default=10)
  p.add_argument("--epochs", type=int, default=100, help="epochs after the burn-in")
  p.add_argument("--gensim-batch", type=int, default=10)
  p.add_argument("--gensim-lr", type=float, default=0.1)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    rows = {"jaxemb": run_jaxemb(args, os.path.join(tmp, "jaxemb"))}
    if args.reference_python:
      rows["gensim"] = run_gensim(args, tmp)
  print(f"mammal closure, {args.dim}-d, {args.negatives} negatives, burn-in {args.burnin} + "
        f"{args.epochs} epochs")
  print(f"{'':8} {'MAP':>7} {'mean rank':>10} {'wall s':>8}")
  for name, r in rows.items():
    print(f"{name:8} {r['map']:7.3f} {r['mean_rank']:10.2f} {r['wall_s']:8.1f}")
  if "gensim" in rows:
    ratio = rows["gensim"]["wall_s"] / rows["jaxemb"]["wall_s"]
    print(f"wall-time ratio gensim / jaxemb: {ratio:.2f}x"
          f" (gensim {rows['gensim']['version']})")
  print(json.dumps(rows))


if __name__ == "__main__":
  main()
