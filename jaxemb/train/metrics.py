"""Metrics: one JSON object per logged step in `workdir/metrics.jsonl`, plus a progress bar."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import numpy as np
import tqdm


def to_python(value: Any) -> Any:
  """Array scalars -> Python numbers (float32 -> float keeps the exact value)."""
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
  return value


class MetricsWriter:
  """Appends JSON lines to `workdir/metrics.jsonl` (process 0 only) and drives a progress bar."""

  def __init__(self, workdir: str, total_steps: int, initial_step: int = 0,
               show_progress: bool = True):
    self.is_writer = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._file = open(self.path, "a", encoding="utf-8") if self.is_writer else None
    self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, desc="train", unit="step",
                          disable=not (show_progress and self.is_writer), dynamic_ncols=True)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    """Logs `metrics` for `step` (non-finite floats are written as null, never dropped)."""
    row = {"step": int(step)}
    for key, value in metrics.items():
      value = to_python(value)
      row[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    if self._file is not None:
      self._file.write(json.dumps(row) + "\n")
      self._file.flush()

  def progress(self, step: int, **shown: float) -> None:
    self._bar.n = step
    if shown:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
    self._bar.refresh()

  def close(self) -> None:
    self._bar.close()
    if self._file is not None:
      self._file.close()


def read_metrics(workdir: str) -> list[dict]:
  """All rows of `workdir/metrics.jsonl` (a resumed run appends after the earlier rows)."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
