"""ZeTT hypernetwork: masking, copies, identity warm-up, per-row vocabularies, the recipe through
the shared loop (tiny random source model), export and `transfer(method="zett")`."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxemb
from jaxemb import functional
from jaxemb.adapt import init as init_lib
from jaxemb.adapt import tokenizers_train as TT
from jaxemb.adapt import transfer as T
from jaxemb.nn.hyper import HyperConfig, TokenHyperNetwork, predict_embeddings

SMALL = dict(hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, max_pieces=4)


def _hyper(seed=0, **overrides) -> TokenHyperNetwork:
  return TokenHyperNetwork(HyperConfig(**{**SMALL, **overrides}), rngs=nnx.Rngs(seed))


def test_padded_pieces_do_not_matter():
  h = _hyper()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 32)).astype(np.float32)
  mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
  y = np.asarray(h(x, mask))
  x2 = x.copy()
  x2[0, 2:], x2[1, 1:] = 9.0, -4.0
  np.testing.assert_allclose(np.asarray(h(x2, mask)), y, atol=1e-6)
  # A real piece does matter.
  x3 = x.copy()
  x3[0, 1] += 1.0
  assert np.abs(np.asarray(h(x3, mask))[0] - y[0]).max() > 1e-4
  with pytest.raises(ValueError, match="expected \\[N, <= 4, 32\\]"):
    h(np.zeros((1, 5, 32)), np.ones((1, 5)))


def test_mean_residual_starts_as_the_mean_of_the_pieces():
  """residual="mean": the untrained hypernetwork is FVT's mean (a slow numpy mean is the
  reference); padded pieces are left out of it; the correction then trains."""
  h = _hyper(residual="mean")
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 32)).astype(np.float32)
  mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
  expected = np.stack([x[i, :mask[i].sum()].mean(0) for i in range(3)])
  np.testing.assert_allclose(np.asarray(h(x, mask)), expected, rtol=1e-6, atol=1e-6)
  graph, params = functional.split(h)
  loss = lambda p: jnp.sum(jnp.square(functional.merge(graph, p)(x, mask) - 1.0))  # noqa: E731
  grads = jax.grad(loss)(params)
  assert float(jnp.abs(grads["proj_out"]["kernel"]).max()) > 0
  with pytest.raises(ValueError, match="residual='sum'"):
    HyperConfig(**SMALL, residual="sum")


def test_predict_copies_specials():
  h = _hyper()
  table = jnp.asarray(np.random.default_rng(1).normal(size=(10, 32)), jnp.float32)
  pieces = jnp.array([[[3, 4, 0, 0], [5, 0, 0, 0]]])
  mask = jnp.array([[[1, 1, 0, 0], [1, 0, 0, 0]]])
  out = predict_embeddings(h, table, pieces, mask, jnp.array([[-1, 7]]))
  assert out.shape == (1, 2, 32)
  np.testing.assert_array_equal(out[0, 1], table[7])
  direct = h(jnp.take(table, pieces[0, :1], axis=0), mask[0, :1])
  np.testing.assert_allclose(out[0, 0], direct[0], atol=1e-6)


def test_warmed_up_hypernetwork_reproduces_source_embeddings():
  """Identity warm-up (ZeTT): after regressing source rows from themselves, a token that is one
  source token gets (nearly) that token's embedding, far closer than at initialisation."""
  rng = np.random.default_rng(2)
  table = jnp.asarray(rng.normal(size=(60, 32)) * 0.5, jnp.float32)
  h = _hyper(seed=3, num_layers=2)
  graph, params = functional.split(h)
  tx = optax.adam(3e-3)
  opt = tx.init(params)
  ones = jnp.ones((60, 1), jnp.int32)

  def err(p):
    pred = predict_embeddings(functional.merge(graph, p), table, jnp.arange(60)[:, None], ones,
                              -jnp.ones(60, jnp.int32))
    return jnp.mean(jnp.square(pred - table)) / jnp.mean(jnp.square(table))

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(err)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  before = float(err(params))
  for _ in range(400):
    params, opt, _ = step(params, opt)
  after = float(err(params))
  assert before > 0.5 and after < 0.05, (before, after)


def _tiny_dir(tmp_path):
  from test_transfer import _tiny
  return jaxemb.save_pretrained(_tiny(), tmp_path / "tiny_source")


def _config(model_dir, **updates):
  from jaxemb.train.config import load_config
  c = load_config(f"configs/zett_minilm.py:runlocal,model={model_dir}")
  for k, v in updates.items():
    c[k] = v
  return c


def test_sampled_tokenizers_are_deterministic_and_varied():
  texts = ["def add(a, b): return a + b", "Open the file and read lines", "x = y * 2"] * 3
  toks = [TT.sample_tokenizer(texts, np.random.default_rng(s), vocab_range=(300, 600))
          for s in range(6)]
  again = TT.sample_tokenizer(texts, np.random.default_rng(0), vocab_range=(300, 600))
  assert again.to_str() == toks[0].to_str()
  kinds = {json.loads(t.to_str())["model"]["type"] for t in toks}
  assert len(kinds) >= 2
  uni = TT.sample_unigram(texts, 80, np.random.default_rng(0))
  assert uni.get_vocab_size() <= 80 and uni.token_to_id("[PAD]") == 0
  assert uni.decode(uni.encode("def add").ids) == "def add"


