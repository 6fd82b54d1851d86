"""Input pipeline: step-indexed global batches, exact resume, per-process rows, placement."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxemb.data import pipeline
from jaxemb.data.pipeline import GlobalBatches
from jaxemb.data.synthetic import CLS, PAD, SEP, SyntheticPairs
from jaxemb.train import mesh as mesh_lib


class _Indexed:
  """Example i carries its own index, so batches show which examples they hold."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"index": np.array(i, np.int64), "x": np.full((2,), i, np.float32)}


@pytest.fixture(scope="module")
def sharding():
  return mesh_lib.batch_sharding(mesh_lib.make_mesh({"data": 2, "fsdp": 4}))


def _indices(batches, n):
  return [np.asarray(next(batches)["index"]).tolist() for _ in range(n)]


def test_batches_are_global_arrays_split_over_the_batch_axes(sharding):
  batch = next(GlobalBatches(_Indexed(64), 16, seed=0, sharding=sharding))
  assert batch["x"].shape == (16, 2)
  assert batch["x"].sharding.spec == P(("data", "fsdp"))
  assert {s.data.shape for s in batch["x"].addressable_shards} == {(2, 2)}  # 16 rows / 8


def test_each_epoch_covers_every_example_once_and_is_reshuffled(sharding):
  batches = GlobalBatches(_Indexed(32), 8, seed=3, sharding=sharding)
  first = sum(_indices(batches, 4), [])
  second = sum(_indices(batches, 4), [])
  assert sorted(first) == sorted(second) == list(range(32))
  assert first != second
  assert first != list(range(32))


def test_same_seed_same_order_other_seed_other_order(sharding):
  a = _indices(GlobalBatches(_Indexed(64), 8, seed=1, sharding=sharding), 5)
  b = _indices(GlobalBatches(_Indexed(64), 8, seed=1, sharding=sharding), 5)
  c = _indices(GlobalBatches(_Indexed(64), 8, seed=2, sharding=sharding), 5)
  assert a == b and a != c


def test_set_state_resumes_exactly(sharding):
  reference = _indices(GlobalBatches(_Indexed(40), 8, seed=0, sharding=sharding), 12)
  first = GlobalBatches(_Indexed(40), 8, seed=0, sharding=sharding)
  _indices(first, 7)  # past one epoch (5 batches), so the epoch reshuffle is covered too
  state = first.get_state()
  assert state == {"next_batch": 7}
  resumed = GlobalBatches(_Indexed(40), 8, seed=0, sharding=sharding)
  resumed.set_state(state)
  assert _indices(resumed, 5) == reference[7:]


def test_each_process_reads_its_contiguous_rows(sharding, monkeypatch):
  """With 2 processes, process p materialises rows [p*B/2, (p+1)*B/2) of the same global batch."""
  whole = GlobalBatches(_Indexed(64), 8, seed=0, sharding=sharding).local_batch(3)["index"]
  monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
  parts = []
  for proc in range(2):
    monkeypatch.setattr(pipeline.jax, "process_index", lambda p=proc: p)
    parts.append(GlobalBatches(_Indexed(64), 8, seed=0, sharding=sharding).local_batch(3))
  np.testing.assert_array_equal(np.concatenate([p["index"] for p in parts]), whole)
  with pytest.raises(ValueError, match="global batch 7 is not divisible by the 2 processes"):
    GlobalBatches(_Indexed(64), 7, seed=0, sharding=sharding)


def test_transform_runs_on_the_local_batch_with_its_global_index(sharding):
  seen = []

  def transform(b, index):
    seen.append(index)
    return {"y": b["x"] * 2, "index": b["index"]}

  batches = GlobalBatches(_Indexed(16), 8, seed=0, sharding=sharding, transform=transform)
  batch = next(batches)
  np.testing.assert_array_equal(np.asarray(batch["y"])[:, 0], 2 * np.asarray(batch["index"]))
  next(batches)
  assert seen == [0, 1]


def _host(batch):
  return {k: np.asarray(v) for k, v in batch.items()}


def test_prefetch_gives_the_same_batches_and_resumes_at_the_consumed_one(sharding):
  plain = GlobalBatches(_Indexed(64), 8, seed=3, sharding=sharding)
  ahead = GlobalBatches(_Indexed(64), 8, seed=3, sharding=sharding, prefetch=3)
  for _ in range(5):
    np.testing.assert_array_equal(_host(next(ahead))["index"], _host(next(plain))["index"])
  # Batches 5..8 may already be prepared, but the position is that of the next consumed one.
  state = ahead.get_state()
  assert state == {"next_batch": 5}
  want = _host(next(plain))["index"]
  resumed = GlobalBatches(_Indexed(64), 8, seed=3, sharding=sharding, prefetch=3)
  resumed.set_state(state)
  np.testing.assert_array_equal(_host(next(resumed))["index"], want)
  ahead.set_state({"next_batch": 0})  # jumping back drops what was prepared ahead
  first = GlobalBatches(_Indexed(64), 8, seed=3, sharding=sharding).local_batch(0)
  np.testing.assert_array_equal(_host(next(ahead))["index"], first["index"])
  for b in (ahead, resumed, plain):
    b.close()
  with pytest.raises(ValueError, match="prefetch must be >= 0"):
    GlobalBatches(_Indexed(64), 8, seed=3, sharding=sharding, prefetch=-1)


def test_dataset_smaller_than_a_batch_raises(sharding):
  with pytest.raises(ValueError, match="5 examples, fewer than one batch of 8"):
    GlobalBatches(_Indexed(5), 8, seed=0, sharding=sharding)


def test_synthetic_pairs_are_deterministic_and_well_formed():
  source = SyntheticPairs(num_examples=50, seq_len=12, vocab_size=64, seed=4)
  again = SyntheticPairs(num_examples=50, seq_len=12, vocab_size=64, seed=4)
  other = SyntheticPairs(num_examples=50, seq_len=12, vocab_size=64, seed=5)
  assert len(source) == 50
  for i in (0, 17, 49):
    example = source[i]
    for key, value in example.items():
      assert value.dtype == np.int32 and value.shape == (12,), key
      np.testing.assert_array_equal(value, again[i][key])
    for side in ("query", "doc"):
      ids, mask = example[f"{side}_ids"], example[f"{side}_mask"]
      length = int(mask.sum())
      np.testing.assert_array_equal(mask, np.arange(12) < length)  # left-aligned
      assert ids[0] == CLS and ids[length - 1] == SEP and np.all(ids[length:] == PAD)
      assert np.all((ids[1:length - 1] >= 3) & (ids[1:length - 1] < 64))
  assert any(not np.array_equal(source[i]["query_ids"], other[i]["query_ids"]) for i in range(5))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(seq_len=3), "seq_len"), (dict(vocab_size=10, seq_len=8), "vocab_size=10"),
    (dict(noise=1.0), "noise")])
def test_synthetic_pairs_bad_options_raise(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    SyntheticPairs(**kwargs)
  with pytest.raises(IndexError):
    SyntheticPairs(num_examples=4)[4]


def test_batches_do_not_depend_on_the_mesh():
  """The same global batch whatever the device layout: what makes 1 vs 8 devices comparable."""
  small = mesh_lib.batch_sharding(mesh_lib.make_mesh({"data": 1}, devices=jax.devices()[:1]))
  large = mesh_lib.batch_sharding(mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
  source = SyntheticPairs(num_examples=64)
  a = next(GlobalBatches(source, 16, seed=0, sharding=small))
  b = next(GlobalBatches(source, 16, seed=0, sharding=large))
  for key in a:
    np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
