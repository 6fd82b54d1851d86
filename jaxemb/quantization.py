"""Embedding quantization (float32 / int8 / uint8 / binary / ubinary) and similarity functions.

`quantize_embeddings` gives the same outputs as sentence-transformers 6.2's function of the same
name on the same inputs (checked in tests against a stored reference): scalar quantization maps
each dimension's [min, max] calibration range onto 256 buckets with float32 arithmetic; binary
quantization packs the sign bits (`> 0`) eight to a byte, `binary` shifting them by -128 into
int8. It runs in numpy on the host: it is a cheap elementwise pass, and bit-exact agreement with
the reference is easier to keep there than through XLA's float rewrites.
"""

from __future__ import annotations

import numpy as np

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
SIMILARITY_FNS = ("cosine", "dot", "euclidean", "manhattan")


def check_precision(precision: str) -> str:
  """`precision` if it is one of `PRECISIONS`, else a ValueError naming it."""
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
  return precision


def _as_float_matrix(name: str, x) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype in (np.int8, np.uint8):
    raise ValueError(f"{name} must be float embeddings to quantize, got dtype {x.dtype}")
  if x.ndim not in (1, 2):
    raise ValueError(f"{name} must be 1-D [D] or 2-D [N, D], got shape {x.shape}")
  try:
    x = x.astype(np.float32, copy=False) if x.dtype != np.float64 else x
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be numeric, got dtype {x.dtype}") from e
  return x


def quantization_ranges(calibration_embeddings, precision: str = "int8") -> np.ndarray:
  """Per-dimension [min; max] of `calibration_embeddings` [N, D] -> [2, D] (the `ranges` that
  int8/uint8 quantization uses)."""
  cal = _as_float_matrix("calibration_embeddings", calibration_embeddings)
  if cal.ndim == 1 or cal.shape[0] < 2:
    raise ValueError(
        f"cannot compute {precision} quantization ranges from {cal.shape[0] if cal.ndim == 2 else 1}"
        " embedding(s); pass ranges= or calibration_embeddings= with at least 2 rows")
  return np.vstack((np.min(cal, axis=0), np.max(cal, axis=0)))


