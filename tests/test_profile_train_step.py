"""benchmarks/profile_train_step.py helpers: the random batch and the per-op trace table."""

from __future__ import annotations

import gzip
import json
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import profile_train_step as pts  # noqa: E402


def test_random_batch_is_right_padded_with_lengths_in_range():
  batch = pts.random_batch(8, 6, 10, seed=1)
  assert batch["query_ids"].shape == (8, 6) and batch["doc_ids"].shape == (8, 10)
  for side, length in (("query", 6), ("doc", 10)):
    ids, mask = batch[f"{side}_ids"], batch[f"{side}_mask"]
    lengths = mask.sum(1)
    assert ((lengths >= length // 2) & (lengths <= length)).all()
    # Right padding: the mask is ones then zeros, and padded ids are 0 (MiniLM's [PAD]).
    assert (np.sort(mask, axis=1)[:, ::-1] == mask).all()
    assert (ids[mask == 0] == 0).all() and (ids[mask == 1] >= 1000).all()


def test_op_table_sums_durations_per_name(tmp_path):
  # A hand-written trace: two "dot" slices (3 ms + 1 ms) and one "gelu" (2 ms), plus a
  # metadata event without a duration that must be ignored.
  events = [{"ph": "X", "name": "dot", "dur": 3000}, {"ph": "X", "name": "gelu", "dur": 2000},
            {"ph": "X", "name": "dot", "dur": 1000}, {"ph": "M", "name": "thread_name"}]
  run = tmp_path / "plugins" / "profile" / "run"
  run.mkdir(parents=True)
  with gzip.open(run / "perfetto_trace.json.gz", "wt") as f:
    json.dump({"traceEvents": events}, f)
  table = pts.op_table(str(tmp_path))
  assert [name for _, name in table] == ["dot", "gelu"]
  assert [seconds for seconds, _ in table] == pytest.approx([0.004, 0.002])


def test_op_table_names_a_missing_trace(tmp_path):
  with pytest.raises(ValueError, match="perfetto_trace"):
    pts.op_table(str(tmp_path))
