"""Smoke test of the sharded scale benchmark (`benchmarks/kge_vs_pykeen.py --scale E,T`) on a
small synthetic graph over 8 fake devices, and of the PyKEEN-counterpart choice."""

from __future__ import annotations

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import kge_vs_pykeen as bench  # noqa: E402


@pytest.mark.slow
def test_scale_smoke_on_eight_devices():
  out = bench.run_scale(800, 6000, steps=3, devices=8, dim=8, batch=64, negatives=4,
                        eval_triples=40)
  assert out["devices"] == 8 and out["entities"] == 800
  assert out["triples_per_s"] > 0 and out["eval_s"] > 0 and 0 < out["eval_mrr"] <= 1
  assert 0 < out["eval_triples"] <= 40
  # RotatE rows hold 2 * dim floats; each device holds 800 / 8 of them (closed form).
  shard_mb = 800 / 8 * 2 * 8 * 4 / 2**20
  assert out["entity_shard_mb"] == pytest.approx(shard_mb)
  assert out["entity_param_plus_adam_mb_per_device"] == pytest.approx(3 * shard_mb)


def test_pykeen_counterparts():
  assert bench.pykeen_has("rotate_umls_nssa32")
  assert not bench.pykeen_has("rotate_umls_lemon") and not bench.pykeen_has("complex_umls_lcwa")
