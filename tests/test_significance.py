"""Paired significance tests (`jaxemb.evaluate.significance`), per-query retrieval metrics and
`jaxemb compare`.

References: the randomization test's p-value against the exact one by enumerating all 2^n sign
vectors (small n); the bootstrap interval against the central-limit interval
mean +- z * sd / sqrt(n) (large n) and against scipy.stats.bootstrap's percentile interval.
"""

import itertools
import json

import numpy as np
import pytest

from jaxemb.evaluate import retrieval, significance


def _exact_p(diff):
  """Two-sided p of the randomization test over all 2^n sign vectors (float64 loop)."""
  observed = abs(np.mean(diff))
  flips = [abs(np.mean(np.array(s) * diff)) >= observed - 1e-12
           for s in itertools.product((-1, 1), repeat=len(diff))]
  return float(np.mean(flips))


@pytest.mark.parametrize("seed", [0, 1])
def test_randomization_p_matches_the_exact_enumeration(seed):
  rng = np.random.default_rng(seed)
  a = rng.uniform(size=12)
  b = a + rng.normal(0.15, 0.3, size=12)
  want = _exact_p(b - a)
  got = significance.randomization_test(a, b, resamples=40_000, seed=seed)
  # Monte Carlo error of a proportion over 40,000 draws: sd <= 0.0025.
  assert abs(got - want) < 0.01, (got, want)


def test_bootstrap_interval_matches_the_central_limit_interval():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=4000)
  b = a + rng.normal(0.02, 0.2, size=4000)
  diff = b - a
  half = 1.959964 * diff.std(ddof=1) / np.sqrt(diff.size)
  low, high = significance.bootstrap_ci(a, b, resamples=20_000)
  assert low == pytest.approx(diff.mean() - half, abs=0.1 * half)
  assert high == pytest.approx(diff.mean() + half, abs=0.1 * half)


def test_bootstrap_interval_matches_scipy():
  stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(1)
  a = (rng.uniform(size=300) < 0.5) / rng.integers(1, 11, size=300)  # reciprocal ranks
  b = (rng.uniform(size=300) < 0.6) / rng.integers(1, 11, size=300)
  ref = stats.bootstrap((b - a,), np.mean, n_resamples=20_000, method="percentile",
                        confidence_level=0.9, random_state=0).confidence_interval
  low, high = significance.bootstrap_ci(a, b, confidence=0.9, resamples=20_000)
  width = ref.high - ref.low
  assert low == pytest.approx(ref.low, abs=0.03 * width)
  assert high == pytest.approx(ref.high, abs=0.03 * width)


def test_identical_models_differ_by_nothing():
  a = np.array([1.0, 0.5, 0.0, 0.25, 1.0])
  got = significance.compare(a, a.copy(), resamples=200)
  assert got["diff"] == 0.0 and got["ci_low"] == 0.0 and got["ci_high"] == 0.0
  assert got["p_value"] == 1.0 and got["queries"] == 5


def test_a_clear_difference_is_significant_and_signed():
  a = np.zeros(200)
  b = np.full(200, 0.5)
  b[::10] = 0.0  # not constant, so the interval has width
  got = significance.compare(a, b, resamples=2000)
  assert got["diff"] == pytest.approx(0.45)
  assert 0.0 < got["ci_low"] < 0.45 < got["ci_high"]
  # No sign vector but the all-positive one (probability 2^-180) reaches the observed mean.
  assert got["p_value"] == pytest.approx(1 / 2001)
  swapped = significance.compare(b, a, resamples=2000)
  assert swapped["diff"] == -got["diff"] and swapped["ci_high"] < 0.0


def test_the_seed_fixes_the_result():
  rng = np.random.default_rng(3)
  a, b = rng.uniform(size=50), rng.uniform(size=50)
  assert significance.compare(a, b, seed=5) == significance.compare(a, b, seed=5)
  assert significance.bootstrap_ci(a, b, seed=5) != significance.bootstrap_ci(a, b, seed=6)


