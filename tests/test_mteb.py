"""MTEBEncoder through MTEB 2.x itself: its offline mock tasks, and a local retrieval task built
from the stdlib code-search corpus whose scores must equal jaxemb's own retrieval evaluator.
Runs only where the `[mteb]` extra is installed."""

import numpy as np
import pytest
from flax import nnx

mteb = pytest.importorskip("mteb")

from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402

from jaxemb import inference  # noqa: E402
from jaxemb.data import code_search  # noqa: E402
from jaxemb.evaluate.retrieval import evaluate_retrieval  # noqa: E402
from jaxemb.integrations.mteb import MTEBEncoder  # noqa: E402
from jaxemb.model import EmbeddingModel  # noqa: E402
from jaxemb.nn.embedder import SentenceEmbedder  # noqa: E402
from jaxemb.nn.pooling import Pooler  # noqa: E402
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder  # noqa: E402
from tiny_tokenizer import tiny_tokenizer  # noqa: E402

NUM_PAIRS = 150


def _tiny_model(prompts=None) -> EmbeddingModel:
  cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                          intermediate_size=64, max_position_embeddings=64)
  rngs = nnx.Rngs(0)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs), Pooler("mean", 32, rngs=rngs))
  model = EmbeddingModel(module=module, tokenizer=tiny_tokenizer(), max_seq_length=64,
                         name="tiny")
  model.prompts, model.default_prompt_name = dict(prompts or {}), None
  return model


def _stdlib_pairs():
  data = code_search.retrieval_data("test")
  # Distinct queries and codes only: duplicates embed identically and their tie order is
  # each tool's own choice.
  seen_q, seen_c, queries, corpus = set(), set(), [], []
  for q, c in zip(data["queries"], data["corpus"]):
    if q not in seen_q and c not in seen_c:
      seen_q.add(q), seen_c.add(c)
      queries.append(q), corpus.append(c)
    if len(queries) == NUM_PAIRS:
      break
  return queries, corpus


class StdlibCodeSearchTask(AbsTaskRetrieval):
  metadata = TaskMetadata(
      name="JaxembStdlibCodeSearch", type="Retrieval", main_score="ndcg_at_10",
      description="Docstring -> function retrieval over the Python standard library (local).",
      reference="https://docs.python.org/3/library/", dataset={"path": "NA", "revision": "NA"},
      category="t2t", eval_splits=["test"], eval_langs=["eng-Latn"],
      date=("2024-01-01", "2024-01-01"), dialect=[], domains=["Programming"], task_subtypes=[],
      license="not specified", annotations_creators="derived", modalities=["text"],
      sample_creation="found", bibtex_citation="")

  def load_data(self, num_proc=None, **kwargs):
    from datasets import Dataset
    queries, corpus = _stdlib_pairs()
    split = {
        "queries": Dataset.from_list([{"id": f"q{i}", "text": t} for i, t in enumerate(queries)]),
        "corpus": Dataset.from_list([{"id": f"d{i}", "text": t} for i, t in enumerate(corpus)]),
        "relevant_docs": {f"q{i}": {f"d{i}": 1} for i in range(len(queries))},
        "top_ranked": None,
    }
    self.dataset = {"default": {"test": split}}
    self.data_loaded = True


@pytest.mark.slow  # MTEB's evaluation loop and the stdlib corpus: ~30-50 s
def test_mteb_retrieval_equals_jaxemb_evaluator():
  model = _tiny_model({"query": "find ", "document": ""})
  encoder = MTEBEncoder(model, name="jaxemb/tiny-test")
  result = mteb.evaluate(encoder, StdlibCodeSearchTask(), cache=None, show_progress_bar=False)
  scores = result.task_results[0].scores["test"][0]
  queries, corpus = _stdlib_pairs()
  ours = evaluate_retrieval(lambda t: inference.encode_query(model, t),
                            lambda t: inference.encode_document(model, t), queries, corpus,
                            [{i} for i in range(len(queries))])
  assert ours["ndcg@10"] > 0  # the tiny random model ranks something right
  for mine, theirs in (("ndcg@10", "ndcg_at_10"), ("mrr@10", "mrr_at_10"),
                       ("recall@1", "recall_at_1"), ("recall@10", "recall_at_10"),
                       ("recall@100", "recall_at_100"), ("map@100", "map_at_100")):
    assert scores[theirs] == pytest.approx(ours[mine], abs=1e-5), mine


def test_query_prompt_reaches_the_model():
  model = _tiny_model({"query": "find "})
  encoder = MTEBEncoder(model, name="jaxemb/tiny-test")
  task = StdlibCodeSearchTask()
  from mteb.types import PromptType
  batches = [{"text": ["open a file", "sort a list"]}]
  got = encoder.encode(batches, task_metadata=task.metadata, hf_split="test", hf_subset="default",
                       prompt_type=PromptType.query)
  np.testing.assert_array_equal(got, inference.encode(model, ["find open a file",
                                                              "find sort a list"]))
  doc = encoder.encode(batches, task_metadata=task.metadata, hf_split="test",
                       hf_subset="default", prompt_type=PromptType.document)
  np.testing.assert_array_equal(doc, inference.encode(model, ["open a file", "sort a list"]))
  meta = encoder.mteb_model_meta
  assert meta.framework == ["JAX"] and meta.embed_dim == 32 and meta.name == "jaxemb/tiny-test"


@pytest.mark.slow  # every compatible mock task, each a few new shapes to compile: ~40-110 s
def test_mock_tasks_pass():
  results = mteb.mock_run(MTEBEncoder(_tiny_model(), name="jaxemb/tiny-test"))
  ran = [name for name, status in results.items() if status is not None]
  assert ran, "no mock task was compatible"
  assert results.all_passed, results.to_markdown()


def test_bad_name():
  with pytest.raises(ValueError, match="'tiny'"):
    MTEBEncoder(_tiny_model(), name="tiny")


def test_pair_classification_equals_mteb_on_the_same_scores():
  from mteb.abstasks.pair_classification import AbsTaskPairClassification
  from jaxemb.evaluate.classification import best_threshold_metrics
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 200)
  scores = np.round(labels * 0.5 + rng.normal(size=200), 1)  # ties
  # MTEB's own per-score computation: instance methods that use no task state.
  helper = type("Helper", (), {name: getattr(AbsTaskPairClassification, name) for name in (
      "_compute_metrics_values", "_find_best_acc_and_threshold", "_find_best_f1_and_threshold")})
  theirs = helper()._compute_metrics_values(list(scores), labels, True)
  ours = best_threshold_metrics(scores, labels)
  for name in ("accuracy", "f1", "precision", "recall", "ap"):
    assert ours[name] == pytest.approx(theirs[name], abs=1e-12), name
