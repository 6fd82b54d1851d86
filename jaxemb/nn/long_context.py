"""Long-context position maps for trained encoders (LongEmbed, Zhu et al. 2024; SelfExtend,
Jin et al. 2024), as pure functions the transformer calls.

Absolute positions (a table of `rows` trained position embeddings, e.g. BERT/MiniLM's 512):
  - "gp" grouped positions: pid -> pid // s;
  - "rp" recurrent positions: pid -> pid mod rows;
  - "pi" position interpolation: the table grows to s * rows rows, row i * s = old row i and the
    rows between are interpolated linearly (`interpolate_table`); long inputs read row pid.
  s = ceil(target length / rows). A row of at most `rows` real tokens (the trained length; under
  PI `rows / s` of the grown table) keeps its trained positions (pid, or pid * s under PI, which
  reads the old row pid), so inputs the model was trained on embed exactly as before.

Rotary positions: SelfExtend (`self_extend_scores`): exact relative positions inside a
neighbour window, floor-divided ("grouped") positions outside it, mirrored for keys after the
query because an encoder attends both ways.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

ABSOLUTE_METHODS = ("gp", "rp", "pi")


def grouped_positions(positions: Array, factor: int) -> Array:
  """Grouped positions: pid // factor."""
  return positions // factor


def recurrent_positions(positions: Array, rows: int) -> Array:
  """Recurrent positions: pid mod rows (the trained table is reused cyclically)."""
  return positions % rows


def absolute_positions(positions: Array, lengths: Array, method: str, rows: int,
                       factor: int) -> Array:
  """Table rows to read for `positions` [B, L] of rows with `lengths` [B] real tokens.

  `rows` is the table size the encoder has now (s * trained under "pi", the trained size
  otherwise) and `factor` = s. Rows no longer than the trained length keep their trained
  positions, so they embed as before.
  """
  long_row = lambda trained: (lengths > trained)[:, None]
  if method == "gp":
    return jnp.where(long_row(rows), grouped_positions(positions, factor), positions)
  if method == "rp":
    return recurrent_positions(positions, rows)
  if method == "pi":
    return jnp.where(long_row(rows // factor), positions, positions * factor)
  raise ValueError(f"position_scaling must be one of {ABSOLUTE_METHODS}, got {method!r}")


def interpolate_table(table, factor: int) -> np.ndarray:
  """Position interpolation of a [rows, D] table to [rows * factor, D].

  New row j is old position j / factor, linear between its two neighbours (so row i * factor is
  old row i exactly); the last factor - 1 rows, past the last trained row, repeat it.
  """
  table = np.asarray(table)
  if factor < 1 or int(factor) != factor:
    raise ValueError(f"factor must be a positive integer, got {factor}")
  rows = table.shape[0]
  where = np.minimum(np.arange(rows * factor) / factor, rows - 1)
  low = np.floor(where).astype(np.int64)
  high = np.minimum(low + 1, rows - 1)
  frac = (where - low)[:, None].astype(np.float64)
  out = (1.0 - frac) * table[low].astype(np.float64) + frac * table[high].astype(np.float64)
  return out.astype(table.dtype)


def new_rows_mask(rows: int, factor: int) -> np.ndarray:
  """[rows] bool: the rows of an interpolated table that are new (not an old row i * factor)."""
  return np.arange(rows) % factor != 0


POSE_MODES = ("cut", "shift")


def pose_positions(mask: np.ndarray, target_length: int, rng: np.random.Generator,
                   mode: str = "cut") -> np.ndarray:
  """PoSE position ids [B, L] for right-padded rows (`mask` [B, L]) of up to L real tokens,
  spread over `target_length` positions, so short inputs teach positions up to it.

  mode "cut" (PoSE, Zhu et al. 2023): each row of l real tokens is cut at c ~ U[1, l - 1] and
    its second part skipped ahead by u ~ U[0, target_length - l]: positions 0 .. c - 1,
    c + u .. l - 1 + u (the first token, [CLS], stays at 0); rows with l < 2 keep 0 .. l - 1.
  mode "shift" (LongEmbed's variant for absolute positions, appendix B): the whole row is
    skipped ahead, u .. u + l - 1 with u ~ U[0, target_length - l].
  Rows with l >= target_length keep 0 .. l - 1; padding gets position 0."""
  if mode not in POSE_MODES:
    raise ValueError(f"PoSE mode must be one of {POSE_MODES}, got {mode!r}")
  mask = np.asarray(mask)
  out = np.zeros(mask.shape, np.int32)
  for b, l in enumerate(mask.astype(bool).sum(1)):
    pos = np.arange(l)
    if mode == "shift" and 1 <= l < target_length:
      pos += rng.integers(0, target_length - l + 1)
    elif 2 <= l < target_length:
      cut = rng.integers(1, l)
      pos[cut:] += rng.integers(0, target_length - l + 1)
    out[b, :l] = pos
  return out


def self_extend_positions(positions: Array, group: int, window: int
                          ) -> tuple[Array, Array, Array]:
  """(relative position m - n [B, Q, K], grouped query-side positions, grouped positions).

  Grouped positions are pid // group; the side that is further along is shifted by
  window - window // group so the grouped relative positions continue where the window ends.
  """
  grouped = positions // group
  shift = window - window // group
  return positions[:, :, None] - positions[:, None, :], grouped + shift, grouped


def self_extend_scores(q: Array, k: Array, positions: Array,
                       rotate: Callable[[Array, Array], Array], group: int,
                       window: int) -> Array:
  """SelfExtend attention logits [B, H, Q, K] (unscaled) for q, k [B, L, H, d].

  |m - n| < window: plain rotary logits (exact relative positions). Key before the query
  (m - n >= window): the query is rotated to m // g + w - w // g and the key to n // g; key
  after the query: mirrored (query at m // g, key at n // g + w - w // g). `rotate(x, pos)`
  applies the rotary embedding at positions `pos` [B, L].
  """
  rel, shifted, grouped = self_extend_positions(positions, group, window)
  logits = lambda a, b: jnp.einsum("bqhd,bkhd->bhqk", a, b, preferred_element_type=jnp.float32)
  normal = logits(rotate(q, positions), rotate(k, positions))
  before = logits(rotate(q, shifted), rotate(k, grouped))
  after = logits(rotate(q, grouped), rotate(k, shifted))
  rel = rel[:, None]  # [B, 1, Q, K]
  return jnp.where(jnp.abs(rel) < window, normal, jnp.where(rel > 0, before, after))
