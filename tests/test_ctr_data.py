"""Synthetic CTR data (teacher, Zipf ids, drift), its TFDS builder, and the Criteo TSV reader.

`tests/data/criteo_sample.tsv` is NOT Criteo data: 12 lines made up by a seeded Python
`random` snippet in the Criteo Kaggle train.txt layout (label, 13 ints with empties and
negatives, 26 8-hex-digit categoricals with empties), to test the reader.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import stats

from jaxemb.data import ctr
from jaxemb.evaluate.ctr import auc

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "criteo_sample.tsv")
SPEC = ctr.CTRSpec(scale=1e-3, num_train=4000, num_validation=500, num_test=1500)


def test_scaled_cardinalities():
  cards = ctr.scaled_cardinalities(1e-3)
  assert len(cards) == 26 and cards[2] == 10132 and cards[8] == 3 and min(cards) == 3
  assert ctr.scaled_cardinalities(1.0) == ctr.CRITEO_CARDINALITIES
  with pytest.raises(ValueError, match="scale"):
    ctr.scaled_cardinalities(0)


def test_generate_is_random_access_and_deterministic():
  a = ctr.generate(SPEC, np.arange(100, 200))
  b = ctr.generate(SPEC, [150, 101])
  for k in a:
    np.testing.assert_array_equal(a[k][[50, 1]], b[k])
  c = ctr.generate(SPEC, np.arange(100, 200))
  assert all(np.array_equal(a[k], c[k]) for k in a)
  other = ctr.generate(ctr.CTRSpec(**{**SPEC.__dict__, "seed": 1}), np.arange(100, 200))
  assert not np.array_equal(a["sparse"], other["sparse"])
  cards = np.asarray(SPEC.cardinalities)
  assert a["sparse"].min() >= 0 and (a["sparse"] < cards).all()
  assert a["dense"].min() >= 0 and a["dense"].shape == (100, 13)
  with pytest.raises(ValueError, match="outside"):
    ctr.generate(SPEC, [SPEC.total])


def test_zipf_ranks_match_the_power_law():
  n, a = 50, 1.1
  u = (np.arange(100_000) + 0.5) / 100_000
  rng = np.random.default_rng(0)
  ranks = ctr.zipf_ranks(rng.permutation(u), n, a)
  counts = np.bincount(ranks, minlength=n)
  r = np.arange(n)
  probs = ((r + 2.0) ** (1 - a) - (r + 1.0) ** (1 - a)) / ((n + 1.0) ** (1 - a) - 1)
  assert stats.chisquare(counts, probs * counts.sum()).pvalue > 1e-3


def test_teacher_matches_a_slow_loop_and_positive_rate():
  d = ctr.generate(SPEC, np.arange(8))
  bias = ctr.teacher_bias(SPEC)
  mu = np.linspace(0.0, 3.0, 13)
  u = SPEC.sigma_dense * ctr._normal(SPEC.seed, 5, np.arange(13))
  for i in range(8):
    ids = d["sparse"][i].astype(np.int64)
    w = [SPEC.sigma_w * ctr._normal(SPEC.seed, 3, f, ids[f]) for f in range(26)]
    v = [SPEC.sigma_v * ctr._normal(SPEC.seed, 4, f, ids[f], np.arange(SPEC.latent_dim))
         for f in range(26)]
    pair = sum(float(v[f] @ v[g]) for f in range(26) for g in range(f + 1, 26))
    z = np.log1p(d["dense"][i].astype(np.float64)) - np.log1p(np.exp(mu))
    logit = bias + float(np.sum(w)) + SPEC.scale_fm * pair + float(z @ u)
    assert d["prob"][i] == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-5)
  big = ctr.generate(SPEC, np.arange(SPEC.total))
  assert abs(big["label"].mean() - 0.25) < 0.02
  assert abs(big["label"].mean() - big["prob"].mean()) < 0.02
  oracle = auc(big["label"], big["prob"])
  assert 0.7 < oracle < 0.95  # learnable, but not trivially


def test_popularity_drift():
  drifting = ctr.CTRSpec(**{**SPEC.__dict__, "drift": 0.5})
  f = 2  # the largest field
  def top_ids(spec, lo, hi):
    ids = ctr.generate(spec, np.arange(lo, hi))["sparse"][:, f]
    return set(np.argsort(-np.bincount(ids))[:5])
  n = SPEC.total
  assert top_ids(SPEC, 0, 1500) == top_ids(SPEC, n - 1500, n)
  assert not top_ids(drifting, 0, 1500) & top_ids(drifting, n - 1500, n)


def test_tfds_builder_writes_the_generated_examples(tmp_path):
  from jaxemb.data.builders import synthetic_ctr as sc
  cfg = sc.make_config("unit", scale=1e-3, num_train=64, num_validation=16, num_test=32)
  b = sc.SyntheticCtr(config=cfg, data_dir=str(tmp_path), file_format="array_record")
  b.download_and_prepare()
  assert b.info.metadata["cardinalities"] == list(cfg.spec.cardinalities)
  for split in ("train", "validation", "test"):
    src = b.as_data_source(split)
    lo, hi = cfg.spec.split_range(split)
    assert len(src) == hi - lo
    rows = [src[i] for i in range(len(src))]
    index = np.array([r["index"] for r in rows])
    assert sorted(index) == list(range(lo, hi))
    want = ctr.generate(cfg.spec, index)
    for k in ("dense", "sparse", "label", "prob"):
      np.testing.assert_array_equal(np.stack([np.asarray(r[k]) for r in rows]), want[k])
  with pytest.raises(ValueError, match="unknown synthetic_ctr config"):
    sc.spec("nope")


def test_read_criteo_tsv_vs_a_plain_parse():
  cards = ctr.scaled_cardinalities(1e-3)
  data = ctr.read_criteo_tsv(SAMPLE, cards)
  lines = open(SAMPLE).read().splitlines()
  assert data["label"].shape == (12,) and data["dense"].shape == (12, 13)
  seen: dict = {}
  for i, line in enumerate(lines):
    cols = line.split("\t")
    assert len(cols) == 40
    assert data["label"][i] == int(cols[0])
    want = [max(int(v), 0) if v else 0 for v in cols[1:14]]
    np.testing.assert_array_equal(data["dense"][i], want)
    for f, v in enumerate(cols[14:]):
      got = data["sparse"][i, f]
      if not v:
        assert got == 0
      else:
        assert 1 <= got < cards[f]
        assert seen.setdefault((f, v), got) == got
  assert (data["sparse"] == 0).any() and (data["dense"] == 0).any()
  assert ctr.read_criteo_tsv(SAMPLE, cards, max_rows=3)["label"].shape == (3,)
  # the same hex value in two fields maps independently, and the default is Criteo's cards
  full = ctr.read_criteo_tsv(SAMPLE)
  assert (full["sparse"] < np.asarray(ctr.CRITEO_CARDINALITIES)).all()


@pytest.mark.parametrize("line,match", [
    ("1\t2\t3", "expected 40"),
    ("2" + "\t" * 39, "label must be 0 or 1"),
    ("0\tx" + "\t" * 38, "I1 value 'x'"),
    ("0" + "\t" * 14 + "zz" + "\t" * 25, "C1 value 'zz'"),
])
def test_read_criteo_tsv_errors(tmp_path, line, match):
  path = tmp_path / "bad.tsv"
  path.write_text(line + "\n")
  with pytest.raises(ValueError, match=match):
    ctr.read_criteo_tsv(path)
