"""Tests for jaxemb.encode on a tiny random model with a character-level tokenizer.

The reference for `encode` is the encoder and pooler called on each text alone (no batching,
sorting, bucketing, row padding or sharding), so any effect of those on the result shows up.

Compiles dominate the run time on a shared CPU, so the tests keep to few shapes: max length 16
(buckets 8, 12, 16) and batch sizes <= 8 where possible (always 8 rows over the 8 devices).
"""

import functools
import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxemb
from tiny_tokenizer import tiny_tokenizer
from jaxemb.model import EmbeddingModel
from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder

from jaxemb import encoding as encode_module  # bucketing and the compiled-function cache

MAX_LEN = 16


def tiny_model(pooling="mean") -> EmbeddingModel:
  cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                          intermediate_size=64, max_position_embeddings=MAX_LEN)
  rngs = nnx.Rngs(0)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs), Pooler(pooling, 32, rngs=rngs))
  return EmbeddingModel(module=module, tokenizer=tiny_tokenizer(), max_seq_length=MAX_LEN,
                        name="tiny")


@pytest.fixture(scope="module")
def model():
  return tiny_model()


def _texts(n, seed=0):
  """Varied texts of 2 to ~20 tokens (some past MAX_LEN): words of random letters."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    words = ["".join(rng.choice(list(string.ascii_lowercase), rng.integers(1, 4)))
             for _ in range(rng.integers(0, 7))]
    out.append(" ".join(words))
  return out


def _alone(model, text, normalize=True):
  """One text through encoder + pooler, in a batch of its own: the reference for `encode`.

  Right-padded to MAX_LEN so every call has one shape (the encoder's padding invariance is
  tested against numpy in test_transformer.py).
  """
  ids = tiny_tokenizer().encode(text).ids  # a fresh tokenizer: no truncation configured
  if len(ids) > MAX_LEN:
    ids = ids[:MAX_LEN - 1] + [3]  # truncation keeps the final [SEP]
  mask = np.zeros((1, MAX_LEN), np.int32)
  mask[0, :len(ids)] = 1
  ids = jnp.asarray([ids + [0] * (MAX_LEN - len(ids))], jnp.int32)
  graphdef, state = nnx.split(model.module)
  pooled = np.asarray(_encode_and_pool(graphdef, state, ids, jnp.asarray(mask)), np.float64)[0]
  return pooled / np.linalg.norm(pooled) if normalize else pooled


@functools.partial(jax.jit, static_argnums=0)
def _encode_and_pool(graphdef, state, ids, mask):
  # One compile for all reference calls (eager dispatch would compile every op on its own).
  module = nnx.merge(graphdef, state)
  return module.pooler(module.encoder(ids, mask).last_hidden_state, mask)


# ------------------------------------------------------------------------------------------------
# Results do not depend on batching, bucketing or order.
# ------------------------------------------------------------------------------------------------


def test_encode_matches_module_on_each_text_alone(model):
  texts = _texts(12, seed=1) + ["", "hello world!"]
  got = jaxemb.encode(model, texts, batch_size=8)
  assert got.dtype == np.float32 and got.shape == (len(texts), 32)
  want = np.stack([_alone(model, t) for t in texts])
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_batch_size_does_not_change_results(model):
  texts = _texts(40, seed=2)
  big = jaxemb.encode(model, texts, batch_size=64)  # one forward pass of 64 rows
  one = jaxemb.encode(model, texts, batch_size=1)
  odd = jaxemb.encode(model, texts, batch_size=7)  # batches mixing lengths and buckets
  np.testing.assert_allclose(one, big, atol=1e-6)
  np.testing.assert_allclose(odd, big, atol=1e-6)


def test_shuffled_input_gives_the_same_rows(model):
  texts = _texts(40, seed=3)
  perm = np.random.default_rng(0).permutation(len(texts))
  base = jaxemb.encode(model, texts, batch_size=8)
  shuffled = jaxemb.encode(model, [texts[i] for i in perm], batch_size=8)
  np.testing.assert_allclose(shuffled, base[perm], atol=1e-6)


def test_duplicates_give_identical_rows(model):
  got = jaxemb.encode(model, ["abc de", "x", "abc de"] * 3, batch_size=4)
  np.testing.assert_allclose(got[0], got[2], atol=1e-6)
  np.testing.assert_allclose(got[0], got[8], atol=1e-6)
  assert not np.allclose(got[0], got[1], atol=1e-3)


def test_truncation_at_max_seq_length(model):
  words = "the quick brown fox jumps".split() * 3
  long_text = " ".join(words)
  ids = tiny_tokenizer().encode(long_text).ids  # `encode` configures truncation on its own
  assert len(ids) > 2 * MAX_LEN
  # Word pieces are single characters, so the first MAX_LEN - 2 of them are a prefix we can
  # spell out; the truncated text must embed like that prefix.
  pieces = tiny_tokenizer().encode(long_text).tokens[1:MAX_LEN - 1]
  prefix = "".join(p[2:] if p.startswith("##") else " " + p for p in pieces).strip()
  assert tiny_tokenizer().encode(prefix).ids == ids[:MAX_LEN - 1] + [3]
  got = jaxemb.encode(model, [long_text, prefix])
  np.testing.assert_allclose(got[0], got[1], atol=1e-6)


def test_normalize_false_returns_the_pooled_mean(model):
  texts = ["hello world", "a b c d e f g", ""]
  raw = jaxemb.encode(model, texts, normalize=False)
  want = np.stack([_alone(model, t, normalize=False) for t in texts])
  np.testing.assert_allclose(raw, want, atol=1e-6)
  assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-2)


# ------------------------------------------------------------------------------------------------
# Bucketing keeps the number of compiled shapes bounded.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_len", [5, 8, 64, 128, 256, 300, 512])
def test_bucket_lengths_are_increasing_and_end_at_max(max_len):
  buckets = encode_module.bucket_lengths(max_len)
  assert buckets[-1] == max_len
  assert all(a < b for a, b in zip(buckets, buckets[1:])), buckets
  assert len(buckets) <= 27


def test_bucket_is_the_smallest_that_fits():
  buckets = encode_module.bucket_lengths(256)
  for length in range(1, 257):
    b = encode_module._bucket(length, buckets)
    smaller = [x for x in buckets if x < b]
    assert b >= length and (not smaller or smaller[-1] < length), (length, b)


def test_batch_rows_shrink_for_long_texts_only():
  rows = encode_module.batch_rows
  budget = encode_module._ATTENTION_BUDGET
  # Short texts: the full batch. Long ones: the largest power of two whose attention scores
  # (rows x heads x length^2) fit the budget, e.g. MiniLM (12 heads) at 256 tokens -> 2 rows.
  assert rows(32, 64, 12, 1) == 64
  assert rows(256, 64, 12, 1) == 2 and 2 * 12 * 256**2 <= budget < 4 * 12 * 256**2
  for length in (8, 64, 128, 256, 512):
    r = rows(length, 64, 12, 1)
    assert 1 <= r <= 64 and r & (r - 1) == 0
    assert r * 12 * length**2 <= budget or r == 1
  # No attention (SSM encoders): always the full batch; rows are a multiple of the devices.
  assert rows(512, 64, None, 1) == 64
  assert rows(256, 64, 12, 8) == 8 and rows(32, 12, 12, 8) == 16


def _record_plans(monkeypatch):
  """Records the batch shapes `encode` plans: a list of [(rows, length), ...] per call."""
  plans = []
  real = encode_module.plan_batches

  def recording(*args, **kwargs):
    batches = real(*args, **kwargs)
    plans.append([(rows, length) for _, rows, length in batches])
    return batches

  monkeypatch.setattr(encode_module, "plan_batches", recording)
  return plans


def test_small_batches_for_long_texts_give_the_same_embeddings(monkeypatch):
  model = tiny_model()
  texts = _texts(40, seed=7)
  full = jaxemb.encode(model, texts, batch_size=16)
  plans = _record_plans(monkeypatch)
  monkeypatch.setattr(encode_module, "COMPILE_COST_TOKENS", 0.0)  # every bucket: more shapes
  # A budget so small that only texts padded to <= 8 tokens keep 16 rows (4 heads x 16 rows
  # x 8^2 = 4096); longer ones get 4, rounded up to the 8 devices.
  monkeypatch.setattr(encode_module, "_ATTENTION_BUDGET", 4096)
  small = jaxemb.encode(model, texts, batch_size=16)
  seen = plans[0]
  assert {rows for rows, length in seen if length > 8} == {8}
  assert {rows for rows, length in seen if length <= 8} == {16}
  np.testing.assert_allclose(small, full, atol=1e-6)


def test_encode_compiles_a_bounded_number_of_shapes(monkeypatch):
  model = tiny_model("max")
  texts = _texts(300, seed=5)
  lengths = {len(ids) for ids in encode_module.tokenize(model, texts)}
  buckets = encode_module.bucket_lengths(MAX_LEN)
  assert len(lengths) > 2 * len(buckets)  # exact-length padding would compile more shapes
  plans = _record_plans(monkeypatch)
  compiled = []
  real = encode_module._compile
  monkeypatch.setattr(encode_module, "_compile", lambda g, s, rows, length, *a: (
      compiled.append((rows, length)), real(g, s, rows, length, *a))[1])
  monkeypatch.setattr(encode_module, "_COMPILED", type(encode_module._COMPILED)())  # empty
  monkeypatch.setattr(encode_module, "COMPILE_COST_TOKENS", 0.0)  # the finest ladder
  first = jaxemb.encode(model, texts, batch_size=8)
  shapes = plans[0]
  assert len(shapes) == -(-300 // 8)
  assert {rows for rows, _ in shapes} == {8}
  assert {length for _, length in shapes} == set(buckets)
  # One compile per distinct shape, each once (some on the compile-ahead thread), none again.
  assert sorted(compiled) == sorted(set(shapes))
  again = jaxemb.encode(model, texts, batch_size=8)
  assert len(compiled) == len(set(shapes))
  np.testing.assert_array_equal(again, first)


def test_few_texts_get_a_coarser_ladder(monkeypatch):
  model = tiny_model()
  plans = _record_plans(monkeypatch)
  # A compile worth 100 padded tokens: 6 texts can save at most 6 x 8 tokens with a second
  # bucket, 300 texts far more.
  monkeypatch.setattr(encode_module, "COMPILE_COST_TOKENS", 100.0)
  texts = _texts(300, seed=6)
  few = jaxemb.encode(model, texts[:6], batch_size=8)
  many = jaxemb.encode(model, texts, batch_size=8)
  assert len({length for _, length in plans[0]}) < len({length for _, length in plans[1]})
  np.testing.assert_allclose(few, many[:6], atol=1e-6)


def _brute_force_buckets(lengths, max_len, compile_cost, attention):
  """Cheapest subset of the ladder (containing a bucket for the longest text), by enumeration."""
  import itertools
  ladder = encode_module.bucket_lengths(max_len)
  best = None
  for r in range(1, len(ladder) + 1):
    for subset in itertools.combinations(ladder, r):
      if subset[-1] < max(lengths):
        continue
      cost = compile_cost * len(subset) + sum(
          b * (1 + attention * b) for b in (min(x for x in subset if x >= n) for n in lengths))
      if best is None or cost < best[0] - 1e-9:
        best = (cost, subset)
  return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("compile_cost", [0.0, 20.0, 300.0, 1e6])
def test_choose_buckets_is_the_cheapest_subset(seed, compile_cost):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, 41, rng.integers(1, 60)).tolist()
  attention = [0.0, 0.01][seed % 2]
  got = encode_module.choose_buckets(lengths, 40, compile_cost=compile_cost,
                                     attention_per_token=attention)
  cost, want = _brute_force_buckets(lengths, 40, compile_cost, attention)
  got_cost = compile_cost * len(got) + sum(
      b * (1 + attention * b) for b in (encode_module._bucket(n, got) for n in lengths))
  assert got_cost == pytest.approx(cost), (got, want)
  assert got[-1] >= max(lengths)
  if compile_cost == 0.0:  # every needed ladder step
    ladder = encode_module.bucket_lengths(40)
    assert set(got) == {encode_module._bucket(n, ladder) for n in lengths}
  if compile_cost == 1e6:
    assert len(got) == 1


def test_small_inputs_pad_rows_to_a_power_of_two_over_devices():
  assert encode_module._padded_rows(3, 64, 8) == 8
  assert encode_module._padded_rows(9, 64, 8) == 16
  assert encode_module._padded_rows(33, 64, 8) == 64
  assert encode_module._padded_rows(100, 64, 8) == 64
  assert encode_module._padded_rows(100, 12, 8) == 16  # rows must split over 8 devices


# ------------------------------------------------------------------------------------------------
# Bad and edge-case input.
# ------------------------------------------------------------------------------------------------


def test_empty_list_gives_zero_rows(model):
  got = jaxemb.encode(model, [])
  assert got.shape == (0, 32) and got.dtype == np.float32


def test_empty_and_whitespace_strings_are_valid(model):
  got = jaxemb.encode(model, ["", " ", "\t\n  ", "word"])
  assert np.isfinite(got).all()
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
  # All three tokenise to [CLS] [SEP] only.
  np.testing.assert_allclose(got[1], got[0], atol=1e-6)
  np.testing.assert_allclose(got[2], got[0], atol=1e-6)
  np.testing.assert_allclose(got[0], _alone(model, ""), atol=1e-6)


def test_tuple_and_generator_inputs(model):
  want = jaxemb.encode(model, ["ab", "cd"])
  np.testing.assert_array_equal(jaxemb.encode(model, ("ab", "cd")), want)
  np.testing.assert_array_equal(jaxemb.encode(model, (t for t in ["ab", "cd"])), want)


@pytest.mark.parametrize("bad, index, kind", [
    (["ok", 3], 1, "int"),
    ([None], 0, "NoneType"),
    (["a", "b", b"bytes"], 2, "bytes"),
])
def test_non_string_element_raises_type_error_naming_index(model, bad, index, kind):
  with pytest.raises(TypeError, match=rf"texts\[{index}\] is {kind}"):
    jaxemb.encode(model, bad)


@pytest.mark.parametrize("bad", ["a single string", b"bytes"])
def test_a_bare_string_raises_type_error(model, bad):
  with pytest.raises(TypeError, match="sequence of strings"):
    jaxemb.encode(model, bad)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_non_positive_batch_size(model, batch_size):
  with pytest.raises(ValueError, match=f"batch_size must be >= 1, got {batch_size}"):
    jaxemb.encode(model, ["a"], batch_size=batch_size)


# ------------------------------------------------------------------------------------------------
# Encoding at a size: (layer, truncate_dim).
# ------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _all_hidden_states(graphdef, state, ids, mask):
  return nnx.merge(graphdef, state).encoder(ids, mask, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("layer, dim", [(1, 8), (2, 32), (1, 32), (2, 5), (None, 12)])
def test_encode_at_layer_and_dim_pools_that_layers_hidden_states(model, layer, dim):
  texts = _texts(10, seed=11) + [""]
  got = jaxemb.encode(model, texts, batch_size=4, layer=layer, truncate_dim=dim)
  assert got.shape == (len(texts), dim) and got.dtype == np.float32
  graphdef, state = nnx.split(model.module)
  for i, text in enumerate(texts):
    ids = tiny_tokenizer().encode(text).ids
    if len(ids) > MAX_LEN:
      ids = ids[:MAX_LEN - 1] + [3]  # truncation keeps the final [SEP]
    mask = np.zeros((1, MAX_LEN), np.int32)
    mask[0, :len(ids)] = 1
    padded = jnp.asarray([ids + [0] * (MAX_LEN - len(ids))], jnp.int32)
    states = _all_hidden_states(graphdef, state, padded, jnp.asarray(mask))
    hidden = np.asarray(states[layer or 2], np.float64)[0, :len(ids)]  # that layer, real tokens
    pooled = hidden.mean(0)[:dim]  # mean pooling by hand, then the first dims
    np.testing.assert_allclose(got[i], pooled / np.linalg.norm(pooled), atol=2e-6)
  unnormalized = jaxemb.encode(model, texts[:2], layer=layer, truncate_dim=dim, normalize=False)
  full = jaxemb.encode(model, texts[:2], layer=layer, normalize=False)
  np.testing.assert_allclose(unnormalized, full[:, :dim], atol=1e-6)


def test_early_layers_differ_from_the_last(model):
  texts = ["hello world", "a b c"]
  assert not np.allclose(jaxemb.encode(model, texts, layer=1), jaxemb.encode(model, texts),
                         atol=1e-3)
  np.testing.assert_allclose(jaxemb.encode(model, texts, layer=2), jaxemb.encode(model, texts),
                             atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(truncate_dim=0), r"truncate_dim=0 must be an integer in \[1, 32\]"),
    (dict(truncate_dim=33), r"truncate_dim=33 must be an integer in \[1, 32\]"),
    (dict(truncate_dim=8.0), r"truncate_dim=8.0 must be an integer in \[1, 32\]"),
    (dict(layer=0), r"layer=0 must be an integer in \[1, 2\]"),
    (dict(layer=3), r"layer=3 must be an integer in \[1, 2\]"),
    (dict(layer=-1), r"layer=-1 must be an integer in \[1, 2\]"),
    (dict(layer="1"), r"layer='1' must be an integer in \[1, 2\]"),
])
def test_bad_layer_or_truncate_dim_names_value_and_range(model, kwargs, match):
  with pytest.raises(ValueError, match=match):
    jaxemb.encode(model, ["a"], **kwargs)
  with pytest.raises(ValueError, match=match):  # checked before any work, even with no texts
    jaxemb.encode(model, [], **kwargs)


def test_multi_layer_pooling_refuses_an_earlier_layer():
  cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                          intermediate_size=64, max_position_embeddings=MAX_LEN)
  rngs = nnx.Rngs(0)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs),
                            Pooler("multi_layer", 32, num_layers=3, rngs=rngs))
  model = EmbeddingModel(module=module, tokenizer=tiny_tokenizer(), max_seq_length=MAX_LEN)
  with pytest.raises(ValueError, match="layer=1 needs a pooler of one layer's states"):
    jaxemb.encode(model, ["a"], layer=1)
  assert jaxemb.encode(model, ["a"], layer=2, truncate_dim=4).shape == (1, 4)


# ------------------------------------------------------------------------------------------------
# Start-up: `import jaxemb` stays light.
# ------------------------------------------------------------------------------------------------


def test_import_jaxemb_loads_no_data_or_checkpoint_stack():
  import json
  import subprocess
  import sys
  heavy = ("tensorflow_datasets", "grain", "orbax", "jax", "torch")
  code = (
      "import json, sys\n"
      "import jaxemb\n"
      f"bare = [m for m in {heavy!r} if m in sys.modules]\n"
      "names = [getattr(jaxemb, name) for name in jaxemb.__all__]\n"
      f"used = [m for m in {heavy!r} if m in sys.modules]\n"
      "print(json.dumps([bare, used, sorted(jaxemb.__all__)]))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  bare, used, names = json.loads(out.stdout.strip().splitlines()[-1])
  assert bare == []  # nothing heavy until a public name is used
  assert used == ["jax"]  # encoding needs JAX, but no data pipeline or checkpointing
  assert {"EmbeddingModel", "encode", "load_pretrained", "save_pretrained", "split",
          "apply"} <= set(names)
  with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
    jaxemb.no_such_name
