"""Sequence packing: the host packer, segment-aware attention and the packed training step."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.data import packing
from jaxemb.nn.build import build_embedder
from jaxemb.nn.transformer import _segment_positions
from jaxemb.objectives.gradcache import split_strided
from jaxemb.train import loop
from jaxemb.train.config import load_config
from jaxemb.train.metrics import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
            max_position_embeddings=32, dropout_rate=0.0, attention_dropout_rate=0.0)


def _padded(lengths, width, seed=0):
  rng = np.random.default_rng(seed)
  ids = np.zeros((len(lengths), width), np.int32)
  mask = (np.arange(width)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
  ids[mask > 0] = rng.integers(1, 64, int(mask.sum()))
  return ids, mask


def test_first_fit_decreasing_by_hand():
  # longest first: 6 -> bin 0 (2 left), 5 -> bin 1 (3 left), 4 -> bin 2, 3 -> bin 1, 2 -> bin 0
  assert packing.first_fit_decreasing([5, 3, 4, 2, 6], 8) == [[4, 3], [0, 1], [2]]
  with pytest.raises(ValueError, match="9 tokens does not fit a packed row of 8"):
    packing.first_fit_decreasing([3, 9], 8)


def test_pack_keeps_every_token_once_and_unpacks():
  lengths = np.random.default_rng(1).integers(1, 20, 37)
  ids, mask = _padded(lengths, 20)
  p = packing.pack(ids, mask, length=24, rows_multiple=4)
  rows = p["ids"].shape[0]
  assert rows % 4 == 0 and p["ids"].shape == p["segments"].shape == (rows, 24)
  flat = p["ids"].reshape(-1)
  np.testing.assert_array_equal(np.where(mask > 0, flat[p["unpack"]], 0), ids)
  # each real token sits at exactly one packed place; the rest is segment 0 (padding)
  places = p["unpack"][mask > 0]
  assert len(np.unique(places)) == mask.sum() == (p["segments"] > 0).sum()
  # a text's tokens are contiguous, in one segment of one row
  seg = p["segments"].reshape(-1)
  for b, n in enumerate(lengths):
    where = p["unpack"][b, :n]
    np.testing.assert_array_equal(np.diff(where), 1)
    assert where[0] // 24 == where[-1] // 24 and len(set(seg[where])) == 1 and seg[where[0]] > 0


def test_pack_bad_input():
  ids, mask = _padded([3, 5], 8)
  with pytest.raises(ValueError, match="right-padded"):
    packing.pack(ids, mask[:, ::-1], 8)
  with pytest.raises(ValueError, match="5 tokens does not fit a packed row of 4"):
    packing.pack(ids, mask, 4)
  with pytest.raises(ValueError, match=r"\[B, L\] of one shape"):
    packing.pack(ids[0], mask[0], 8)


def test_segment_positions_by_hand():
  seg = jnp.array([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
  np.testing.assert_array_equal(_segment_positions(seg),
                                [[0, 1, 2, 0, 1, 0, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7]])


@pytest.mark.parametrize("pooling", ["mean", "cls", "last_token", "multi_layer"])
def test_embed_packed_equals_the_padded_batch(pooling):
  model = build_embedder("transformer", TINY, pooling=pooling, rngs=nnx.Rngs(0))
  ids, mask = _padded([1, 7, 16, 3, 12, 5, 9], 16, seed=2)
  p = packing.pack(ids, mask, length=20, rows_multiple=2)
  assert p["ids"].shape[0] < len(ids)  # really packed
  args = [jnp.asarray(p[k]) for k in ("ids", "segments", "unpack")] + [jnp.asarray(mask)]
  np.testing.assert_allclose(model.embed_packed(*args), model(jnp.asarray(ids), jnp.asarray(mask)),
                             atol=2e-6)
  if pooling != "multi_layer":
    np.testing.assert_allclose(
        model.embed_packed(*args, layer=1, truncate_dim=8, normalize=False),
        model(jnp.asarray(ids), jnp.asarray(mask), layer=1, truncate_dim=8, normalize=False),
        atol=2e-6)


def _smoke(workdir, **overrides):
  config = load_config(f"{REPO}/configs/smoke.py:runlocal")
  config.model.encoder_options.update(dropout_rate=0.0)
  config.update(progress=False, total_steps=4, checkpoint_every=4, **overrides)
  config.optim.warmup_steps = 2
  loop.run(config, str(workdir))
  return [r["loss"] for r in read_metrics(str(workdir)) if "loss" in r]


def test_packed_training_follows_the_padded_run(tmp_path):
  """Without dropout, packed batches give the padded run's losses step by step (8 devices)."""
  assert jax.device_count() == 8
  padded = _smoke(tmp_path / "padded")
  packed = _smoke(tmp_path / "packed", pack_length=32)
  assert len(packed) == len(padded) == 4
  np.testing.assert_allclose(packed, padded, rtol=2e-5)


