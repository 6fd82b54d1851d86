"""Elastic embeddings in the text_pairs recipe: per-layer pooling, the 2dmse / starbucks
objectives, the (layer, dim) grid evaluator, export with truncate_dim, the elastic config."""

import json
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxemb
from jaxemb.nn.embedder import layer_embeddings
from jaxemb.objectives import elastic
from jaxemb.objectives import info_nce
from jaxemb.recipes import text_pairs
from jaxemb.train.config import base_config, load_config
from tiny_tokenizer import tiny_model

TEXTS = ["a b c", "d e", "f g h i", "j", "k l m", "n o p q r"]
CONFIG = str(Path(__file__).parent.parent / "configs" / "codesearch_elastic.py")
DOCS = ["def a", "def d e", "def f", "def j k", "def k l", "def n"]


@pytest.fixture(scope="module")
def tiny():
  return tiny_model()


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
  return jaxemb.save_pretrained(tiny, tmp_path_factory.mktemp("tiny") / "m")


def _ids(model, texts, length=8):
  ids = np.zeros((len(texts), length), np.int32)
  mask = np.zeros((len(texts), length), np.int32)
  for i, t in enumerate(texts):
    toks = model.tokenizer.encode(t).ids[:length]
    ids[i, :len(toks)], mask[i, :len(toks)] = toks, 1
  return jnp.asarray(ids), jnp.asarray(mask)


