"""Sequence packing: several short texts per row, so the encoder computes no padding.

A padded batch of B texts costs B x L_max tokens of encoder work; docstrings and code vary
enough in length that this is ~2.5x the real tokens on the code-search pairs at 128 tokens
(sentence-transformers pads each batch to its longest text). Packing lays the texts end to end
in rows of `length` tokens (first-fit decreasing), numbers them by segment (1, 2, ... per row,
0 = padding), and the encoder attends only within a segment and counts positions from each
segment's start (`TransformerEncoder(..., segment_ids=)`), so every text is encoded as it would
be alone. `unpack` maps the encoder's output back to the padded `[B, L]` layout the poolers
read (`SentenceEmbedder.embed_packed`).

    packed = pack(ids, mask, length=128)          # host numpy, per batch
    emb = embedder.embed_packed(packed["ids"], packed["segments"], packed["unpack"], mask)

The number of rows is rounded up to a multiple of `rows_multiple`, so few shapes compile and
the rows split evenly over the data-parallel devices.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PACKED_SIDES = ("query", "doc")
ROWS_MULTIPLE = 8  # default: few row counts compile, and rows split over up to 8 devices


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
  """Bins (lists of item indices, in placement order) holding items of `lengths` within
  `capacity`: longest first (ties by index), each into the first bin with room."""
  lengths = [int(n) for n in lengths]
  if any(n > capacity for n in lengths):
    raise ValueError(f"a text of {max(lengths)} tokens does not fit a packed row of {capacity}; "
                     "set the pack length to at least the longest padded length")
  bins: list[list[int]] = []
  room: list[int] = []
  for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
    for b, free in enumerate(room):
      if lengths[i] <= free:
        bins[b].append(i)
        room[b] -= lengths[i]
        break
    else:
      bins.append([i])
      room.append(capacity - lengths[i])
  return bins


def pack(ids: np.ndarray, mask: np.ndarray, length: int, rows_multiple: int = ROWS_MULTIPLE,
         pad_id: int = 0, chunks: int = 1) -> dict[str, np.ndarray]:
  """Packs right-padded `ids`/`mask` `[B, L]` into rows of `length` tokens.

  Returns {"ids" [R, length], "segments" [R, length] (1.. per text in a row, 0 for padding),
  "unpack" [B, L] (flat index into the R x length tokens of text b's j-th token; 0 past its
  end, where `mask` is 0)}, R a multiple of `rows_multiple`.

  With `chunks` = n > 1 (GradCache), texts {j, j + n, j + 2n, ...} are packed apart as chunk j,
  each chunk in R / n rows (a multiple of rows_multiple // n) laid out strided (chunk j's r-th
  row at r * n + j), and text b's `unpack` indexes its own chunk's R / n x length tokens: the
  layout
  `jaxemb.objectives.gradcache.split_strided(..., num_chunks=n)` cuts into chunks.
  """
  ids, mask = np.asarray(ids), np.asarray(mask)
  if ids.ndim != 2 or mask.shape != ids.shape:
    raise ValueError(f"ids and mask must be [B, L] of one shape, got {ids.shape} and "
                     f"{mask.shape}")
  if length < 1 or rows_multiple < 1 or chunks < 1 or len(ids) % chunks:
    raise ValueError(f"length, rows_multiple and chunks must be >= 1 and chunks must divide "
                     f"the batch of {len(ids)}; got {length}, {rows_multiple}, {chunks}")
  lengths = mask.astype(bool).sum(1)
  if not (mask.astype(bool) == (np.arange(ids.shape[1])[None] < lengths[:, None])).all():
    raise ValueError("pack needs right-padded rows (mask 1...1 0...0)")
  bins = [first_fit_decreasing(lengths[j::chunks], length) for j in range(chunks)]
  multiple = max(1, rows_multiple // chunks)  # R = chunks x per-chunk rows: still a multiple
  per_chunk = -(-max(max(len(b) for b in bins), 1) // multiple) * multiple
  out_ids = np.full((per_chunk, chunks, length), pad_id, ids.dtype)
  segments = np.zeros((per_chunk, chunks, length), np.int32)
  unpack = np.zeros(ids.shape, np.int32)
  for j, chunk_bins in enumerate(bins):
    for r, items in enumerate(chunk_bins):
      start = 0
      for s, k in enumerate(items, start=1):
        i, n = j + k * chunks, int(lengths[j + k * chunks])
        out_ids[r, j, start:start + n] = ids[i, :n]
        segments[r, j, start:start + n] = s
        unpack[i, :n] = r * length + start + np.arange(n)
        start += n
  return {"ids": out_ids.reshape(-1, length), "segments": segments.reshape(-1, length),
          "unpack": unpack}


def packed_transform(transform: Callable | None, length: int,
                     rows_multiple: int = ROWS_MULTIPLE, pad_id: int = 0,
                     sides: Sequence[str] = PACKED_SIDES, chunks: int = 1) -> Callable:
  """Wraps a batch transform so the sides' texts arrive packed (see `pack`).

  With every side present, all sides' texts share the rows (one encoder pass for queries and
  documents, fewer rows than packing each side alone, and one row count per batch, so fewer
  shapes compile): `pair_packed_ids`, `pair_segments`, `pair_unpack` and `pair_mask`
  (`[S * B, L]`, the sides in `sides` order, L their longest padded length) replace
  `<side>_ids` and `<side>_mask`. With `chunks` = n (GradCache) each chunk j packs the texts
  {j, j + n, ...} of every side (n divides B), so chunk j of the strided split holds the same
  pairs as chunk j of each side's. With a side missing, each side's `<side>_ids` becomes
  `<side>_packed_ids`, `<side>_segments` and `<side>_unpack`, and `<side>_mask` stays for the
  poolers.
  """

  def with_packing(batch: dict, index: int | None = None) -> dict:
    out = dict(transform(batch, index) if transform is not None else batch)
    present = [side for side in sides if f"{side}_ids" in out]
    if len(present) == len(sides) > 1:
      b = len(out[f"{sides[0]}_ids"])
      if b % chunks:
        raise ValueError(f"{chunks} chunks must divide the batch of {b} pairs")
      width = max(out[f"{side}_ids"].shape[1] for side in sides)
      widen = lambda x: np.pad(x, ((0, 0), (0, width - x.shape[1])))
      ids = np.concatenate([widen(out.pop(f"{side}_ids")) for side in sides])
      mask = np.concatenate([widen(out.pop(f"{side}_mask")) for side in sides])
      p = pack(ids, mask, length, rows_multiple, pad_id, chunks)
      out.update({"pair_packed_ids": p["ids"], "pair_segments": p["segments"],
                  "pair_unpack": p["unpack"], "pair_mask": mask})
      return out
    for side in present:
      p = pack(out.pop(f"{side}_ids"), out[f"{side}_mask"], length, rows_multiple, pad_id,
               chunks)
      out.update({f"{side}_packed_ids": p["ids"], f"{side}_segments": p["segments"],
                  f"{side}_unpack": p["unpack"]})
    return out

  return with_packing