def test_queries_and_documents_share_rows():
  q_ids, q_mask = _padded([3, 5, 2, 4], 8, seed=4)
  d_ids, d_mask = _padded([9, 12, 7, 10], 16, seed=5)
  batch = {"query_ids": q_ids, "query_mask": q_mask, "doc_ids": d_ids, "doc_mask": d_mask,
           "score": np.ones(4)}
  out = packing.packed_transform(None, 16, rows_multiple=1)(batch)
  assert sorted(out) == ["pair_mask", "pair_packed_ids", "pair_segments", "pair_unpack", "score"]
  flat = out["pair_packed_ids"].reshape(-1)
  got = np.where(out["pair_mask"] > 0, flat[out["pair_unpack"]], 0)
  np.testing.assert_array_equal(got[:4, :8], q_ids)  # queries first, widened to 16 tokens
  np.testing.assert_array_equal(got[4:], d_ids)
  assert out["pair_packed_ids"].shape[0] == 4  # 52 tokens in 4 rows of 16
  # GradCache chunks: chunk j of the strided split holds queries j, j + 2 and their documents
  chunked = packing.packed_transform(None, 16, rows_multiple=1, chunks=2)(batch)
  assert sorted(chunked) == sorted(out)
  chunk_ids = split_strided(jnp.asarray(chunked["pair_packed_ids"]), num_chunks=2)
  chunk_unpack = split_strided(jnp.asarray(chunked["pair_unpack"]), num_chunks=2)
  chunk_mask = split_strided(jnp.asarray(chunked["pair_mask"]), num_chunks=2)
  for j in range(2):
    flat = np.asarray(chunk_ids[j]).reshape(-1)
    got = np.where(chunk_mask[j] > 0, flat[np.asarray(chunk_unpack[j])], 0)
    np.testing.assert_array_equal(got[:2, :8], q_ids[j::2])
    np.testing.assert_array_equal(got[2:], d_ids[j::2])
  with pytest.raises(ValueError, match="3 chunks must divide the batch of 4 pairs"):
    packing.packed_transform(None, 16, chunks=3)(batch)


def test_gradcache_over_packed_chunks_follows_the_padded_run(tmp_path):
  """GradCache chunks of packed rows (`pack(..., chunks=)`) give the padded GradCache losses."""
  padded = _smoke(tmp_path / "padded", gradcache_chunk=8)
  packed = _smoke(tmp_path / "packed", gradcache_chunk=8, pack_length=32)
  np.testing.assert_allclose(packed, padded, rtol=2e-5)


def test_pack_in_chunks_lays_rows_out_for_the_strided_split():
  lengths = np.random.default_rng(3).integers(1, 12, 24)
  ids, mask = _padded(lengths, 12)
  n = 4
  p = packing.pack(ids, mask, length=16, rows_multiple=2, chunks=n)
  chunk_ids = split_strided(jnp.asarray(p["ids"]), num_chunks=n)         # [n, R / n, 16]
  chunk_unpack = split_strided(jnp.asarray(p["unpack"]), num_chunks=n)   # [n, 6, 12]
  chunk_mask = split_strided(jnp.asarray(mask), num_chunks=n)
  for j in range(n):
    flat = np.asarray(chunk_ids[j]).reshape(-1)
    got = np.where(chunk_mask[j] > 0, flat[np.asarray(chunk_unpack[j])], 0)
    np.testing.assert_array_equal(got, ids[j::n])  # chunk j = texts j, j + n, ...
  with pytest.raises(ValueError, match="chunks must divide the batch of 24"):
    packing.pack(ids, mask, 16, chunks=5)


def test_packing_refuses_what_it_cannot_pack(tmp_path):
  config = load_config(f"{REPO}/configs/smoke.py:runlocal")
  config.update(pack_length=32)
  config.model.position_scaling = "pi"
  with pytest.raises(ValueError, match="pack_length=32 does not combine with "
                                       "model.position_scaling"):
    loop.run(config, str(tmp_path))