def test_layer_embeddings_pool_every_hidden_state(tiny):
  ids, mask = _ids(tiny, TEXTS)
  got = np.asarray(layer_embeddings(tiny.module, ids, mask))
  states = tiny.module.encoder(ids, mask, output_hidden_states=True).hidden_states
  assert got.shape == (len(states), len(TEXTS), tiny.dim)
  m = np.asarray(mask, np.float64)[..., None]
  for l, h in enumerate(states):
    # Mean pooling by hand, in float64: the sum of real tokens' states over their count.
    want = (np.asarray(h, np.float64) * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(got[l], want, rtol=1e-5, atol=1e-6)
    if l:
      np.testing.assert_allclose(got[l], tiny.module(ids, mask, layer=l, normalize=False),
                                 rtol=1e-5, atol=1e-6)


def _recipe(tiny_dir, objective):
  c = base_config(recipe="text_pairs")
  c.model = dict(pretrained=str(tiny_dir), pooling="mean")
  c.data = dict(name="stdlib_code_search")
  c.objective = objective
  return text_pairs.TextPairs(c)


@pytest.mark.parametrize("name", ["2dmse", "starbucks"])
def test_recipe_loss_is_the_objective_on_hand_pooled_layers(tiny, tiny_dir, name):
  if name == "2dmse":
    objective = dict(name="2dmse", scale=20.0, dims=(32, 16, 8), n_layers_per_step=1,
                     kl_weight=0.5)
    want_fn = lambda q, d, key, n: elastic.two_d_matryoshka(
        lambda a, b: info_nce(a, b, scale=20.0, symmetric=True), q, d, (32, 16, 8), key,
        kl_weight=0.5)
  else:
    pairs = ((1, 8), (2, 16))
    objective = dict(name="starbucks", scale=20.0, pairs=pairs, kl_weight=1.0)
    want_fn = lambda q, d, key, n: elastic.starbucks(q, d, pairs, scale=20.0, hard_negatives=n)
  recipe = _recipe(tiny_dir, objective)
  model = recipe.model(nnx.Rngs(0))
  for module in nnx.iter_modules(model):  # no dropout: the reference runs deterministically
    if isinstance(module[1], nnx.Dropout):
      module[1].rate = 0.0
  q_ids, q_mask = _ids(tiny, TEXTS)
  d_ids, d_mask = _ids(tiny, DOCS)
  batch = dict(query_ids=q_ids, query_mask=q_mask, doc_ids=d_ids, doc_mask=d_mask)
  if name == "starbucks":  # with one hard negative per query: [L + 1, B, K=1, D] to the loss
    n_ids, n_mask = _ids(tiny, DOCS[1:] + DOCS[:1])
    batch.update(neg_ids=n_ids[:, None], neg_mask=n_mask[:, None])
  key = jax.random.key(3)
  loss, metrics = recipe.loss(model, {}, batch, key)

  def pooled(ids, mask):  # each hidden state mean-pooled by hand
    states = jnp.stack(tiny.module.encoder(ids, mask, output_hidden_states=True).hidden_states)
    m = mask[None, :, :, None].astype(jnp.float32)
    return (states * m).sum(2) / m.sum(2)

  negatives = pooled(n_ids, n_mask)[:, :, None] if name == "starbucks" else None
  want, want_metrics = want_fn(pooled(q_ids, q_mask), pooled(d_ids, d_mask), key, negatives)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert set(metrics) == set(want_metrics)
  # A different step key draws other sizes for 2dmse; starbucks uses every size every step.
  other, _ = recipe.loss(model, {}, batch, jax.random.key(4))
  assert np.isfinite(other)


def test_layer_objectives_validate_their_config(tiny_dir):
  with pytest.raises(ValueError, match="objective '2dmse' needs objective.dims"):
    _recipe(tiny_dir, dict(name="2dmse"))
  with pytest.raises(ValueError, match="gradcache_chunk does not support objective"):
    c = base_config(recipe="text_pairs")
    c.model = dict(pretrained=str(tiny_dir))
    c.data = dict(name="stdlib_code_search")
    c.objective = dict(name="starbucks")
    c.gradcache_chunk = 2
    text_pairs.TextPairs(c)
  with pytest.raises(ValueError, match="unknown objective 'nope'.*2dmse.*starbucks"):
    _recipe(tiny_dir, dict(name="nope"))


def test_grid_evaluator_matches_encode_at_each_size(tiny, monkeypatch):
  """Grid metrics equal the task run on `encode(layer=l, truncate_dim=d)` by hand."""
  from jaxemb import tasks
  from jaxemb.data import code_search
  from jaxemb.evaluate.registry import Task
  words = [a + b for a in "abcdef" for b in "xyz"]
  data = {"queries": [f"find {w}" for w in words], "corpus": [f"def {w} x" for w in words],
          "relevant": [{i} for i in range(len(words))]}
  task = Task("tiny", load=lambda split, data_dir=None: data,
              evaluate=code_search.evaluate_data)
  monkeypatch.setattr(tasks, "get", lambda name: task)
  grid = dict(layers=(1, 2), dims=(8, 32))
  evaluate = text_pairs.text_evaluator([dict(task="tiny", split="s", grid=grid)], tiny)
  got = evaluate(tiny.module, 0)
  for layer in grid["layers"]:
    for dim in grid["dims"]:
      embed = lambda texts: jaxemb.encode(tiny, texts, layer=layer, truncate_dim=dim)
      want = tasks.evaluate(task, "s", embed)
      for name in ("mrr@10", "recall@10", "ndcg@10", "rankme"):
        np.testing.assert_allclose(got[f"s/L{layer}_d{dim}/{name}"], want[name], rtol=1e-4)
  assert len({got[f"s/L{l}_d{d}/mrr@10"] for l in (1, 2) for d in (8, 32)}) > 1
  with pytest.raises(ValueError, match="layer=3"):
    text_pairs.text_evaluator([dict(task="tiny", split="s", grid=dict(layers=(3,), dims=(8,)))],
                              tiny)(tiny.module, 0)
  with pytest.raises(ValueError, match="grid dims"):
    text_pairs.text_evaluator([dict(task="tiny", grid=dict(layers=(1,), dims=()))], tiny)
  with pytest.raises(ValueError, match="expected dict"):
    text_pairs.text_evaluator([dict(task="tiny", grid=dict(layer=(1,)))], tiny)


def test_export_with_truncate_dim_round_trips(tiny, tmp_path):
  directory = jaxemb.save_pretrained(tiny, tmp_path / "m", truncate_dim=16)
  cfg = json.loads((directory / "config_sentence_transformers.json").read_text())
  assert cfg["truncate_dim"] == 16
  loaded = jaxemb.load_pretrained(directory)
  assert loaded.truncate_dim == 16
  got = jaxemb.encode(loaded, TEXTS)
  np.testing.assert_allclose(got, jaxemb.encode(tiny, TEXTS, truncate_dim=16), atol=1e-6)
  assert jaxemb.load_pretrained(jaxemb.save_pretrained(tiny, tmp_path / "n")).truncate_dim is None
  with pytest.raises(ValueError, match="truncate_dim"):
    jaxemb.save_pretrained(tiny, tmp_path / "bad", truncate_dim=33)
  cfg["truncate_dim"] = 0
  (directory / "config_sentence_transformers.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match=r"truncate_dim=0; expected an int in \[1, 32\]"):
    jaxemb.load_pretrained(directory)


@pytest.mark.slow  # imports torch in a subprocess: ~15-40 s
def test_sentence_transformers_reads_truncate_dim(tiny, tmp_path, reference_python):
  directory = jaxemb.save_pretrained(tiny, tmp_path / "m", truncate_dim=16)
  code = ("import json, sys; from sentence_transformers import SentenceTransformer; "
          "m = SentenceTransformer(sys.argv[1], device='cpu'); "
          "e = m.encode(sys.argv[2:], normalize_embeddings=True); "
          "print(json.dumps([m.truncate_dim, e.tolist()]))")
  out = subprocess.run([reference_python, "-c", code, str(directory), *TEXTS],
                       capture_output=True, text=True, timeout=240)
  assert out.returncode == 0, out.stderr[-2000:]
  truncate_dim, emb = json.loads(out.stdout.strip().splitlines()[-1])
  assert truncate_dim == 16
  np.testing.assert_allclose(np.array(emb), jaxemb.encode(tiny, TEXTS, truncate_dim=16),
                             atol=1e-5)


def test_elastic_config_variants():
  for variant, objective in [("matryoshka", "matryoshka"), ("2dmse", "2dmse"),
                             ("starbucks", "starbucks"), ("default", "info_nce"),
                             ("mined", "info_nce")]:
    c = load_config(f"{CONFIG}:{variant}")
    assert c.objective.name == objective and c.total_steps == 100 and c.export
    assert c.final_evaluators[0]["grid"] == dict(layers=(2, 3, 6), dims=(64, 96, 384))
  starbucks = load_config(f"{CONFIG}:starbucks").objective
  assert starbucks.full_weight == 120.0 and starbucks.symmetric and starbucks.kl_weight == 1.0
  paper = load_config(f"{CONFIG}:starbucks,full_weight=1,symmetric=false").objective
  assert paper.full_weight == 1.0 and not paper.symmetric
  assert load_config(f"{CONFIG}:mined").data.name == "mined_negatives"
  assert load_config(f"{CONFIG}:mined,grid=false").final_evaluators[0] == dict(
      task="stdlib_code_search", split="test")
  with pytest.raises(ValueError, match="choose exactly one variant"):
    load_config(f"{CONFIG}:runlocal")


@pytest.mark.slow  # a 6-step runlocal training of all-MiniLM-L6-v2 with the grid: ~40 s
def test_starbucks_runlocal_trains_and_logs_the_grid(tmp_path):
  from jaxemb.train import loop
  c = load_config(f"{CONFIG}:starbucks,runlocal,export_dim=96")
  c.total_steps, c.checkpoint_every, c.progress = 2, 2, False
  summary = loop.run(c, str(tmp_path / "run"))
  assert np.isfinite(summary["metrics"]["loss"])
  last = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  final = {k: v for row in last for k, v in row.items()}
  for layer, dim in [(2, 64), (2, 384), (6, 64), (6, 384)]:
    assert 0 <= final[f"validation[:64]/L{layer}_d{dim}/mrr@10"] <= 1
  assert jaxemb.load_pretrained(tmp_path / "run" / "export").truncate_dim == 96


def test_colab_grid_reader_takes_the_last_grid_row(tmp_path):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "elastic_grid", Path(__file__).parent.parent / "colabs" / "elastic_grid.py")
  elastic_grid = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(elastic_grid)
  rows = [{"step": 0, "test/L2_d64/mrr@10": 0.1, "test/L6_d384/mrr@10": 0.5},
          {"step": 50, "validation/mrr@10": 0.6, "loss": 1.0},
          {"step": 100, "test/L2_d64/mrr@10": 0.3, "test/L6_d384/mrr@10": 0.7,
           "test/L2_d64/recall@10": 0.9, "test_bm25/mrr@10": 0.2, "validation/L2_d64/mrr@10": 0}]
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
  assert elastic_grid.grid_from_metrics(tmp_path / "metrics.jsonl") == {(2, 64): 0.3,
                                                                       (6, 384): 0.7}
  assert elastic_grid.grid_from_metrics(tmp_path / "metrics.jsonl", metric="recall@10") == {
      (2, 64): 0.9}


def test_cli_eval_at_a_layer_and_dim(tiny, tiny_dir, monkeypatch, capsys):
  from jaxemb import cli, tasks
  from jaxemb.data import code_search
  from jaxemb.evaluate.registry import Task
  data = {"queries": TEXTS, "corpus": DOCS, "relevant": [{i} for i in range(len(TEXTS))]}
  task = Task("tiny", load=lambda split, data_dir=None: data, evaluate=code_search.evaluate_data)
  monkeypatch.setattr(tasks, "get", lambda name: task)
  cli.main(["eval", "--model", str(tiny_dir), "--task", "tiny:s", "--layer", "1",
            "--truncate-dim", "8", "--quiet"])
  got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  want = tasks.evaluate(task, "s", lambda t: jaxemb.encode(tiny, t, layer=1, truncate_dim=8))
  assert got["layer"] == 1 and got["truncate_dim"] == 8
  np.testing.assert_allclose(got["mrr@10"], want["mrr@10"], rtol=1e-6)
  with pytest.raises(SystemExit):  # user errors exit 2 with the message on stderr
    cli.main(["eval", "--model", str(tiny_dir), "--task", "tiny:s", "--layer", "5"])
  assert "layer=5 must be an integer in [1, 2]" in capsys.readouterr().err