def quantize_embeddings(embeddings, precision: str, ranges=None,
                        calibration_embeddings=None) -> np.ndarray:
  """Quantizes float embeddings as sentence-transformers' `quantize_embeddings` does.

  Args:
    embeddings: float [N, D] (or [D]) embeddings.
    precision: "float32", "int8", "uint8", "binary" or "ubinary".
    ranges: [2, D] per-dimension (min, max) for int8/uint8; by default computed from
      `calibration_embeddings`, or else from `embeddings` themselves (needs N >= 2).
    calibration_embeddings: [M, D] representative embeddings to compute `ranges` from.

  Returns:
    float32 [N, D]; int8/uint8 [N, D] bucket ids (int8 = uint8 bucket - 128); binary (int8) /
    ubinary (uint8) [N, ceil(D / 8)] packed sign bits, most significant bit first.
  """
  check_precision(precision)
  emb = _as_float_matrix("embeddings", embeddings)
  dim = emb.shape[-1]
  if emb.ndim == 2 and emb.shape[0] == 0:
    if precision.endswith("int8"):
      return np.zeros((0, dim), np.int8 if precision == "int8" else np.uint8)
    if precision.endswith("binary"):
      return np.zeros((0, (dim + 7) // 8), np.int8 if precision == "binary" else np.uint8)
  if precision == "float32":
    return emb.astype(np.float32)
  if precision.endswith("int8"):
    if ranges is None:
      ranges = quantization_ranges(
          emb if calibration_embeddings is None else calibration_embeddings, precision)
    ranges = np.asarray(ranges)
    if ranges.shape != (2, dim):
      raise ValueError(f"ranges must have shape (2, {dim}) (min row, max row), got {ranges.shape}")
    ranges = ranges.astype(np.float32, copy=False)
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    # A constant dimension would divide by zero: any step maps it to one bucket.
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((emb - starts) / steps), 0, 255)
    if precision == "uint8":
      return buckets.astype(np.uint8)
    return (buckets - 128).astype(np.int8)
  packed = np.packbits(emb > 0, axis=-1)
  if precision == "ubinary":
    return packed
  return (packed.astype(np.int16) - 128).astype(np.int8)


def dequantize_embeddings(embeddings, precision: str, ranges) -> np.ndarray:
  """Approximate float values of int8/uint8 buckets (bucket start), float64 [N, D]; used to
  score scalar-quantized candidates against a float query."""
  if precision not in ("int8", "uint8"):
    raise ValueError(f"dequantize_embeddings supports 'int8' and 'uint8', got {precision!r}")
  ranges = np.asarray(ranges).astype(np.float32, copy=False)
  steps = (ranges[1] - ranges[0]) / 255
  steps = np.where(steps == 0, 1, steps)
  out = np.asarray(embeddings).astype(np.float64)
  if precision == "int8":
    out += 128
  return out * steps + ranges[0]


def unpack_binary(packed, dim: int, precision: str = "ubinary") -> np.ndarray:
  """[N, ceil(D/8)] packed bits (binary or ubinary) -> float32 [N, D] of 0/1 bits."""
  packed = np.asarray(packed)
  if precision == "binary":
    packed = (packed.astype(np.int16) + 128).astype(np.uint8)
  elif precision != "ubinary":
    raise ValueError(f"unpack_binary supports 'binary' and 'ubinary', got {precision!r}")
  return np.unpackbits(packed.astype(np.uint8), axis=-1, count=dim).astype(np.float32)


def _as_batch(name: str, x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == 1:
    x = x[None, :]
  if x.ndim != 2:
    raise ValueError(f"{name} must be 1-D [D] or 2-D [N, D], got shape {x.shape}")
  try:
    return x.astype(np.float32, copy=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be numeric, got dtype {x.dtype}") from e


def similarity(a, b, fn: str = "cosine") -> np.ndarray:
  """Pairwise similarity matrix [N, M] between rows of `a` [N, D] and `b` [M, D].

  As sentence-transformers' similarity functions: "cosine" (of L2-normalised rows; a zero row
  scores 0), "dot", "euclidean" (minus the L2 distance) and "manhattan" (minus the L1 distance),
  so larger is always more similar. 1-D inputs count as one row. float32 result.
  """
  if fn not in SIMILARITY_FNS:
    raise ValueError(f"unknown similarity fn {fn!r}; expected one of {list(SIMILARITY_FNS)}")
  a, b = _as_batch("a", a), _as_batch("b", b)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"a has dimension {a.shape[1]} but b has dimension {b.shape[1]}; expected equal")
  if fn in ("cosine", "dot"):
    if fn == "cosine":
      # torch.nn.functional.normalize: x / max(||x||, 1e-12).
      a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
      b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a @ b.T).astype(np.float32)
  diff = a[:, None, :].astype(np.float64) - b[None, :, :]
  if fn == "euclidean":
    return (-np.sqrt(np.sum(diff * diff, axis=-1))).astype(np.float32)
  return (-np.sum(np.abs(diff), axis=-1)).astype(np.float32)


def pairwise_similarity(a, b, fn: str = "cosine") -> np.ndarray:
  """Row-by-row similarity [N] of `a[i]` and `b[i]` (same functions as `similarity`)."""
  if fn not in SIMILARITY_FNS:
    raise ValueError(f"unknown similarity fn {fn!r}; expected one of {list(SIMILARITY_FNS)}")
  a, b = _as_batch("a", a), _as_batch("b", b)
  if a.shape != b.shape:
    raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}; expected equal")
  if fn == "cosine":
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
  if fn in ("cosine", "dot"):
    return np.sum(a * b, axis=1).astype(np.float32)
  diff = a.astype(np.float64) - b
  if fn == "euclidean":
    return (-np.sqrt(np.sum(diff * diff, axis=1))).astype(np.float32)
  return (-np.sum(np.abs(diff), axis=1)).astype(np.float32)
