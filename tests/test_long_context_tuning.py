"""Tuned position interpolation: PoSE positions, explicit encoder positions, frozen parameters
and the recipe run that trains only the new position rows."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxemb.nn import long_context as pos
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder
from jaxemb.train import optim

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_pose_positions_skip_within_the_target_length():
  mask = np.zeros((200, 10), np.int32)
  lengths = np.random.default_rng(0).integers(0, 11, 200)
  for b, l in enumerate(lengths):
    mask[b, :l] = 1
  out = pos.pose_positions(mask, 40, np.random.default_rng(1))
  skipped = 0
  for row, l in zip(out, lengths):
    real = row[:l]
    assert np.all(row[l:] == 0) and (l == 0 or real[0] == 0) and real.max(initial=0) < 40
    steps = np.diff(real)
    assert np.all(steps >= 1) and np.sum(steps > 1) <= 1  # one skip at most, order kept
    skipped += int(np.sum(steps > 1))
  assert skipped > 100  # most rows of 2+ tokens get a skip (offset 0 is possible)
  # Rows as long as the target keep 0 .. l - 1.
  full = pos.pose_positions(np.ones((3, 8), np.int32), 8, np.random.default_rng(2))
  np.testing.assert_array_equal(full, np.tile(np.arange(8), (3, 1)))


def test_pose_shift_moves_whole_rows_within_the_target_length():
  # LongEmbed's variant for absolute positions: u .. u + l - 1, u ~ U[0, target - l].
  mask = np.zeros((300, 10), np.int32)
  lengths = np.random.default_rng(0).integers(0, 11, 300)
  for b, l in enumerate(lengths):
    mask[b, :l] = 1
  out = pos.pose_positions(mask, 40, np.random.default_rng(1), mode="shift")
  starts = []
  for row, l in zip(out, lengths):
    assert np.all(row[l:] == 0)
    if l:
      np.testing.assert_array_equal(row[:l], row[0] + np.arange(l))
      assert 0 <= row[0] <= 40 - l
      starts.append(row[0] / (40 - l))
  assert 0.4 < np.mean(starts) < 0.6 and max(starts) > 0.9 and min(starts) < 0.1  # uniform
  with pytest.raises(ValueError, match="PoSE mode must be one of.*got 'middle'"):
    pos.pose_positions(mask, 40, np.random.default_rng(1), mode="middle")


def _encoder(**kwargs):
  cfg = TransformerConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
                          intermediate_size=32, max_position_embeddings=32, dropout_rate=0.0,
                          attention_dropout_rate=0.0, **kwargs)
  return TransformerEncoder(cfg, rngs=nnx.Rngs(0))


def test_explicit_position_ids():
  enc = _encoder()
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, (2, 6)))
  mask = jnp.asarray([[1] * 6, [1] * 4 + [0] * 2])
  counted = jnp.maximum(jnp.cumsum(mask, 1) - 1, 0)
  plain = enc(ids, mask).last_hidden_state
  same = enc(ids, mask, position_ids=counted).last_hidden_state
  np.testing.assert_allclose(same, plain, atol=1e-6)
  moved = enc(ids, mask, position_ids=counted + 5).last_hidden_state
  assert not np.allclose(moved, plain, atol=1e-3)
  # Under "pi" explicit positions read the table rows as given (no x s for short rows).
  pi = _encoder(position_scaling="pi", position_scaling_factor=2)
  rows = pi(ids, mask, position_ids=2 * counted).last_hidden_state
  np.testing.assert_allclose(rows, pi(ids, mask).last_hidden_state, atol=1e-6)
  with pytest.raises(ValueError, match="position_ids must have the shape"):
    enc(ids, mask, position_ids=counted[:, :3])


def test_trainable_prefixes_freeze_every_other_parameter():
  params = {"model": {"encoder": {"position": jnp.ones(3), "word": jnp.ones(2)}},
            "extra": {"scale": jnp.ones(())}}
  tx, _ = optim.make_optimizer(dict(lr=0.1, weight_decay=0.1,
                                    trainable=("model/encoder/position",)), 10)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  assert np.all(np.asarray(updates["model"]["encoder"]["position"]) != 0)
  assert np.all(np.asarray(updates["model"]["encoder"]["word"]) == 0)
  assert float(updates["extra"]["scale"]) == 0.0
  assert optim.path_name(jax.tree_util.tree_flatten_with_path(params)[0][0][0]) == \
      "extra/scale"
  frozen = optim.zero_updates(lambda name: name.endswith("word"))
  out, _ = frozen.update(grads, frozen.init(params))
  assert float(out["model"]["encoder"]["word"].sum()) == 0 and float(out["extra"]["scale"]) == 1


def test_pi_tuning_config_follows_longembed():
  from jaxemb.train.config import load_config
  c = load_config(f"{REPO}/configs/long_pi_tune.py")
  assert (c.model.position_scaling, c.model.max_seq_length, c.optim.lr) == ("pi", 2048, 5e-4)
  assert c.optim.trainable == ("model/encoder/embeddings/position",)
  parts = [dict(p) for p in c.data.parts]
  assert [p["name"] for p in parts] == ["stdlib_code_search", "stdlib_modules"]
  assert all(p["pose_mode"] == "shift" and p["pose_length"] == 2048 for p in parts)
  modules = load_config(f"{REPO}/configs/long_pi_tune.py:data=modules,pose=cut,length=1024").data
  assert (modules.name, modules.pose_mode, modules.pose_length) == ("stdlib_modules", "cut", 1024)
  with pytest.raises(ValueError, match="data must be one of .*got 'books'"):
    load_config(f"{REPO}/configs/long_pi_tune.py:data=books")
  assert c.recipe == "text_pairs"
  distill = load_config(f"{REPO}/configs/long_pi_tune.py:loss=distill")
  assert (distill.recipe, distill.distill.loss, distill.teacher.model) == (
      "text_distill", "mse", "all-MiniLM-L6-v2")
  assert distill.optim.trainable == c.optim.trainable
  with pytest.raises(ValueError, match="loss must be one of .*got 'kl'"):
    load_config(f"{REPO}/configs/long_pi_tune.py:loss=kl")


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "distill"])
def test_pi_tuning_trains_only_the_new_position_rows(tmp_path, loss):
  import jaxemb
  from jaxemb.train import loop
  from jaxemb.train.config import load_config
  c = load_config(f"{REPO}/configs/long_pi_tune.py:runlocal,loss={loss}")
  summary = loop.run(c, str(tmp_path / "run"))
  base = jaxemb.load_pretrained("all-MiniLM-L6-v2")
  _, base_params = jaxemb.split(base.module)
  tuned = jax.device_get(summary["state"]["params"]["model"])
  old = np.asarray(base_params["encoder"]["embeddings"]["position"]["embedding"])
  new = np.asarray(tuned["encoder"]["embeddings"]["position"]["embedding"])
  assert new.shape == (4 * old.shape[0], old.shape[1])  # 2048 / 512: s = 4
  np.testing.assert_array_equal(new[::4], old)  # the trained rows stay
  interpolated = pos.interpolate_table(old, 4)
  assert np.abs(new[pos.new_rows_mask(len(new), 4)]
                - interpolated[pos.new_rows_mask(len(new), 4)]).max() > 1e-5
  flat_base = dict(jax.tree_util.tree_flatten_with_path(base_params)[0])
  for path, value in jax.tree_util.tree_flatten_with_path(tuned)[0]:
    if "position" not in optim.path_name(path):
      np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_base[path]))
  # The export is a long-context model: short inputs embed as the base model does.
  exported = jaxemb.load_pretrained(summary["export"])
  assert exported.module.encoder.cfg.position_scaling == "pi"
  texts = ["def add(a, b): return a + b", "Return the sum of two numbers."]
  np.testing.assert_allclose(jaxemb.encode(exported, texts), jaxemb.encode(base, texts),
                             atol=1e-6)
