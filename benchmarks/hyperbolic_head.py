"""Does a hyperbolic head help on a hierarchy? Ganea et al. 2018 (Hyperbolic Neural Networks,
sec. 5), on the WordNet mammal closure.

A Poincaré embedding of the shipped mammal closure (1,180 nodes) is trained through the loop
(`configs/poincare.py:mammals,dim=D`). Then, for several subtrees X of different depths and
sizes, a binary task "is this node in the subtree of X (X included)?" is learned from the node's
D coordinates alone by three heads, each a single decision boundary:

  hyperbolic MLR   the HNN++ hyperplane (`jaxemb.nn.hyperbolic.mlr_logits`, one class): the
                   signed distance to a geodesic hyperplane, on the ball point
  Euclidean LR     w·x + b on the same ball coordinates
  log_0 + Eucl. LR w·log_0(x) + b (the tangent space at the origin)

Every head sees the same stratified 80/20 node split (several split seeds), the same class
balancing (each class's training loss weighted by N / (2 N_class)), the same full-batch Adam
(lr, steps) from the same initial scale; F1 of the positive class on the held-out nodes, mean
and standard deviation over splits (and embedding seeds).

    .venv/bin/python benchmarks/hyperbolic_head.py                 # 2-d and 5-d, ~15 min CPU
    .venv/bin/python benchmarks/hyperbolic_head.py --quick         # a tiny run (tests)

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxemb.data import hierarchy  # noqa: E402
from jaxemb.geometry import poincare  # noqa: E402
from jaxemb.nn import hyperbolic  # noqa: E402

# Subtrees of the mammal closure, from the largest order down to a genus-sized group
# (size = the subtree's nodes, root included; depth = the root's number of ancestors).
SUBTREES = ("placental.n.01", "carnivore.n.01", "ungulate.n.01", "canine.n.02",
            "even-toed_ungulate.n.01", "rodent.n.01", "bovid.n.01", "odd-toed_ungulate.n.01",
            "primate.n.02", "feline.n.01", "aquatic_mammal.n.01", "bat.n.01", "marsupial.n.01")
HEADS = ("hyperbolic MLR", "Euclidean LR", "log_0 + Eucl. LR")


def subtree_labels(edges: set[tuple[str, str]], names: tuple[str, ...], root: str) -> np.ndarray:
  """bool [len(names)]: the node is `root` or one of its descendants in the closure `edges`."""
  if root not in names:
    raise ValueError(f"subtree root {root!r} is not a node of the closure")
  inside = {a for a, b in edges if b == root} | {root}
  return np.asarray([n in inside for n in names])


def stratified_split(y: np.ndarray, test_frac: float, seed: int) -> np.ndarray:
  """bool [N] train mask: a `test_frac` share of each class held out, chosen by `seed`."""
  if not 0 < test_frac < 1:
    raise ValueError(f"test_frac must be in (0, 1), got {test_frac!r}")
  rng = np.random.default_rng(seed)
  train = np.ones(len(y), bool)
  for cls in (False, True):
    idx = np.flatnonzero(y == cls)
    if len(idx) < 2:
      raise ValueError(f"class {cls} has {len(idx)} nodes; a split needs at least 2")
    held = rng.permutation(idx)[:max(1, round(test_frac * len(idx)))]
    train[held] = False
  return train


def f1_score(y: np.ndarray, pred: np.ndarray) -> float:
  """F1 of the positive class (0 when nothing is predicted positive and nothing is)."""
  y, pred = np.asarray(y, bool), np.asarray(pred, bool)
  tp = np.sum(y & pred)
  denom = np.sum(y) + np.sum(pred)
  return float(2 * tp / denom) if denom else 0.0


def head_logits(head: str, params: dict, x: jax.Array, c: float) -> jax.Array:
  """[N] binary logits of `head` (one of HEADS) on ball points x [N, D]."""
  if head == "hyperbolic MLR":
    return hyperbolic.mlr_logits(x, params["w"][:, None], params["b"][None], c)[:, 0]
  if head == "Euclidean LR":
    return x @ params["w"] + params["b"]
  if head == "log_0 + Eucl. LR":
    return poincare.logmap0(x, c) @ params["w"] + params["b"]
  raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")


def fit_head(head: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, *, c: float = 1.0,
             steps: int = 5000, lr: float = 0.05, restarts: int = 8,
             seed: int = 0) -> np.ndarray:
  """Trains `head` on the `train` nodes by class-balanced logistic loss: full-batch Adam from
  `restarts` random starts (w ~ N(0, 1/(2D)), b = 0, as HNN++ initialises its hyperplanes),
  keeping the start with the lowest training loss (the hyperbolic head's loss is not convex:
  single starts end in poor local optima on some splits); bool predictions for all N."""
  if head not in HEADS:
    raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
  if restarts < 1 or steps < 1:
    raise ValueError(f"restarts and steps must be >= 1, got {restarts}, {steps}")
  y, train = np.asarray(y, bool), np.asarray(train, bool)
  n_pos, n_neg = float(np.sum(y & train)), float(np.sum(~y & train))
  if not n_pos or not n_neg:
    raise ValueError(f"the training split needs both classes, got {n_pos:.0f} positives and "
                     f"{n_neg:.0f} negatives")
  total = n_pos + n_neg
  weight = train * np.where(y, total / (2 * n_pos), total / (2 * n_neg)) / total
  logits = _fit(head, float(c), int(steps), float(lr), jnp.asarray(x, jnp.float32),
                jnp.asarray(y, jnp.float32), jnp.asarray(weight, jnp.float32),
                jax.random.split(jax.random.key(seed), restarts))
  return np.asarray(logits > 0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _fit(head, c, steps, lr, x, yf, weight, keys):
  # One compilation per (head, shape, restarts): the splits and subtrees only change arrays.
  dim = x.shape[1]
  tx = optax.adam(lr)

  def loss(p):
    return jnp.sum(weight * optax.sigmoid_binary_cross_entropy(head_logits(head, p, x, c), yf))

  def one(key):
    params = {"w": jax.random.normal(key, (dim,)) * (2 * dim) ** -0.5, "b": jnp.zeros(())}

    def step(carry, _):
      p, s = carry
      u, s = tx.update(jax.grad(loss)(p), s, p)
      return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return loss(params), head_logits(head, params, x, c)

  losses, logits = jax.vmap(one)(keys)
  return logits[jnp.argmin(losses)]


def train_embedding(dim: int, epochs: int, seed: int, workdir: str) -> tuple[np.ndarray, tuple]:
  """Poincaré embedding of the mammal closure by the loop: (points [N, dim], node names)."""
  from jaxemb.train import loop
  from jaxemb.train.config import load_config
  burnin = min(20, epochs // 3)
  config = load_config(f"{REPO}/configs/poincare.py:mammals,dim={dim},epochs={epochs},"
                       f"burnin={burnin}")
  config.seed = seed
  config.progress = False
  summary = loop.run(config, workdir)
  points = np.asarray(summary["state"]["params"]["model"]["points"], np.float32)
  return points, summary["recipe"].graph.names, summary["eval_end"]


def evaluate(points: np.ndarray, names: tuple, edges, subtrees, splits: int, steps: int,
             lr: float, restarts: int) -> dict:
  """{subtree: {head: [(held-out F1, training F1) per split]}} on one embedding."""
  out = {}
  for root in subtrees:
    y = subtree_labels(edges, names, root)
    out[root] = {h: [] for h in HEADS}
    for s in range(splits):
      train = stratified_split(y, 0.2, seed=s)
      for h in HEADS:
        pred = fit_head(h, points, y, train, steps=steps, lr=lr, restarts=restarts, seed=s)
        out[root][h].append((f1_score(y[~train], pred[~train]),
                             f1_score(y[train], pred[train])))
  return out


def _means(results: dict, which: int) -> dict:
  return {str(d): {r: {h: round(float(np.mean([f[which] for f in v])), 4) for h, v in hs.items()}
                   for r, hs in per.items()} for d, per in results.items()}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--dims", default="2,5")
  p.add_argument("--epochs", type=int, default=300, help="embedding epochs (incl. burn-in)")
  p.add_argument("--embedding-seeds", type=int, default=2)
  p.add_argument("--splits", type=int, default=5, help="80/20 node splits per embedding")
  p.add_argument("--steps", type=int, default=5000, help="Adam steps per head")
  p.add_argument("--restarts", type=int, default=8, help="random starts per head")
  p.add_argument("--lr", type=float, default=0.05)
  p.add_argument("--quick", action="store_true", help="2-d, 3 epochs, 2 subtrees, 1 split")
  args = p.parse_args(argv)
  subtrees = SUBTREES
  if args.quick:
    args.dims, args.epochs, args.embedding_seeds, args.splits, args.steps = "2", 3, 1, 2, 200
    args.restarts = 2
    subtrees = ("carnivore.n.01", "primate.n.02")
  edges = hierarchy.load_mammals()
  t0 = time.time()
  results, recon = {}, {}
  for dim in (int(d) for d in args.dims.split(",")):
    per = {}
    for seed in range(args.embedding_seeds):
      with tempfile.TemporaryDirectory() as tmp:
        points, names, ev = train_embedding(dim, args.epochs, seed, tmp)
      recon[f"{dim}d/seed{seed}"] = {k.split("/")[-1]: round(float(v), 4) for k, v in ev.items()}
      for root, heads in evaluate(points, names, edges, subtrees, args.splits, args.steps,
                                  args.lr, args.restarts).items():
        for h, f1s in heads.items():
          per.setdefault(root, {}).setdefault(h, []).extend(f1s)
    results[dim] = per

  sizes = {r: int(subtree_labels(edges, names, r).sum()) for r in subtrees}
  print(f"mammal closure ({len(names)} nodes), held-out F1 (%) of 'in the subtree of X', mean ± "
        f"std over {args.embedding_seeds} embedding(s) x {args.splits} splits; "
        f"{args.epochs} embedding epochs, Adam {args.steps} steps lr {args.lr}, best of "
        f"{args.restarts} starts by training loss")
  print("reconstruction of the embeddings:", json.dumps(recon))
  for dim, per in results.items():
    print(f"\n{dim}-d {'subtree':26} {'nodes':>5} " + " ".join(f"{h:>18}" for h in HEADS))
    for root in subtrees:
      cells = []
      test = {h: [f[0] for f in per[root][h]] for h in HEADS}
      best = max(np.mean(v) for v in test.values())
      for h in HEADS:
        m, s = 100 * np.mean(test[h]), 100 * np.std(test[h])
        mark = "*" if np.mean(test[h]) == best else " "
        cells.append(f"{m:10.1f} ± {s:4.1f}{mark}")
      print(f"    {root:26} {sizes[root]:5d} " + " ".join(f"{c:>18}" for c in cells))
  summary = {"test_f1": _means(results, 0), "train_f1": _means(results, 1),
             "sizes": sizes, "reconstruction": recon, "splits": args.splits,
             "embedding_seeds": args.embedding_seeds, "epochs": args.epochs,
             "steps": args.steps, "lr": args.lr, "restarts": args.restarts,
             "wall_s": round(time.time() - t0, 1)}
  print(json.dumps(summary))


if __name__ == "__main__":
  main()