def test_batch_rows_index_their_own_vocabulary(tmp_path):
  from jaxemb.recipes.zett import ZeTT
  recipe = ZeTT(_config(_tiny_dir(tmp_path)))
  texts = ["def add(a, b): return a + b", "open the file", "x = y * 2", "sort the list"]
  batch = recipe.make_batch(texts, index=5)
  again = recipe.make_batch(texts, index=5)
  for k in batch:
    np.testing.assert_array_equal(batch[k], again[k])
  b, n = batch["local_ids"].shape
  k = recipe.hyper_cfg.max_pieces
  assert batch["pieces"].shape == (b, n, k) and batch["warm"].tolist() == [0] * b
  # Rebuild each row's source pieces through its own vocabulary; they must be the pieces of
  # the sampled tokenizer's tokens of that row (first k), specials copied.
  rng = np.random.default_rng([0, 5])
  rng.choice(recipe.regular_source, size=(b, recipe.warm_tokens))  # as make_batch draws
  tok = T.prepare_tokenizer(recipe.source.tokenizer,
                            TT.sample_tokenizer(texts, rng, **recipe.sampler_options()))
  tok.enable_truncation(max_length=n)
  plan = init_lib.build_plan(recipe.source.tokenizer, tok)
  for r, e in enumerate(tok.encode_batch(texts)):
    assert batch["new_mask"][r].sum() == len(e.ids)
    for pos, t in enumerate(e.ids):
      local = batch["local_ids"][r, pos]
      if t in plan.special:
        assert batch["copy_ids"][r, local] == plan.copy[t]
      else:
        want = plan.pieces[t][:k] or [recipe.pad_source]
        got = batch["pieces"][r, local][batch["piece_mask"][r, local] > 0]
        assert got.tolist() == want and batch["copy_ids"][r, local] == -1
  warm = recipe.make_batch(texts, index=0)
  assert warm["warm"].tolist() == [1] * b


def test_flat_row_tables_equal_a_full_table(tmp_path):
  """The loss's per-row flat table embeds a row exactly as a model whose whole vocabulary
  table comes from the same hypernetwork (transfer(method="zett"))."""
  from jaxemb.recipes.zett import ZeTT
  recipe = ZeTT(_config(_tiny_dir(tmp_path)))
  model = recipe.model(nnx.Rngs(0))
  texts = ["def add(a, b): return a + b", "open the file"]
  batch = recipe.make_batch(texts, index=7)
  src_graph, src_params = functional.split(model.source)
  table = T.get_word_table(src_params)
  pred = predict_embeddings(model.hyper, table, batch["pieces"], batch["piece_mask"],
                            batch["copy_ids"])
  b, n, d = pred.shape
  ids = batch["local_ids"] + np.arange(b)[:, None] * n
  flat = T.pooled_embeddings(src_graph, T.set_word_table(src_params, pred.reshape(b * n, d)),
                             ids, batch["new_mask"])
  # The same tokenizer, embedded by a full transferred model.
  rng = np.random.default_rng([0, 7])
  rng.choice(recipe.regular_source, size=(b, recipe.warm_tokens))
  tok = TT.sample_tokenizer(texts, rng, **recipe.sampler_options())
  full = T.transfer(recipe.source, tok, "zett", hypernet=model.hyper)
  want = jaxemb.encode(full, texts, normalize=False)
  np.testing.assert_allclose(np.asarray(flat), want, atol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("residual", ["mean", "none"])
def test_recipe_runs_in_the_loop_and_exports(tmp_path, residual):
  from jaxemb.train import loop
  model_dir = _tiny_dir(tmp_path)
  config = _config(model_dir)
  config.hyper.residual = residual
  summary = loop.run(config, str(tmp_path / "run"))
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  steps = [r for r in rows if "loss" in r]
  assert len(steps) == 4
  assert steps[0]["distill_loss"] == 0
  if residual == "mean":  # the untrained hypernetwork is the identity on one-piece tokens
    assert steps[0]["warm_loss"] == 0
  else:
    assert steps[0]["warm_loss"] > 0
  assert steps[-1]["distill_loss"] > 0 and steps[-1]["warm_loss"] == 0
  assert all(np.isfinite(r["loss"]) for r in steps)
  # The source encoder stayed frozen.
  trained = summary["graph"].merge(summary["state"]["params"]["model"])
  src = jaxemb.load_pretrained(model_dir)
  np.testing.assert_array_equal(np.asarray(T.get_word_table(functional.split(trained.source)[1])),
                                T.word_embeddings(src))
  # The export drives transfer(method="zett").
  hyper = T.load_hypernet(summary["export"])
  bpe = TT.train_code_bpe(["def add(a, b): return a + b", "open the file"] * 3, 300, min_frequency=1)
  new = T.transfer(src, bpe, "zett", hypernet=summary["export"])
  np.testing.assert_allclose(
      T.word_embeddings(new),
      T.hyper_table(hyper, T.word_embeddings(src),
                    init_lib.build_plan(src.tokenizer, new.tokenizer)), atol=1e-6)
  assert np.isfinite(jaxemb.encode(new, ["def f(x): pass"])).all()


def test_zett_needs_a_hypernet():
  from test_transfer import _tiny, _bpe
  with pytest.raises(ValueError, match="needs a trained hypernetwork"):
    T.transfer(_tiny(), _bpe(), "zett")
  with pytest.raises(FileNotFoundError, match="missing hyper_config.json"):
    T.load_hypernet("/nonexistent")
