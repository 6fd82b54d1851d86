"""Recipe `text_distill` (frozen teacher, cached teacher embeddings) and its config."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxemb
from jaxemb import recipes
from jaxemb.recipes import text_distill
from jaxemb.train import loop
from jaxemb.train.config import load_config
from tiny_tokenizer import tiny_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  """A saved tiny 2-layer model without dropout, so a training-mode forward pass is exact."""
  directory = jaxemb.save_pretrained(tiny_model(), tmp_path_factory.mktemp("m") / "tiny")
  config = json.loads((directory / "config.json").read_text())
  config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  (directory / "config.json").write_text(json.dumps(config))
  return str(directory)


def _config(tiny_dir, loss, arg=""):
  c = load_config(f"{REPO}/configs/codesearch_distill.py:runlocal,{loss}{arg}")
  c.model.pretrained = c.teacher.model = tiny_dir
  c.model.num_layers = 1
  c.data.update(split="train[:16]", query_lengths=(8,), code_lengths=(16,))
  c.batch_size, c.total_steps, c.checkpoint_every = 8, 2, 2
  c.export, c.progress, c.final_evaluators = False, False, []
  return c


def _recipe_batch(c):
  recipe = recipes.get(c.recipe)(c)
  data = recipe.train_data()
  rows = [data.source[i] for i in range(8)]
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  batch = {k: jnp.asarray(v) for k, v in data.transform(batch, 0).items()}
  return recipe, batch


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _mean_pool(states, mask):
  m = np.asarray(mask, np.float64)[..., None]
  return _unit((np.asarray(states, np.float64) * m).sum(1) / m.sum(1))


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("loss", ["mse", "score_kl"])
def test_embedding_losses_equal_a_float64_reference(tiny_dir, loss):
  recipe, batch = _recipe_batch(_config(tiny_dir, loss))
  assert recipes.get("text_distill") is text_distill.TextDistill
  model = recipe.model(nnx.Rngs(0))
  assert model.num_layers == 1
  teacher = recipe.teacher.module
  # Hand-computed embeddings: the student's first layer and the 2-layer teacher, mean-pooled in
  # float64 from their token states on the batch's own token ids.
  s, t = {}, {}
  for side in ("query", "doc"):
    ids, mask = batch[f"{side}_ids"], batch[f"{side}_mask"]
    s[side] = _mean_pool(model.encoder(ids, mask).last_hidden_state, mask)
    t[side] = _mean_pool(teacher.encoder(ids, mask).last_hidden_state, mask)
  # The cached teacher embeddings are the teacher's embeddings of the same truncated texts.
  np.testing.assert_allclose(batch["teacher_q"], t["query"], atol=1e-5)
  np.testing.assert_allclose(batch["teacher_d"], t["doc"], atol=1e-5)
  if loss == "mse":
    expected = (np.mean((s["query"] - t["query"]) ** 2) + np.mean((s["doc"] - t["doc"]) ** 2)) / 2
  else:  # T^2 KL(softmax(teacher / T) || softmax(student / T)) per query, batch mean; T = 0.05
    temp = 0.05
    log_p_s = _log_softmax(s["query"] @ s["doc"].T / temp)
    log_p_t = _log_softmax(t["query"] @ t["doc"].T / temp)
    expected = temp**2 * np.mean((np.exp(log_p_t) * (log_p_t - log_p_s)).sum(-1))
  value, metrics = recipe.loss(model, recipe.extra_params(), batch, jax.random.key(0))
  np.testing.assert_allclose(float(value), expected, rtol=2e-4, atol=1e-7)
  assert float(metrics["distill_loss"]) == pytest.approx(float(value))


def test_trg_loss_equals_the_objective_on_hand_computed_tokens(tiny_dir):
  c = _config(tiny_dir, "trg")
  c.distill.task_weight = 0.5
  recipe, batch = _recipe_batch(c)
  assert "teacher_q" not in batch  # trg runs the teacher in the loss, nothing is cached
  model = recipe.model(nnx.Rngs(0))
  extra = recipe.extra_params()
  args = []
  for side in ("query", "doc"):
    ids, mask = batch[f"{side}_ids"], batch[f"{side}_mask"]
    args += [model.encoder(ids, mask).last_hidden_state,
             recipe.teacher.module.encoder(ids, mask).last_hidden_state, mask]
  expected, _ = text_distill.trg_pair_loss(c.distill, *args)
  task, _ = recipe._loss(model(batch["query_ids"], batch["query_mask"]),
                         model(batch["doc_ids"], batch["doc_mask"]), batch, extra, None)
  value, metrics = recipe.loss(model, extra, batch, jax.random.key(0))
  np.testing.assert_allclose(float(value), float(expected) + 0.5 * float(task), rtol=1e-5)
  assert set(metrics) >= {"distill_node", "distill_edge", "task_loss", "loss"}


def test_the_optimizer_never_moves_the_teacher(tiny_dir):
  recipe, _ = _recipe_batch(_config(tiny_dir, "trg"))
  graph_params = nnx.split(recipe.model(nnx.Rngs(0)), nnx.Param, ...)[1].to_pure_dict()
  params = {"model": graph_params, "extra": recipe.extra_params()}
  tx, _ = recipe.optimizer()
  state = tx.init(params)
  # Nonzero gradients everywhere, the teacher's included: only the student may move.
  # Two updates: the warm-up schedule's first learning rate is 0.
  grads = jax.tree.map(jnp.ones_like, params)
  new = params
  for _ in range(2):
    updates, state = tx.update(grads, state, new)
    new = optax.apply_updates(new, updates)
  for a, b in zip(jax.tree.leaves(new["extra"]["teacher"]),
                  jax.tree.leaves(params["extra"]["teacher"])):
    np.testing.assert_array_equal(a, b)
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new["model"]),
                                                     jax.tree.leaves(params["model"]))]
  assert all(moved)


def test_teacher_embeddings_are_cached_once(tiny_dir, tmp_path, monkeypatch):
  c = _config(tiny_dir, "mse")
  c.teacher.cache = str(tmp_path / "teacher.npz")
  recipe = recipes.get(c.recipe)(c)
  source = recipe.train_data().source
  first = recipe.teacher_embeddings(source)
  assert (tmp_path / "teacher.npz").is_file()

  def fail(*args, **kwargs):
    raise AssertionError("the teacher ran again instead of reading the cache")

  monkeypatch.setattr("jaxemb.encoding.encode", fail)
  again = recipe.teacher_embeddings(source)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert first[0].shape == (16, 32)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["score_kl", "trg"])
def test_runlocal_trains_through_the_loop(tiny_dir, tmp_path, loss):
  c = _config(tiny_dir, loss)
  c.final_evaluators = [dict(task="stdlib_code_search", split="validation[:16]")]
  summary = loop.run(c, str(tmp_path / "run"))
  assert summary["step"] == 2 and np.isfinite(summary["metrics"]["loss"])
  assert "validation[:16]/mrr@10" in summary["eval_end"]


@pytest.mark.parametrize("loss", ["mse", "score_kl", "trg"])
def test_distill_config(loss):
  c = load_config(f"{REPO}/configs/codesearch_distill.py:{loss}")
  assert c.recipe == "text_distill" and c.distill.loss == loss and c.model.num_layers == 3
  assert c.teacher.model == "all-MiniLM-L6-v2" and c.total_steps == 15
  assert load_config(f"{REPO}/configs/codesearch_distill.py:runlocal,{loss}").total_steps < 10
  with pytest.raises(ValueError, match="exactly one loss"):
    load_config(f"{REPO}/configs/codesearch_distill.py:mse,trg")


def test_bad_distill_config(tiny_dir):
  c = _config(tiny_dir, "mse")
  c.distill.loss = "bogus"
  with pytest.raises(ValueError, match="distill.loss='bogus'"):
    recipes.get(c.recipe)(c)
  c = _config(tiny_dir, "mse")
  c.teacher.model = ""
  with pytest.raises(ValueError, match="teacher.model"):
    recipes.get(c.recipe)(c)
  c = _config(tiny_dir, "mse")
  c.distill.extra_key = 1
  with pytest.raises(ValueError, match="distill.extra_key"):
    recipes.get(c.recipe)(c)
