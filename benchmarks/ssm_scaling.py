"""Forward+backward time and compiled temp memory: S4D encoder vs attention, L = 512 .. 16k.

    python benchmarks/ssm_scaling.py [--max-len 16384] [--hidden 128] [--layers 2] [--batch 1]

Both encoders have the same width, depth and feed-forward block (pre-LN; the transformer uses
rotary positions, so no position table caps the length); the only difference is the token mixer:
bidirectional S4D (FFT convolution, O(L log L)) versus softmax self-attention (O(L^2)). Each
case is `jax.value_and_grad` of a scalar loss over all parameters, jitted, timed warm on CPU
(best of `--repeats`). Memory is `compiled.memory_analysis().temp_size_in_bytes`, XLA's peak
scratch for the step, known before running; a case whose temp memory exceeds `--mem-limit-gb`
(default: 60% of this machine's available RAM) is compiled and reported but not run.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxemb.nn.ssm import SSMConfig, SSMEncoder
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder


def _available_gb() -> float:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return 8.0


def build(kind: str, args) -> nnx.Module:
  common = dict(vocab_size=1000, hidden_size=args.hidden, num_layers=args.layers,
                intermediate_size=4 * args.hidden, dropout_rate=0.0)
  if kind == "ssm":
    return SSMEncoder(SSMConfig(state_size=args.state_size, bidirectional=True, **common),
                      rngs=nnx.Rngs(0))
  cfg = TransformerConfig(num_heads=args.heads, position_embedding="rotary", norm_position="pre",
                          attention_dropout_rate=0.0, type_vocab_size=0, **common)
  return TransformerEncoder(cfg, rngs=nnx.Rngs(0))


def compile_step(model: nnx.Module, batch: int, length: int):
  """Jitted, compiled `params -> (loss, grads)` on a fixed batch; returns (compiled, args)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 1000, (batch, length)), jnp.int32)
  mask = jnp.ones((batch, length), jnp.int32)

  def loss(params, ids, mask):
    out = nnx.merge(graphdef, params, rest)(ids, mask)
    return jnp.mean(out.last_hidden_state.astype(jnp.float32) ** 2)

  step = jax.jit(jax.value_and_grad(loss))
  return step.lower(params, ids, mask).compile(), (params, ids, mask)


def measure(kind: str, length: int, args) -> dict:
  model = build(kind, args)
  start = time.perf_counter()
  compiled, inputs = compile_step(model, args.batch, length)
  result = dict(compile_s=time.perf_counter() - start,
                temp_gb=compiled.memory_analysis().temp_size_in_bytes / 2**30, time_s=None)
  if result["temp_gb"] > args.mem_limit_gb:
    return result
  jax.block_until_ready(compiled(*inputs))  # warm-up
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*inputs))
    times.append(time.perf_counter() - start)
    if times[-1] > 10.0:  # one long run is precise enough
      break
  result["time_s"] = min(times)
  return result


def _fmt_time(t):
  return "skipped" if t is None else f"{t * 1e3:9.1f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--min-len", type=int, default=512)
  parser.add_argument("--max-len", type=int, default=16384)
  parser.add_argument("--hidden", type=int, default=128)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--state-size", type=int, default=64)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--mem-limit-gb", type=float, default=round(0.6 * _available_gb(), 1))
  args = parser.parse_args()
  for name in ("min_len", "max_len", "hidden", "layers", "heads", "batch", "repeats"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
  if args.min_len > args.max_len:
    parser.error(f"--min-len={args.min_len} exceeds --max-len={args.max_len}")

  lengths = []
  length = args.min_len
  while length <= args.max_len:
    lengths.append(length)
    length *= 2
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} cores); "
        f"hidden {args.hidden}, {args.layers} layers, FFN {4 * args.hidden}, batch "
        f"{args.batch}; S4D state {args.state_size} bidirectional; attention {args.heads} heads, "
        f"rotary; fwd+bwd, best of {args.repeats}; run only if temp <= {args.mem_limit_gb} GB")
  header = (f"{'L':>6} | {'S4D ms':>9} {'attn ms':>9} {'speedup':>8} | {'S4D MB':>8} "
            f"{'attn MB':>9} {'ratio':>7} | {'S4D KB/token':>12}")
  print(header)
  print("-" * len(header))
  skipped, measured = [], None
  for length in lengths:
    ssm = measure("ssm", length, args)
    attn = measure("attention", length, args)
    if attn["time_s"] is None:
      skipped.append((length, attn["temp_gb"], ssm["time_s"]))
    else:
      measured = (length, attn["time_s"])
    speedup = (f"{attn['time_s'] / ssm['time_s']:7.1f}x"
               if attn["time_s"] and ssm["time_s"] else "       -")
    print(f"{length:>6} | {_fmt_time(ssm['time_s']):>9} {_fmt_time(attn['time_s']):>9} "
          f"{speedup:>8} | {ssm['temp_gb'] * 1024:8.1f} {attn['temp_gb'] * 1024:9.1f} "
          f"{attn['temp_gb'] / ssm['temp_gb']:6.1f}x | "
          f"{ssm['temp_gb'] * 2**20 / (length * args.batch):12.1f}", flush=True)
  for length, gb, ssm_time in skipped:
    note = ""
    if measured and ssm_time:
      # Attention's cost is quadratic in L; scaling the longest measured run gives an estimate.
      estimate = measured[1] * (length / measured[0]) ** 2
      note = (f"; quadratic extrapolation from L={measured[0]}: ~{estimate:.0f} s, "
              f"~{estimate / ssm_time:.0f}x the S4D step (estimate, not a measurement)")
    print(f"attention at L={length} not run: its step needs {gb:.1f} GB of temp memory "
          f"(limit {args.mem_limit_gb} GB); memory shown is from the compiled program{note}")


if __name__ == "__main__":
  main()
