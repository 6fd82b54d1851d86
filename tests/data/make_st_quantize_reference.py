"""Makes tests/data/st_quantize_reference.npz: sentence-transformers' quantize_embeddings and
similarity functions on generated inputs, which tests/test_quantization.py compares with jaxemb.

Run with the reference environment (not a jaxemb dependency):
  /root/refenv/bin/python tests/data/make_st_quantize_reference.py
Made with sentence-transformers 6.2, torch 2.13 (CPU), numpy 2.4 (versions stored in the file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sentence_transformers
from sentence_transformers.util import cos_sim, dot_score, euclidean_sim, manhattan_sim
from sentence_transformers.util.quantization import quantize_embeddings
import torch

OUT = Path(__file__).with_name("st_quantize_reference.npz")


def main() -> None:
  rng = np.random.default_rng(0)
  dim = 13  # not a multiple of 8: exercises the zero-padded last byte of the packed bits
  emb = rng.normal(size=(40, dim)).astype(np.float32)
  emb[3, :] = 0.0  # exact zeros are "not > 0" for binary quantization
  emb[:, 5] = 0.25  # a constant dimension: zero range, step falls back to 1
  calib = rng.normal(scale=0.5, size=(200, dim)).astype(np.float32)  # narrower: forces clipping
  ranges = np.vstack([np.full(dim, -1.0), np.full(dim, 1.5)]).astype(np.float32)
  emb64 = rng.normal(size=(7, dim))
  out = {"emb": emb, "calib": calib, "ranges": ranges, "emb64": emb64}
  for precision in ("float32", "int8", "uint8", "binary", "ubinary"):
    out[f"{precision}_self"] = quantize_embeddings(emb, precision)
    out[f"{precision}_f64"] = quantize_embeddings(emb64, precision)
  for precision in ("int8", "uint8"):
    out[f"{precision}_calib"] = quantize_embeddings(emb, precision, calibration_embeddings=calib)
    out[f"{precision}_ranges"] = quantize_embeddings(emb, precision, ranges=ranges)
  a, b = emb[:9], calib[:11]
  a = a.copy()
  a[3] = 0.0  # zero row: cosine 0 through normalize's eps
  for name, fn in (("cosine", cos_sim), ("dot", dot_score), ("euclidean", euclidean_sim),
                   ("manhattan", manhattan_sim)):
    out[f"sim_{name}"] = fn(torch.from_numpy(a), torch.from_numpy(b)).numpy()
  out["sim_a"], out["sim_b"] = a, b
  out["versions"] = np.array([f"sentence-transformers {sentence_transformers.__version__}",
                              f"torch {torch.__version__}", f"numpy {np.__version__}"])
  np.savez(OUT, **out)
  print("wrote", OUT, sorted(out))


if __name__ == "__main__":
  main()
