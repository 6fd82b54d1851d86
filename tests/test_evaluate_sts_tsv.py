"""STS pairs read from a TSV, evaluated end to end against scipy's correlations."""

import numpy as np
import pytest
from scipy import stats

from jaxemb.evaluate.sts import load_sts_tsv, sts_evaluator


def test_tsv_round_trip_and_scores(tmp_path):
  rng = np.random.default_rng(0)
  table = {f"s{i}": rng.normal(size=4) for i in range(12)}
  lines = ["sentence1\tsentence2\tscore"]
  gold = []
  for i in range(6):
    gold.append(round(float(rng.uniform(0, 5)), 2))
    lines.append(f"s{2 * i}\ts{2 * i + 1}\t{gold[-1]}")
  path = tmp_path / "sts.tsv"
  path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
  data = load_sts_tsv(path)
  assert data["sentences1"] == [f"s{2 * i}" for i in range(6)]
  np.testing.assert_array_equal(data["scores"], gold)
  got = dict(sts_evaluator(lambda texts: np.stack([table[t] for t in texts]), data))
  cos = [table[a] @ table[b] / np.linalg.norm(table[a]) / np.linalg.norm(table[b])
         for a, b in zip(data["sentences1"], data["sentences2"])]
  assert got["spearman"] == pytest.approx(stats.spearmanr(cos, gold).statistic)
  assert got["pearson"] == pytest.approx(stats.pearsonr(cos, gold).statistic)


def test_tsv_bad_input(tmp_path):
  bad = tmp_path / "bad.tsv"
  bad.write_bytes(b"a\tb\t1\nc\td\t2\ne\xff\tf\t3\n")
  with pytest.raises(ValueError, match=r"not UTF-8: line 3, byte offset 13"):
    load_sts_tsv(bad)
  bad.write_text("a\tb\t1\nc\td\tlots\n")
  with pytest.raises(ValueError, match="line 2: score 'lots'"):
    load_sts_tsv(bad)
  bad.write_text("a\tb\t1\nc\td\n")
  with pytest.raises(ValueError, match="line 2 has 2"):
    load_sts_tsv(bad)
  with pytest.raises(ValueError, match="does not exist"):
    load_sts_tsv(tmp_path / "missing.tsv")
