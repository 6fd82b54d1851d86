"""Long-context methods: position maps by hand, SelfExtend against a float64 loop, inputs within
the trained length unchanged by every method, PCW averaging, errors, and the CLI flags."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb import encoding, long_context as lc
from jaxemb.model import EmbeddingModel
from jaxemb.nn import long_context as pos
from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.transformer import (TransformerConfig, TransformerEncoder, apply_rotary,
                                   rotary_frequencies)
from tiny_tokenizer import tiny_model, tiny_tokenizer

TRAINED = 32  # the tiny model's position rows


@pytest.fixture(scope="module")
def model():
  return tiny_model(max_len=TRAINED)


def _rotary_model(seed=0):
  cfg = TransformerConfig(vocab_size=tiny_tokenizer().get_vocab_size(), hidden_size=32,
                          num_layers=2, num_heads=4, intermediate_size=64,
                          max_position_embeddings=TRAINED, norm_position="pre",
                          position_embedding="rotary", rope_theta=100.0)
  rngs = nnx.Rngs(seed)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs), Pooler("mean", 32, rngs=rngs))
  return EmbeddingModel(module=module, tokenizer=tiny_tokenizer(), max_seq_length=TRAINED,
                        name="tiny-rotary")


def _run(module, ids, mask):
  """module(ids, mask) under one jit (eager tiny forwards compile every op on its own)."""
  graphdef, state = nnx.split(module)
  return jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, m))(state, ids, mask)


def _texts(n, low, high, seed=0):
  """Texts of one-letter words: each word is one token of the tiny tokenizer."""
  rng = np.random.default_rng(seed)
  return [" ".join(rng.choice(list("abcdefghij"), int(rng.integers(low, high))))
          for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# Position maps by hand.
# ---------------------------------------------------------------------------------------------

def test_grouped_and_recurrent_positions_by_hand():
  p = jnp.arange(10)[None]
  assert pos.grouped_positions(p, 3).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3]]
  assert pos.recurrent_positions(p, 4).tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 0, 1]]
  # Rows of at most the trained length (4 rows) keep their positions under gp; pi reads
  # row pid * s of the grown table for them (old row pid) and row pid for long rows.
  both = jnp.stack([jnp.arange(10), jnp.arange(10)])
  lengths = jnp.array([10, 3])
  gp = pos.absolute_positions(both, lengths, "gp", 4, 3)
  assert gp.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3], list(range(10))]
  pi = pos.absolute_positions(both, lengths, "pi", 8, 2)  # table of 8 = 2 x 4 trained rows
  assert pi.tolist() == [list(range(10)), [2 * i for i in range(10)]]


def test_interpolate_table_by_hand():
  table = np.array([[0.0, 10.0], [2.0, 20.0], [4.0, 30.0]], np.float32)
  out = pos.interpolate_table(table, 2)
  np.testing.assert_array_equal(out[:, 0], [0, 1, 2, 3, 4, 4])  # last row repeats
  np.testing.assert_array_equal(out[:, 1], [10, 15, 20, 25, 30, 30])
  assert out.dtype == np.float32
  assert pos.new_rows_mask(6, 2).tolist() == [False, True, False, True, False, True]
  with pytest.raises(ValueError, match="factor must be a positive integer, got 1.5"):
    pos.interpolate_table(table, 1.5)


# ---------------------------------------------------------------------------------------------
# SelfExtend.
# ---------------------------------------------------------------------------------------------

def _self_extend_loop(q, k, group, window, theta=100.0):
  """float64 reference: each logit is q . R(rel) k with rel the SelfExtend relative position."""
  _, length, heads, d = q.shape
  inv = 1.0 / theta ** (np.arange(0, d, 2) / d)

  def rot(x, p):
    a = p * inv
    x1, x2 = x[: d // 2], x[d // 2:]
    return np.concatenate([x1 * np.cos(a) - x2 * np.sin(a), x2 * np.cos(a) + x1 * np.sin(a)])

  out = np.zeros((1, heads, length, length))
  for h in range(heads):
    for m in range(length):
      for n in range(length):
        if abs(m - n) < window:
          qm, kn = m, n
        elif m > n:  # key before the query: the query side is shifted
          qm, kn = m // group + window - window // group, n // group
        else:
          qm, kn = m // group, n // group + window - window // group
        out[0, h, m, n] = rot(q[0, m, h], qm) @ rot(k[0, n, h], kn)
  return out


@pytest.mark.parametrize("group, window", [(3, 4), (2, 2), (4, 12)])
def test_self_extend_scores_match_a_loop(group, window):
  rng = np.random.default_rng(0)
  q, k = rng.standard_normal((2, 1, 12, 2, 8))
  cfg = TransformerConfig(hidden_size=16, num_heads=2, position_embedding="rotary",
                          rope_theta=100.0)
  rotate = lambda x, p: apply_rotary(x, p, rotary_frequencies(cfg))
  got = pos.self_extend_scores(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32),
                               jnp.arange(12)[None], rotate, group, window)
  np.testing.assert_allclose(got, _self_extend_loop(q, k, group, window), rtol=1e-4, atol=1e-4)


def test_self_extend_with_a_window_covering_the_input_is_plain_attention():
  plain = _rotary_model()
  ids = jnp.asarray(np.random.default_rng(1).integers(5, 40, (2, 20)), jnp.int32)
  mask = jnp.ones_like(ids).at[1, 15:].set(0)
  extended = lc.extend(plain, 64, "self_extend", self_extend_group=4, self_extend_window=20)
  assert extended.module.encoder.cfg.rope_scaling == "self_extend"
  want = _run(plain.module, ids, mask)
  np.testing.assert_allclose(_run(extended.module, ids, mask), want, atol=1e-6)
  # A window smaller than the input does change the output (so the check above can fail).
  small = lc.extend(plain, 64, "self_extend", self_extend_group=4, self_extend_window=3)
  assert np.abs(np.asarray(_run(small.module, ids, mask)) - np.asarray(want)).max() > 1e-4


def test_rotary_extension_sets_pi_and_ntk_factors():
  plain = _rotary_model()
  ntk = lc.extend(plain, 4 * TRAINED, "ntk").module.encoder.cfg
  assert (ntk.rope_scaling, ntk.rope_scaling_factor) == ("ntk", 4.0)
  d = ntk.head_dim  # NTK-aware base theta * s^(d/(d-2)), closed form
  want = (100.0 * 4.0 ** (d / (d - 2))) ** (-np.arange(0, d, 2) / d)
  np.testing.assert_allclose(rotary_frequencies(ntk), want, rtol=1e-6)
  pi = lc.extend(plain, 2 * TRAINED, "pi").module.encoder.cfg
  assert (pi.rope_scaling, pi.rope_scaling_factor) == ("linear", 2.0)
  assert lc.self_extend_defaults(4, 512) == (5, 128)  # LongEmbed's (g, w) at 2k
  assert lc.self_extend_defaults(2, 512) == (3, 256)
  assert lc.self_extend_defaults(8, 512) == (9, 64)


# ---------------------------------------------------------------------------------------------
# Absolute positions: unchanged within the trained length, the right rows beyond it.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["pcw", "gp", "rp", "pi"])
def test_inputs_within_the_trained_length_embed_as_before(model, method):
  # + [CLS] [SEP]: at most the trained length; one batch, one padded length (one compile).
  texts = _texts(3, 0, TRAINED - 2) + _texts(1, TRAINED - 2, TRAINED - 1)
  want = encoding.encode(model, texts)
  got = lc.encode(model, texts, max_seq_length=4 * TRAINED, position_scaling=method)
  np.testing.assert_allclose(got, want, atol=1e-6)


def _with_table(model, table):
  """A plain (unscaled) copy of `model` whose position table is `table`."""
  cfg = dataclasses.replace(model.module.encoder.cfg, max_position_embeddings=len(table))
  module = lc._with_config(model.module, cfg)
  module.encoder.embeddings.position.embedding.set_value(jnp.asarray(table))
  return module


@pytest.mark.parametrize("method", ["gp", "rp", "pi"])
def test_long_inputs_read_the_method_rows(model, method):
  """A long row under gp/rp/pi equals a plain encoder whose table row p holds the row the
  method reads for position p (built here by hand from the trained table)."""
  factor, length = 3, 80
  old = np.asarray(model.module.encoder.embeddings.position.embedding[...])
  p = np.arange(length)
  rows = {"gp": old[p // factor], "rp": old[p % TRAINED],
          "pi": pos.interpolate_table(old, factor)[p]}[method]
  extended = lc.extend(model, factor * TRAINED, method)
  ids = jnp.asarray(np.random.default_rng(2).integers(5, 40, (1, length)), jnp.int32)
  mask = jnp.ones_like(ids)
  np.testing.assert_allclose(_run(extended.module, ids, mask),
                             _run(_with_table(model, rows), ids, mask), atol=1e-6)


def test_pcw_averages_chunks_by_tokens(model):
  """PCW of a long text = the token-weighted mean of its chunks' pooled vectors, each chunk
  embedded alone with [CLS] ... [SEP] (a float64 average of single-chunk encodes)."""
  text = _texts(1, 70, 71, seed=3)[0]  # 70 one-token words: chunks of 30 + 30 + 10 words
  words = text.split()
  chunks = [" ".join(words[i:i + TRAINED - 2]) for i in range(0, len(words), TRAINED - 2)]
  pooled = encoding.encode(model, chunks, normalize=False).astype(np.float64)
  weights = np.array([len(c.split()) + 2 for c in chunks], np.float64)
  want = (pooled * weights[:, None]).sum(0) / weights.sum()
  got = lc.encode(model, [text], max_seq_length=4 * TRAINED, position_scaling="pcw")
  np.testing.assert_allclose(got[0], want / np.linalg.norm(want), atol=1e-6)
  # Past max_seq_length the text is cut: 40 tokens keep one chunk of 30 words and one of 8.
  cut = lc.encode(model, [text], max_seq_length=40, position_scaling="pcw", normalize=False)
  first = encoding.encode(model, chunks[:1] + [" ".join(words[30:38])], normalize=False)
  np.testing.assert_allclose(cut[0], (first[0] * 32 + first[1] * 10) / 42, atol=1e-6)


def test_truncation_and_errors(model):
  long = _texts(2, 60, 61)
  cut = lc.encode(model, long, max_seq_length=16)
  np.testing.assert_allclose(cut, encoding.encode(dataclasses.replace(model, max_seq_length=16),
                                                  long), atol=1e-6)
  with pytest.raises(ValueError, match="max_seq_length=64 exceeds the 32 trained positions"):
    lc.encode(model, long, max_seq_length=64)
  with pytest.raises(ValueError, match="unknown position_scaling 'yarn'"):
    lc.encode(model, long, max_seq_length=64, position_scaling="yarn")
  with pytest.raises(ValueError, match="'ntk'.*absolute positions"):
    lc.encode(model, long, max_seq_length=64, position_scaling="ntk")
  with pytest.raises(ValueError, match="'pcw'.*rotary positions"):
    lc.extend(_rotary_model(), 64, "pcw")
  with pytest.raises(ValueError, match="needs max_seq_length"):
    lc.encode(model, long, position_scaling="gp")
  with pytest.raises(ValueError, match="already extended"):
    lc.extend(lc.extend(model, 64, "gp"), 128, "gp")
  with pytest.raises(ValueError, match="position_scaling='gp' needs absolute positions"):
    TransformerConfig(position_embedding="rotary", position_scaling="gp")
  # The encoder refuses inputs past what its scaling allows, naming both numbers.
  gp = lc.extend(model, 2 * TRAINED, "gp").module
  ids = jnp.ones((1, 2 * TRAINED + 1), jnp.int32)
  with pytest.raises(ValueError, match=r"sequence length 65 exceeds max_position_embeddings=32 "
                                       r"x position_scaling_factor=2 \(gp\)"):
    jax.eval_shape(gp, ids, ids)


def test_jaxemb_encode_takes_the_options(model):
  import jaxemb
  texts = _texts(2, 60, 61, seed=4)
  got = jaxemb.encode(model, texts, max_seq_length=3 * TRAINED, position_scaling="pi")
  want = lc.encode(model, texts, max_seq_length=3 * TRAINED, position_scaling="pi")
  np.testing.assert_allclose(got, want, atol=1e-6)
  assert not np.allclose(got, jaxemb.encode(model, texts), atol=1e-3)  # not truncated


# ---------------------------------------------------------------------------------------------
# Attention scaling (LongEmbed's inference default, Su 2021).
# ---------------------------------------------------------------------------------------------

def test_attention_logit_scale_by_hand():
  from jaxemb.nn.transformer import attention_logit_scale
  mask = np.zeros((4, 2048), np.int32)
  for row, n in enumerate((1, 100, 512, 2048)):
    mask[row, :n] = 1
  got = np.asarray(attention_logit_scale(jnp.asarray(mask), 512)).ravel()
  # log 2048 / log 512 = 11 / 9; rows of at most 512 tokens are not scaled.
  np.testing.assert_allclose(got, [1.0, 1.0, 1.0, 11 / 9], rtol=1e-6)


@pytest.mark.parametrize("method", ["gp", "pi"])
def test_attention_scaling_multiplies_the_logits_of_long_rows(model, method):
  """Scaling the logits by f equals scaling the query projection by f (q.k is linear in q):
  an extended encoder with attention scaling = the same encoder with f x its query weights."""
  length = 80
  f = np.log(length) / np.log(TRAINED)
  scaled = lc.extend(model, 3 * TRAINED, method, attention_scaling=True).module
  plain = lc.extend(model, 3 * TRAINED, method).module
  for layer in plain.encoder.layers:
    for name in ("kernel", "bias"):
      param = getattr(layer.attention.query, name)
      param.set_value(param[...] * f)
  ids = jnp.asarray(np.random.default_rng(5).integers(5, 40, (1, length)), jnp.int32)
  mask = jnp.ones_like(ids)
  np.testing.assert_allclose(_run(scaled, ids, mask), _run(plain, ids, mask), atol=1e-5)
  # Within the trained length nothing changes.
  texts = _texts(3, 0, TRAINED - 2)
  np.testing.assert_allclose(
      lc.encode(model, texts, max_seq_length=3 * TRAINED, position_scaling=method,
                attention_scaling=True), encoding.encode(model, texts), atol=1e-6)


def test_attention_scaling_is_refused_where_it_cannot_act(model):
  import jaxemb
  texts = _texts(1, 60, 61)
  for method in (None, "pcw"):
    with pytest.raises(ValueError, match=f"position_scaling={method!r} never encodes one"):
      lc.encode(model, texts, max_seq_length=3 * TRAINED if method else 16,
                position_scaling=method, attention_scaling=True)
  with pytest.raises(ValueError, match="attention_scaling needs a long-context"):
    jaxemb.encode(model, texts, attention_scaling=True)
  with pytest.raises(ValueError, match="attention_scale_length must be 0 .off. or >= 2"):
    TransformerConfig(attention_scale_length=1)


def test_an_extended_config_round_trips_through_the_exported_config():
  from jaxemb.pretrained import bert
  cfg = TransformerConfig(max_position_embeddings=4 * 512, position_scaling="pi",
                          position_scaling_factor=4, attention_scale_length=512)
  hf = bert.config_to_hf(cfg)
  assert hf["jaxemb_attention_scale_length"] == 512 and hf["jaxemb_position_scaling"] == "pi"
  assert bert.config_from_hf(hf) == cfg
  plain = bert.config_to_hf(TransformerConfig())
  assert "jaxemb_attention_scale_length" not in plain and bert.config_from_hf(plain) == \
      TransformerConfig()
