"""Embedding tables: the CTR experiment (AUC / log-loss vs parameters) and lookup+update speed.

    # AUC and log-loss of every table at 1x, 1/4, 1/16 of the full tables' parameters, beside the
    # oracle AUC; one run at a time through the shared loop (configs/ctr.py)
    nice python benchmarks/tables.py experiment --data ci --steps 400 --out runs/tables.jsonl

    # lookups+updates per second of a 10^7 x 64 table with sparse row-wise Adagrad, on 1 and on 8
    # (fake CPU) devices, rows sharded over the devices
    python benchmarks/tables.py throughput --devices 1
    python benchmarks/tables.py throughput --devices 8

`experiment` appends one JSON line per run to --out (reruns skip finished runs) and prints a
markdown table; `throughput` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BUDGETS = (1.0, 0.25, 0.0625)
TABLES = ("full", "hashed", "qr", "unified")


# ---------------------------------------------------------------------------------------------
# Experiment.
# ---------------------------------------------------------------------------------------------

def _config(table: str, budget: float, args, **model):
  from jaxemb.train.config import load_config
  c = load_config(f"{REPO}/configs/ctr.py:{table},budget={budget},data={args.data},"
                  f"steps={args.steps}")
  c.progress = False
  c.evaluators = []
  c.final_evaluators = [dict(split="test")]
  c.checkpoint_every = args.steps
  c.async_checkpoint = False
  c.seed = args.seed
  if args.data_dir:
    c.data.data_dir = args.data_dir
  for item in filter(None, args.model.split(",")):
    key, _, value = item.partition("=")
    c.model[key] = type(c.model[key])(value)
  for k, v in model.items():
    c.model[k] = v
  return c


def _run(name: str, config, args, done: dict) -> dict:
  from jaxemb.train import loop
  if args.tag:
    name = f"{name}_{args.tag}"
  if args.seed:
    name = f"{name}_seed{args.seed}"
  if name in done:
    return done[name]
  start = time.perf_counter()
  summary = loop.run(config, os.path.join(args.workdir, name))
  table = config.model.table + (f" ({args.tag})" if args.tag else "")
  row = {"name": name, "table": table, "budget": config.model.budget,
         "seed": config.seed,
         **summary["eval_end"], "seconds": time.perf_counter() - start}
  with open(args.out, "a") as f:
    f.write(json.dumps(row) + "\n")
  print(json.dumps(row), flush=True)
  done[name] = row
  return row


def experiment(args) -> None:
  import jax
  import numpy as np
  from jaxemb.recipes import ctr
  done = {}
  if os.path.exists(args.out):
    for line in open(args.out):
      row = json.loads(line)
      done[row["name"]] = row
  for table in args.tables.split(","):
    if table == "optembed":
      continue
    for budget in BUDGETS:
      _run(f"{table}_{budget:g}", _config(table, budget, args), args, done)
  if "optembed" not in args.tables.split(","):
    print(table_markdown(list(done.values())))
    return
  # OptEmbed: one supernet, a search per budget, a retrain per budget
  supernet_dir = os.path.join(args.workdir, f"optembed_supernet_seed{args.seed}")
  config = _config("optembed", 1.0, args)
  from jaxemb.train import loop
  summary = loop.run(config, supernet_dir)  # finished workdir: restores, trains nothing
  model = summary["graph"].merge(jax.device_get(summary["state"]["params"]["model"]))
  full = model.tables.rows * model.tables.dim
  for budget in BUDGETS:
    name = f"optembed_{budget:g}"
    if (f"{name}_seed{args.seed}" if args.seed else name) in done:
      continue
    dims, keep, val_auc = ctr.optembed_search(summary["recipe"], model, budget * full,
                                              population=8, generations=3)
    keep_path = os.path.join(args.workdir, f"{name}_keep.npy")
    np.save(keep_path, keep)
    row = _run(name, _config("optembed", budget, args, optembed_dims=tuple(int(d) for d in dims),
                             optembed_keep=keep_path), args, done)
    print(f"{name}: dims {list(dims)} search validation AUC {val_auc:.4f}", flush=True)
    del row
  print(table_markdown(list(done.values())))


def table_markdown(rows: list[dict]) -> str:
  """Markdown table: one row per table kind, columns per budget (AUC / log-loss / params)."""
  groups: dict = {}
  for r in rows:
    groups.setdefault((r["table"], r["budget"]), []).append(r)
  by = {k: {m: float(sum(r[m] for r in v) / len(v)) for m in
            ("test/auc", "test/logloss", "params/embedding")} | {"n": len(v)}
        for k, v in groups.items()}
  oracle = next((r["test/oracle_auc"] for r in rows), float("nan"))
  head = ("| table | " + " | ".join(f"{b:g}x: AUC / log-loss / params" for b in BUDGETS)
          + " |")
  lines = [head, "|---" * (len(BUDGETS) + 1) + "|"]
  for table in sorted({r["table"] for r in rows}, key=lambda t: (
      [*TABLES, "optembed"].index(t.split(" ")[0]), t)):
    cells = []
    for b in BUDGETS:
      r = by.get((table, b))
      seeds = "" if r is None or r["n"] == 1 else f" (mean of {r['n']} seeds)"
      cells.append("-" if r is None else
                   f"{r['test/auc']:.4f} / {r['test/logloss']:.4f} / "
                   f"{int(r['params/embedding']):,}{seeds}")
    lines.append(f"| {table} | " + " | ".join(cells) + " |")
  lines.append(f"\noracle (teacher) test AUC: {oracle:.4f}")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Throughput.
# ---------------------------------------------------------------------------------------------

def throughput(args) -> None:
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P

  rows, dim, batch, lr = args.rows, args.dim, args.batch, 0.05
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ("rows",), axis_types=(jax.sharding.AxisType.Explicit,))
  block = -(-rows // n)

  from jaxemb.optimizers.rowwise import sparse_rowwise_adagrad_update

  def local_step(table, acc, ids, grad_out, next_ids):
    """Sparse row-wise Adagrad update of this device's rows for one batch, then the lookup of the
    next batch (the steady state of training: update t, look up t+1). Lookup-then-update in one
    program makes XLA copy the table twice (the gather reads the array the scatter overwrites);
    this order updates in place."""
    def local(x):
      x = jax.lax.all_gather(x, "rows", tiled=True)
      offset = x - jax.lax.axis_index("rows") * block
      return offset, (offset >= 0) & (offset < block)
    rows_t, inside = local(ids)
    grad_out = jax.lax.all_gather(grad_out, "rows", tiled=True)
    table, acc = sparse_rowwise_adagrad_update(table, acc, jnp.where(inside, rows_t, -1),
                                               grad_out, lr)
    rows_n, inside_n = local(next_ids)
    emb = jnp.take(table, jnp.where(inside_n, rows_n, 0), axis=0) * inside_n[:, None]
    out = jax.lax.psum_scatter(emb, "rows", scatter_dimension=0, tiled=True)
    return table, acc, out

  step = jax.jit(jax.shard_map(
      local_step, mesh=mesh,
      in_specs=(P("rows", None), P("rows"), P("rows"), P("rows", None), P("rows")),
      out_specs=(P("rows", None), P("rows"), P("rows", None))), donate_argnums=(0, 1))
  with jax.set_mesh(mesh):
    # constant init: values do not change the speed, and no random temporaries of table size
    table = jax.jit(lambda: jnp.full((block * n, dim), 0.01, jnp.float32),
                    out_shardings=NamedSharding(mesh, P("rows", None)))()
    acc = jax.device_put(jnp.zeros((block * n,), jnp.float32), NamedSharding(mesh, P("rows")))
    rng = np.random.default_rng(0)

    def batch_arrays():
      # Zipf-ish ids as in CTR data: many repeats within a batch
      ids = np.minimum(rng.zipf(1.2, batch) - 1, rows - 1).astype(np.int32)
      grad = rng.normal(size=(batch, dim)).astype(np.float32)
      return (jax.device_put(ids, NamedSharding(mesh, P("rows"))),
              jax.device_put(grad, NamedSharding(mesh, P("rows", None))))

    batches = [batch_arrays() for _ in range(8)]
    nxt = lambda i: batches[(i + 1) % len(batches)][0]
    table, acc, out = step(table, acc, *batches[0], nxt(0))
    out.block_until_ready()
    start = time.perf_counter()
    for i in range(args.iters):
      table, acc, out = step(table, acc, *batches[i % len(batches)], nxt(i))
    out.block_until_ready()
    seconds = time.perf_counter() - start
  print(json.dumps({"devices": n, "rows": rows, "dim": dim, "batch": batch,
                    "lookups_updates_per_sec": args.iters * batch / seconds,
                    "steps_per_sec": args.iters / seconds,
                    "table_bytes_per_device": block * dim * 4,
                    "rowwise_state_bytes_per_device": block * 4}))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  e = sub.add_parser("experiment")
  e.add_argument("--data", default="ci")
  e.add_argument("--steps", type=int, default=400)
  e.add_argument("--out", default="runs/tables.jsonl")
  e.add_argument("--workdir", default="runs/tables")
  e.add_argument("--data_dir", default="")
  e.add_argument("--seed", type=int, default=0)
  e.add_argument("--model", default="", help="config.model overrides, e.g. probes=1")
  e.add_argument("--tag", default="", help="suffix of run and table names for --model variants")
  e.add_argument("--tables", default="full,hashed,qr,unified,optembed")
  t = sub.add_parser("throughput")
  t.add_argument("--devices", type=int, default=1)
  t.add_argument("--rows", type=int, default=10_000_000)
  t.add_argument("--dim", type=int, default=64)
  t.add_argument("--batch", type=int, default=65_536)
  t.add_argument("--iters", type=int, default=20)
  args = parser.parse_args(argv)
  if args.command == "experiment":
    sys.path.insert(0, str(REPO))
    experiment(args)
  else:
    throughput(args)


if __name__ == "__main__":
  main()
