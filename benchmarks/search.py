"""Queries/s of `jaxemb.semantic_search` vs faiss on one generated corpus, in one run.

    python benchmarks/search.py [--n 1000000] [--dim 384] [--queries 500] [--top-k 10] \
        [--reference-python /root/refenv/bin/python]

faiss (`pip install faiss-cpu`) runs in a subprocess of `--reference-python` (default: this
interpreter) on the same arrays, read from .npy files, never at the same time as jaxemb:
`IndexFlatIP` for exact float search and `IndexBinaryFlat` for Hamming search over the same
binary codes. Both sides use every CPU core of the machine (faiss through OpenMP, XLA:CPU through
its thread pool). Reported: warm queries/s (best of `--repeats`), the first call with compiles
for jaxemb, recall@k of each quantized mode against exact float search, and the ratio jaxemb /
faiss.

Data: `--clusters` random unit centres, each corpus row a centre plus Gaussian noise, then
L2-normalised, so near neighbours exist as in real embeddings; queries are drawn the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_FAISS = r"""
import json, sys, time
import numpy as np, faiss
corpus = np.load(sys.argv[1], mmap_mode="r"); queries = np.load(sys.argv[2])
codes = np.load(sys.argv[3]); qcodes = np.load(sys.argv[4])
k, repeats = int(sys.argv[5]), int(sys.argv[6])
out = {"threads": faiss.omp_get_max_threads(), "version": faiss.__version__}
def best(fn):
  times = []
  for _ in range(repeats):
    t = time.perf_counter(); r = fn(); times.append(time.perf_counter() - t)
  return min(times), r
index = faiss.IndexFlatIP(corpus.shape[1]); index.add(np.ascontiguousarray(corpus))
out["float_s"], (_, ids) = best(lambda: index.search(queries, k))
np.save(sys.argv[7], ids)
bindex = faiss.IndexBinaryFlat(codes.shape[1] * 8); bindex.add(codes)
out["binary_s"], (_, bids) = best(lambda: bindex.search(qcodes, k))
np.save(sys.argv[8], bids)
print(json.dumps(out))
"""


def make_data(n, dim, num_queries, clusters, noise, seed=0):
  """Clustered unit vectors: corpus [n, dim] and queries [num_queries, dim], float32."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((clusters, dim), dtype=np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)

  def draw(m):
    out = np.empty((m, dim), np.float32)
    for start in range(0, m, 1 << 16):  # in blocks: bounded temporary memory
      stop = min(m, start + (1 << 16))
      x = centres[rng.integers(0, clusters, stop - start)]
      x = x + (noise / np.sqrt(dim)) * rng.standard_normal((stop - start, dim), dtype=np.float32)
      out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out

  return draw(n), draw(num_queries)


def recall(ids, exact):
  k = exact.shape[1]
  return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ids, exact)]))


def _best(fn, repeats):
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return min(times), result


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, default=1_000_000)
  p.add_argument("--dim", type=int, default=384)
  p.add_argument("--queries", type=int, default=500)
  p.add_argument("--top-k", type=int, default=10)
  p.add_argument("--clusters", type=int, default=2000)
  p.add_argument("--noise", type=float, default=1.0)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--chunk-size", type=int, default=None)
  p.add_argument("--reference-python", default=sys.executable)
  args = p.parse_args(argv)

  import jax
  from jaxemb.quantization import quantize_embeddings
  from jaxemb.search import DEFAULT_CHUNK_SIZE, Index

  corpus, queries = make_data(args.n, args.dim, args.queries, args.clusters, args.noise)
  k, chunk = args.top_k, args.chunk_size or DEFAULT_CHUNK_SIZE
  results = {"n": args.n, "dim": args.dim, "queries": args.queries, "top_k": k,
             "devices": jax.device_count(), "cpus": os.cpu_count()}

  modes = {}
  for precision in ("float32", "int8", "ubinary"):
    index = Index(args.dim, precision, score_fn="dot", chunk_size=chunk)
    # int8 calibration from a sample of the corpus, as one would from a held-out set.
    if precision == "int8":
      index.ranges = np.vstack([corpus[:100_000].min(0), corpus[:100_000].max(0)])
    index.add(corpus)
    for rescore in ((False,) if precision == "float32" else (False, True)):
      name = precision + ("+rescore" if rescore else "")
      start = time.perf_counter()
      index.search(queries, k, rescore=rescore)
      cold = time.perf_counter() - start
      warm, (_, ids) = _best(lambda: index.search(queries, k, rescore=rescore), args.repeats)
      modes[name] = {"cold_s": cold, "warm_s": warm, "qps": args.queries / warm, "ids": ids}
    del index
  exact = modes["float32"]["ids"]

  with tempfile.TemporaryDirectory() as tmp:
    paths = [os.path.join(tmp, f"{name}.npy") for name in ("c", "q", "cb", "qb", "fi", "bi")]
    np.save(paths[0], corpus)
    np.save(paths[1], queries)
    np.save(paths[2], quantize_embeddings(corpus, "ubinary"))
    np.save(paths[3], quantize_embeddings(queries, "ubinary"))
    del corpus
    proc = subprocess.run([args.reference_python, "-c", _FAISS, *paths[:4], str(k),
                           str(args.repeats), *paths[4:]], capture_output=True, text=True)
    if proc.returncode != 0:
      results["faiss"] = f"not run: {proc.stderr.strip().splitlines()[-1:]}"
      faiss = None
    else:
      faiss = json.loads(proc.stdout.strip().splitlines()[-1])
      faiss["float_recall"] = recall(np.load(paths[4]), exact)
      faiss["binary_recall"] = recall(np.load(paths[5]), exact)

  print(f"corpus {args.n} x {args.dim}, {args.queries} queries, top-{k}, "
        f"{results['devices']} JAX device(s), {results['cpus']} CPUs")
  print(f"{'mode':<18}{'queries/s':>12}{'cold s':>10}{'recall@' + str(k):>12}")
  for name, m in modes.items():
    m["recall"] = recall(m["ids"], exact)
    print(f"jaxemb {name:<11}{m['qps']:>12.1f}{m['cold_s']:>10.2f}{m['recall']:>12.3f}")
    del m["ids"]
  if faiss:
    fq, bq = args.queries / faiss["float_s"], args.queries / faiss["binary_s"]
    faiss.update(float_qps=fq, binary_qps=bq)
    print(f"{'faiss IndexFlatIP':<18}{fq:>12.1f}{'':>10}{faiss['float_recall']:>12.3f}")
    print(f"{'faiss BinaryFlat':<18}{bq:>12.1f}{'':>10}{faiss['binary_recall']:>12.3f}")
    print(f"ratio jaxemb/faiss: exact float {modes['float32']['qps'] / fq:.2f}x, "
          f"binary (no rescore) {modes['ubinary']['qps'] / bq:.2f}x "
          f"(faiss {faiss['version']}, {faiss['threads']} threads)")
    results["faiss"] = faiss
  results["jaxemb"] = modes
  print(json.dumps(results))


if __name__ == "__main__":
  main()