@pytest.mark.parametrize("a, b, message", [
    ([1.0, 2.0], [1.0], "shapes"),
    ([], [], "non-zero length"),
    ([[1.0]], [[1.0]], "1-D"),
    ([1.0, np.nan], [1.0, 2.0], "NaN"),
])
def test_bad_scores_are_named(a, b, message):
  with pytest.raises(ValueError, match=message):
    significance.compare(a, b)


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="confidence=1.5"):
    significance.bootstrap_ci([1.0], [2.0], confidence=1.5)
  with pytest.raises(ValueError, match="resamples=0"):
    significance.randomization_test([1.0], [2.0], resamples=0)


def test_per_query_metrics_average_to_retrieval_metrics():
  ranked = np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2], [2, 1, 0]])
  relevant = [{0}, {0, 2}, set(), {1}]  # the third query has none: left out
  per_query = retrieval.per_query_metrics(ranked, relevant, ks=(1, 3), mrr_k=3, ndcg_k=3,
                                          map_k=3)
  np.testing.assert_allclose(per_query["mrr@3"], [1 / 2, 1 / 2, 1 / 2])
  np.testing.assert_allclose(per_query["recall@1"], [0.0, 0.0, 0.0])
  np.testing.assert_allclose(per_query["recall@3"], [1.0, 1.0, 1.0])
  # Query 1: hits at ranks 2 and 3 of two relevant; precision 1/2 and 2/3.
  np.testing.assert_allclose(per_query["map@3"], [1 / 2, (1 / 2 + 2 / 3) / 2, 1 / 2])
  means = retrieval.retrieval_metrics(ranked, relevant, ks=(1, 3), mrr_k=3, ndcg_k=3, map_k=3)
  assert means == {name: pytest.approx(v.mean()) for name, v in per_query.items()}


def test_cli_compare_prints_intervals(monkeypatch, capsys, tmp_path):
  import jaxemb
  from jaxemb import cli, tasks
  from jaxemb.data import code_search
  from jaxemb.evaluate.registry import Task
  from jaxemb.pretrained.sentence_transformers import save_pretrained
  from tiny_tokenizer import tiny_model
  save_pretrained(tiny_model(max_len=32), tmp_path / "a")
  save_pretrained(tiny_model(max_len=32, seed=1), tmp_path / "b")
  texts = [f"def f{i}(x): return x + {i}" for i in range(12)]
  data = {"queries": [t.upper() for t in texts], "corpus": texts,
          "relevant": [{i} for i in range(12)]}
  task = Task("tiny", load=lambda split, data_dir=None: data, evaluate=code_search.evaluate_pairs)
  monkeypatch.setattr(tasks, "get", lambda name: task)
  cli.main(["compare", "--models", str(tmp_path / "a"), str(tmp_path / "b"), "--task", "tiny:s",
            "--resamples", "500", "--quiet"])
  out = capsys.readouterr().out.strip().splitlines()
  got = json.loads(out[-1])
  assert out[0].startswith("metric") and "95% interval" in out[0]
  for side, name in (("mean_a", "a"), ("mean_b", "b")):
    model = jaxemb.load_pretrained(tmp_path / name)
    want = tasks.evaluate(task, "s", lambda t, model=model: jaxemb.encode(model, t))
    for metric in ("mrr@10", "recall@1"):
      assert got["metrics"][metric][side] == pytest.approx(want[metric], abs=1e-9)
  mrr = got["metrics"]["mrr@10"]
  assert mrr["ci_low"] <= mrr["diff"] <= mrr["ci_high"] and 0.0 < mrr["p_value"] <= 1.0


def test_cli_compare_refuses_a_task_without_retrieval_data(monkeypatch, capsys, tmp_path):
  from jaxemb import cli, tasks
  from jaxemb.evaluate.registry import Task
  from jaxemb.pretrained.sentence_transformers import save_pretrained
  from tiny_tokenizer import tiny_model
  save_pretrained(tiny_model(max_len=32), tmp_path / "a")
  task = Task("sts", load=lambda split, data_dir=None: {"pairs": []}, evaluate=None)
  monkeypatch.setattr(tasks, "get", lambda name: task)
  with pytest.raises(SystemExit) as e:
    cli.main(["compare", "--models", str(tmp_path / "a"), str(tmp_path / "a"), "--task",
              "sts:test"])
  assert e.value.code == 2
  assert "task 'sts' has no retrieval data" in capsys.readouterr().err
