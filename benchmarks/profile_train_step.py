"""Profile one training step of the default job (configs/codesearch_minilm.py) on the CPU.

    python benchmarks/profile_train_step.py                     # batch 64, query 32, code 64
    MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 \
      python benchmarks/profile_train_step.py                   # jaxemb.train.host_memory
    python benchmarks/profile_train_step.py --trace /tmp/trace  # + per-op table (perfetto)

Builds the recipe, state and jitted step exactly as `jaxemb.train.run` does (donated state, one
device unless XLA_FLAGS says otherwise), on random token ids with random lengths, compiles
ahead of time, runs `--warmup` untimed steps and then `--steps` timed ones, and prints per step
the wall time, user and system CPU seconds and minor page faults (getrusage), plus the peak
RSS. With `--trace DIR` one more step runs under `jax.profiler` and the busiest ops are listed.
Not a test: figures depend on the machine and its load (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import resource
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_batch(batch: int, query_len: int, code_len: int, seed: int = 0) -> dict:
  """Right-padded random ids/masks, lengths uniform in [len/2, len] (a realistic fill)."""
  import numpy as np
  rng = np.random.default_rng(seed)

  def side(length):
    ids = rng.integers(1000, 30000, size=(batch, length)).astype(np.int32)
    mask = (np.arange(length)[None, :] < rng.integers(length // 2, length + 1, size=(batch, 1)))
    return np.where(mask, ids, 0).astype(np.int32), mask.astype(np.int32)

  (qi, qm), (di, dm) = side(query_len), side(code_len)
  return {"query_ids": qi, "query_mask": qm, "doc_ids": di, "doc_mask": dm}


def op_table(trace_dir: str, top: int = 25) -> list[tuple[float, str]]:
  """(seconds, name) of the busiest events in the perfetto trace under `trace_dir`."""
  paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
  if not paths:
    raise ValueError(f"no perfetto_trace.json.gz under {trace_dir!r}")
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  totals: collections.Counter = collections.Counter()
  for event in events:
    if event.get("ph") == "X" and "dur" in event:
      totals[event.get("name", "")] += event["dur"] / 1e6
  return [(seconds, name) for name, seconds in totals.most_common(top)]


def _usage():
  return resource.getrusage(resource.RUSAGE_SELF)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--query-len", type=int, default=32)
  parser.add_argument("--code-len", type=int, default=64)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--trace", help="directory for a jax.profiler trace of one more step")
  args = parser.parse_args()

  import jax
  from jaxemb.train import loop
  from jaxemb.train import mesh as mesh_lib
  from jaxemb.train.config import load_config
  from jaxemb.train.step import make_train_step

  config = load_config(os.path.join(REPO, "configs/codesearch_minilm.py"))
  config.batch_size = args.batch
  config.optim.warmup_steps = 0
  recipe = loop.make_recipe(config)
  mesh = mesh_lib.make_mesh(None)
  tx, schedule = recipe.optimizer()
  graph, state, shardings = loop.init_state(config, mesh, tx, recipe)
  with jax.set_mesh(mesh):
    step = jax.jit(make_train_step(recipe, graph, tx, schedule), donate_argnums=0,
                   out_shardings=(shardings, None))
    batch = jax.device_put(random_batch(args.batch, args.query_len, args.code_len))
    start, before = time.perf_counter(), _usage()
    compiled = step.lower(state, batch).compile()
    after = _usage()
    print(f"devices {jax.device_count()}  compile: wall {time.perf_counter() - start:.1f} s  "
          f"user {after.ru_utime - before.ru_utime:.1f} s  "
          f"sys {after.ru_stime - before.ru_stime:.1f} s")
    for _ in range(args.warmup):
      state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
    rows = []
    for _ in range(args.steps):
      start, before = time.perf_counter(), _usage()
      state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      after = _usage()
      rows.append((time.perf_counter() - start, after.ru_utime - before.ru_utime,
                   after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt))
    mean = [sum(column) / len(rows) for column in zip(*rows)]
    print(f"per step: wall {mean[0]:.2f} s  user {mean[1]:.2f} s  sys {mean[2]:.2f} s  "
          f"minor faults {mean[3]:.0f}  loss {float(metrics['loss']):.4f}")
    if args.trace:
      jax.profiler.start_trace(args.trace, create_perfetto_trace=True)
      state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      jax.profiler.stop_trace()
      for seconds, name in op_table(args.trace):
        print(f"{seconds:8.3f} s  {name[:110]}")
  print(f"peak RSS {_usage().ru_maxrss / 1024:.0f} MB  load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
