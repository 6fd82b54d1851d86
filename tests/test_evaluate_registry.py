"""Tests of the evaluator/task registries and the built-in evaluators' data contracts."""

import numpy as np
import pytest

from jaxemb import evaluate, tasks
from jaxemb.evaluate import registry


def test_builtin_evaluators_registered():
  assert {"retrieval", "sts", "rankme"} <= set(evaluate.list_evaluators())


def test_unknown_evaluator_lists_names():
  with pytest.raises(ValueError, match=r"unknown evaluator 'nope'.*rankme, retrieval, sts"):
    evaluate.get_evaluator("nope")


def test_register_and_duplicate(monkeypatch):
  monkeypatch.setattr(registry, "EVALUATORS", dict(registry.EVALUATORS))

  def const(embed_fn, data):
    yield "one", 1.0

  assert evaluate.register("const", const) is const
  assert evaluate.get_evaluator("const") is const
  evaluate.register("const", const)  # same object again: allowed
  with pytest.raises(ValueError, match=r"evaluator 'const' is already registered"):
    evaluate.register("const", lambda e, d: iter(()))
  with pytest.raises(ValueError, match=r"non-empty string"):
    evaluate.register("", const)


def test_tasks_table():
  assert "stdlib_code_search" in tasks.list_tasks()
  with pytest.raises(ValueError, match=r"unknown task 'x'; known tasks: .*stdlib_code_search"):
    tasks.get("x")
  task, split = tasks.parse("stdlib_code_search")
  assert task.name == "stdlib_code_search" and split == "test"
  assert tasks.parse("stdlib_code_search:validation[:8]")[1] == "validation[:8]"
  with pytest.raises(ValueError, match=r"no baseline 'tfidf'.*bm25"):
    tasks.baseline(task, "tfidf", "test")


def test_a_task_evaluates_through_the_table():
  data = {"queries": ["doc a", "x"], "corpus": ["doc a", "doc b"], "relevant": [{0}, {1}]}
  task = evaluate.Task("toy", load=lambda split, data_dir: data,
                       evaluate=lambda embed_fn, d: dict(
                           evaluate.get_evaluator("retrieval")(embed_fn, d)),
                       baselines={"first": ("first doc", lambda d: {"n": len(d["corpus"])})})
  metrics = tasks.evaluate(task, "test", _hash_embed)
  assert metrics["recall@10"] == 1.0
  assert tasks.baseline(task, "first", "test") == {"n": 2}


def test_prefix_metrics():
  assert evaluate.prefix_metrics("test", {"mrr@10": 0.5}) == {"test/mrr@10": 0.5}
  assert evaluate.prefix_metrics("val", iter([("a", 1.0)])) == {"val/a": 1.0}
  with pytest.raises(ValueError, match="split"):
    evaluate.prefix_metrics("", {})


def _hash_embed(texts):
  # Deterministic, text-dependent embeddings without a model.
  return np.stack(
      [np.random.default_rng(sum(map(ord, t))).normal(size=6) for t in texts]
  ).astype(np.float32)


def test_builtin_evaluators_run():
  data = {"queries": ["doc a", "x"], "corpus": ["doc a", "doc b"], "relevant": [{0}, {1}]}
  retrieval = dict(evaluate.get_evaluator("retrieval")(_hash_embed, data))
  assert set(retrieval) == {"mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100", "map@100"}
  assert retrieval["recall@10"] == 1.0  # corpus of 2: everything is retrieved

  pairs = {"sentences1": ["a", "b", "c"], "sentences2": ["a", "x", "y"], "scores": [5, 1, 0]}
  sts = dict(evaluate.get_evaluator("sts")(_hash_embed, pairs))
  assert set(sts) == {"spearman", "pearson"}

  rank = dict(evaluate.get_evaluator("rankme")(_hash_embed, {"texts": list("abcdefgh")}))
  assert 1.0 <= rank["rankme"] <= 6.0 and set(rank) == {"rankme", "mean_cosine"}
  logged = evaluate.prefix_metrics("test", rank)
  assert set(logged) == {"test/rankme", "test/mean_cosine"}


def test_evaluator_missing_fields():
  with pytest.raises(ValueError, match=r"'retrieval' data lacks fields \['relevant'\]"):
    list(evaluate.get_evaluator("retrieval")(_hash_embed, {"queries": [], "corpus": []}))
  with pytest.raises(ValueError, match=r"'sts' expects a mapping"):
    list(evaluate.get_evaluator("sts")(_hash_embed, [1, 2]))
