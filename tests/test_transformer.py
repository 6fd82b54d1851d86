"""Tests for jaxemb.nn.transformer on tiny random configs.

The encoder is checked against slow float64 numpy implementations written from the papers'
definitions (BERT: post-LN, exact erf GELU, masked softmax; pre-LN with rotary positions in the
complex-number form of RoFormer), using the module's own (randomised) parameters. Each reference
runs one unpadded sequence at a time, so padding handling is tested too.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.transformer import (
    TransformerConfig,
    TransformerEncoder,
    apply_rotary,
    rotary_frequencies,
)

TINY = dict(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=16)
ROTARY = dict(TINY, norm_position="pre", position_embedding="rotary", layer_norm_eps=1e-6,
              rope_theta=100.0)
LENGTHS = (9, 5, 1)  # full row, padded row, single-token row
L = 9


def _randomize(module: nnx.Module, seed: int) -> None:
  """Gives every parameter non-trivial values.

  The default init (LayerNorm scale 1, biases 0, weights std 0.02) would let a reference that
  forgets a bias or a LayerNorm scale still pass, and makes attention nearly uniform.
  """
  rng = np.random.default_rng(seed)
  state = nnx.state(module, nnx.Param)

  def fill(path, x):
    name = str(path[-1])
    if "scale" in name:
      return jnp.asarray(1 + 0.2 * rng.standard_normal(x.shape), x.dtype)
    if "bias" in name:
      return jnp.asarray(0.1 * rng.standard_normal(x.shape), x.dtype)
    return jnp.asarray(0.3 * rng.standard_normal(x.shape), x.dtype)

  nnx.update(module, jax.tree_util.tree_map_with_path(fill, state))


def _make(seed=0, **overrides):
  enc = TransformerEncoder(TransformerConfig(**{**TINY, **overrides}), rngs=nnx.Rngs(seed))
  _randomize(enc, seed)
  return enc


def _params(module: nnx.Module) -> dict:
  """Flat {path: float64 numpy array} of the module's parameters."""
  return {".".join(map(str, p)): np.asarray(v[...], np.float64)
          for p, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def _batch(seed=0, lengths=LENGTHS, length=L, left=False, vocab=100):
  rng = np.random.default_rng(seed)
  ids = np.zeros((len(lengths), length), np.int32)
  mask = np.zeros((len(lengths), length), np.int32)
  types = np.zeros((len(lengths), length), np.int32)
  for b, n in enumerate(lengths):
    cols = slice(length - n, length) if left else slice(0, n)
    ids[b, cols] = rng.integers(1, vocab, n)
    types[b, cols] = rng.integers(0, 2, n)
    mask[b, cols] = 1
  # Garbage ids at padded positions: they must not matter.
  ids[mask == 0] = rng.integers(1, vocab, int((mask == 0).sum()))
  return ids, mask, types


def _run(module, ids, mask, types=None, **kwargs):
  """Calls the encoder eagerly: op-by-op compiles are cached per shape and shared by all tests
  (every test uses the same few shapes), which is cheaper here than one jit per test."""
  types = np.zeros_like(ids) if types is None else types
  return module(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types), **kwargs)


# ------------------------------------------------------------------------------------------------
# Slow numpy references (float64, one unpadded sequence at a time).
# ------------------------------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def _gelu(x):
  return 0.5 * x * (1 + _erf(x / math.sqrt(2)))  # exact GELU, Hendrycks & Gimpel 2016


def _layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def _softmax(s):
  e = np.exp(s - s.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _rotate(x, positions, inv_freq):
  """RoPE as complex multiplication: pair (x_i, x_{i+d/2}) is z_i, rotated by e^{i m theta_i}."""
  half = x.shape[-1] // 2
  z = x[..., :half] + 1j * x[..., half:]
  z = z * np.exp(1j * positions[:, None, None] * inv_freq)  # [n, H, d/2]
  return np.concatenate([z.real, z.imag], axis=-1)


def _attention(h, p, pre, cfg, rot_positions=None):
  n = h.shape[0]
  d = cfg.head_dim
  heads = lambda t: t.reshape(n, cfg.num_heads, d)
  q = heads(h @ p[pre + "query.kernel"] + p[pre + "query.bias"])
  k = heads(h @ p[pre + "key.kernel"] + p[pre + "key.bias"])
  v = heads(h @ p[pre + "value.kernel"] + p[pre + "value.bias"])
  if rot_positions is not None:
    inv_freq = cfg.rope_theta ** (-np.arange(0, d, 2) / d)
    q, k = _rotate(q, rot_positions, inv_freq), _rotate(k, rot_positions, inv_freq)
  out = np.zeros((n, cfg.num_heads, d))
  for head in range(cfg.num_heads):
    scores = q[:, head] @ k[:, head].T / math.sqrt(d)
    out[:, head] = _softmax(scores) @ v[:, head]
  return out.reshape(n, -1) @ p[pre + "out.kernel"] + p[pre + "out.bias"]


def _ffn(h, p, pre):
  return _gelu(h @ p[pre + "ffn_in.kernel"] + p[pre + "ffn_in.bias"]) @ p[
      pre + "ffn_out.kernel"] + p[pre + "ffn_out.bias"]


def _bert_reference(p, cfg, ids, types):
  """HF BertModel (post-LN) on one unpadded sequence; returns all hidden states."""
  n = len(ids)
  x = (p["embeddings.word.embedding"][ids] + p["embeddings.position.embedding"][np.arange(n)]
       + p["embeddings.token_type.embedding"][types])
  x = _layer_norm(x, p["embeddings.norm.scale"], p["embeddings.norm.bias"], cfg.layer_norm_eps)
  states = [x]
  for i in range(cfg.num_layers):
    pre = f"layers.{i}."
    ln = lambda y, name: _layer_norm(y, p[pre + name + ".scale"], p[pre + name + ".bias"],
                                     cfg.layer_norm_eps)
    x = ln(x + _attention(x, p, pre + "attention.", cfg), "attention_norm")
    x = ln(x + _ffn(x, p, pre), "ffn_norm")
    states.append(x)
  return states


def _pre_ln_rotary_reference(p, cfg, ids, types):
  """Pre-LN encoder with rotary positions 0..n-1 and a final LayerNorm."""
  n = len(ids)
  x = p["embeddings.word.embedding"][ids] + p["embeddings.token_type.embedding"][types]
  for i in range(cfg.num_layers):
    pre = f"layers.{i}."
    ln = lambda y, name: _layer_norm(y, p[pre + name + ".scale"], p[pre + name + ".bias"],
                                     cfg.layer_norm_eps)
    x = x + _attention(ln(x, "attention_norm"), p, pre + "attention.", cfg, np.arange(n))
    x = x + _ffn(ln(x, "ffn_norm"), p, pre)
  return _layer_norm(x, p["final_norm.scale"], p["final_norm.bias"], cfg.layer_norm_eps)


def _real(mask_row):
  return np.flatnonzero(mask_row)


# ------------------------------------------------------------------------------------------------
# Forward pass against the references.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("left", [False, True], ids=["right_pad", "left_pad"])
def test_bert_matches_numpy_reference(left):
  enc = _make()
  ids, mask, types = _batch(left=left)
  out = _run(enc, ids, mask, types, output_hidden_states=True)
  p = _params(enc)
  assert len(out.hidden_states) == enc.cfg.num_layers + 1
  np.testing.assert_array_equal(out.hidden_states[-1], out.last_hidden_state)
  for b in range(len(LENGTHS)):
    cols = _real(mask[b])
    ref = _bert_reference(p, enc.cfg, ids[b, cols], types[b, cols])
    for layer, (got, want) in enumerate(zip(out.hidden_states, ref)):
      np.testing.assert_allclose(np.asarray(got[b, cols]), want, atol=2e-5, rtol=1e-5,
                                 err_msg=f"row {b}, hidden state {layer}")


@pytest.mark.parametrize("left", [False, True], ids=["right_pad", "left_pad"])
def test_pre_ln_rotary_matches_numpy_reference(left):
  enc = _make(**ROTARY)
  ids, mask, types = _batch(seed=1, left=left)
  out = _run(enc, ids, mask, types)
  assert enc.embeddings.position is None and enc.embeddings.norm is None
  p = _params(enc)
  for b in range(len(LENGTHS)):
    cols = _real(mask[b])
    want = _pre_ln_rotary_reference(p, enc.cfg, ids[b, cols], types[b, cols])
    np.testing.assert_allclose(np.asarray(out.last_hidden_state[b, cols]), want, atol=2e-5,
                               rtol=1e-5, err_msg=f"row {b}")


def test_token_type_ids_default_to_zeros():
  enc = _make()
  ids, mask, _ = _batch()
  a = enc(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
  b = _run(enc, ids, mask, np.zeros_like(ids)).last_hidden_state
  np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("overrides", [{}, ROTARY], ids=["bert", "pre_ln_rotary"])
def test_left_and_right_padding_pool_identically(overrides):
  """Same sentences padded on either side (and with extra padding) give the same embedding."""
  enc = _make(**overrides)
  ids_r, mask_r, _ = _batch(seed=2, length=9)
  ids_l, mask_l, _ = _batch(seed=2, length=9, left=True)
  model = SentenceEmbedder(enc, Pooler("mean", 32, rngs=nnx.Rngs(0)))
  right = model(jnp.asarray(ids_r), jnp.asarray(mask_r))
  left = model(jnp.asarray(ids_l), jnp.asarray(mask_l))
  # Same real tokens in both batches (the generator draws them in the same order).
  np.testing.assert_array_equal(ids_r[mask_r > 0], ids_l[mask_l > 0])
  np.testing.assert_allclose(left, right, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Rotary positions and long-context scaling.
# ------------------------------------------------------------------------------------------------


def test_apply_rotary_matches_complex_rotation():
  cfg = TransformerConfig(**ROTARY)
  x = np.random.default_rng(0).standard_normal((2, 7, 4, cfg.head_dim)).astype(np.float32)
  pos = np.tile(np.arange(7), (2, 1))
  got = apply_rotary(jnp.asarray(x), jnp.asarray(pos), rotary_frequencies(cfg))
  inv_freq = cfg.rope_theta ** (-np.arange(0, cfg.head_dim, 2) / cfg.head_dim)
  for b in range(2):
    np.testing.assert_allclose(got[b], _rotate(x[b].astype(np.float64), pos[b], inv_freq),
                               atol=1e-5)


def test_rotary_scores_depend_only_on_position_difference():
  cfg = TransformerConfig(**ROTARY)
  rng = np.random.default_rng(0)
  q, k = (jnp.asarray(rng.standard_normal((1, 1, 1, cfg.head_dim)), jnp.float32)
          for _ in range(2))
  inv_freq = rotary_frequencies(cfg)

  def score(m, n):
    rq = apply_rotary(q, jnp.array([[m]]), inv_freq)
    rk = apply_rotary(k, jnp.array([[n]]), inv_freq)
    return float((rq * rk).sum())

  for m, n in [(0, 0), (3, 1), (1, 3), (7, 2)]:
    base = score(m, n)
    for shift in (1, 5, 40):
      assert score(m + shift, n + shift) == pytest.approx(base, abs=1e-4)
  # ... and they do depend on the difference, so the check above can fail.
  assert abs(score(3, 1) - score(1, 3)) > 1e-3
  assert abs(score(0, 0) - score(2, 0)) > 1e-3


def test_linear_scaling_divides_positions():
  """Position interpolation (Chen et al. 2023): rotating at position m with factor f is
  rotating at m / f without scaling."""
  plain = TransformerConfig(**ROTARY)
  linear = TransformerConfig(**ROTARY, rope_scaling="linear", rope_scaling_factor=4.0)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 12, 4, 8)), jnp.float32)
  pos = jnp.arange(12)[None]
  got = apply_rotary(x, pos, rotary_frequencies(linear))
  want = apply_rotary(x, pos / 4.0, rotary_frequencies(plain))
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert not np.allclose(got, apply_rotary(x, pos, rotary_frequencies(plain)), atol=1e-3)


def test_ntk_scaling_changes_base():
  d, theta, f = 8, 100.0, 4.0
  plain = np.asarray(rotary_frequencies(TransformerConfig(**ROTARY)))
  ntk = np.asarray(rotary_frequencies(
      TransformerConfig(**ROTARY, rope_scaling="ntk", rope_scaling_factor=f)))
  # NTK-aware scaling (bloc97 2023): base theta * f^(d/(d-2)), closed form.
  new_base = theta * f ** (d / (d - 2))
  np.testing.assert_allclose(ntk, new_base ** (-np.arange(0, d, 2) / d), rtol=1e-6)
  # Its defining property: the highest frequency is unchanged, the lowest is divided by f.
  assert ntk[0] == pytest.approx(plain[0]) == pytest.approx(1.0)
  assert ntk[-1] == pytest.approx(plain[-1] / f, rel=1e-6)


def test_rope_scaling_changes_the_encoder_output():
  ids, mask, types = _batch()
  base = _make(**ROTARY)
  scaled = _make(**ROTARY, rope_scaling="linear", rope_scaling_factor=2.0)
  a = _run(base, ids, mask, types).last_hidden_state
  b = _run(scaled, ids, mask, types).last_hidden_state
  # Same seed gives the same params; only the positions' frequencies differ.
  assert np.abs(np.asarray(a) - np.asarray(b))[mask > 0].max() > 1e-3
  # Row 2 has a single token at position 0, where every rotation is the identity.
  np.testing.assert_allclose(a[2, 0], b[2, 0], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Dtypes, dropout, hidden states, sharding names.
# ------------------------------------------------------------------------------------------------


def test_bfloat16_compute_stays_close_to_float32():
  f32 = _make()
  bf16 = TransformerEncoder(TransformerConfig(**TINY, dtype="bfloat16"), rngs=nnx.Rngs(0))
  nnx.update(bf16, nnx.state(f32, nnx.Param))
  ids, mask, types = _batch()
  want = np.asarray(_run(f32, ids, mask, types).last_hidden_state)
  got = _run(bf16, ids, mask, types).last_hidden_state
  assert got.dtype == jnp.bfloat16
  assert bf16.layers[0].ffn_in.kernel[...].dtype == jnp.float32  # params stay float32
  diff = np.abs(np.asarray(got, np.float32) - want)[mask > 0]
  # Loose: bf16 keeps ~3 significant digits and errors add up over 2 layers; outputs are
  # LayerNorm-ed (unit scale, LN scale ~1 +- 0.2).
  assert diff.max() < 0.15, diff.max()
  assert diff.mean() < 0.02, diff.mean()


def test_dropout_only_when_not_deterministic():
  enc = _make()
  ids, mask, types = _batch()
  args = (ids, mask, types)
  det1 = np.asarray(_run(enc, *args).last_hidden_state)
  det2 = np.asarray(_run(enc, *args, deterministic=True).last_hidden_state)
  np.testing.assert_array_equal(det1, det2)
  drop1 = np.asarray(_run(enc, *args, deterministic=False).last_hidden_state)
  drop2 = np.asarray(_run(enc, *args, deterministic=False).last_hidden_state)
  real = mask > 0
  assert np.abs(drop1 - det1)[real].max() > 1e-2
  # The rng stream advances, so two training passes drop different units.
  assert np.abs(drop1 - drop2)[real].max() > 1e-2
  # With all rates 0 a non-deterministic pass equals the deterministic one.
  no_drop = _make(dropout_rate=0.0, attention_dropout_rate=0.0)
  np.testing.assert_allclose(_run(no_drop, *args, deterministic=False).last_hidden_state,
                             _run(no_drop, *args).last_hidden_state, atol=1e-6)


@pytest.mark.parametrize("overrides", [{}, ROTARY], ids=["bert", "pre_ln_rotary"])
def test_hidden_states(overrides):
  enc = _make(**overrides)
  ids, mask, _ = _batch()
  out = _run(enc, ids, mask, output_hidden_states=True)
  assert enc.num_hidden_states == 3
  assert len(out.hidden_states) == 3
  assert all(h.shape == (3, L, 32) for h in out.hidden_states)
  np.testing.assert_array_equal(out.hidden_states[-1], out.last_hidden_state)
  assert _run(enc, ids, mask).hidden_states is None


@pytest.mark.parametrize("overrides", [{}, ROTARY], ids=["bert", "pre_ln_rotary"])
def test_every_param_has_logical_axis_names(overrides):
  enc = TransformerEncoder(TransformerConfig(**{**TINY, **overrides}), rngs=nnx.Rngs(0))
  params = nnx.state(enc, nnx.Param)
  specs = nnx.get_partition_spec(params)
  is_spec = lambda x: isinstance(x, jax.sharding.PartitionSpec)
  spec_leaves = jax.tree.leaves(specs, is_leaf=is_spec)
  param_leaves = jax.tree.leaves(params)
  assert len(spec_leaves) == len(param_leaves) > 0
  for spec, value in zip(spec_leaves, param_leaves):
    assert is_spec(spec)
    assert len(spec) == value.ndim, (spec, value.shape)
    assert set(spec) <= {"vocab", "embed", "qkv", "mlp", None}, spec
    assert set(spec) != {None}, spec  # every param has at least one named axis
  word = nnx.get_partition_spec(nnx.state(enc.embeddings.word, nnx.Param))
  assert tuple(jax.tree.leaves(word, is_leaf=is_spec)[0]) == ("vocab", "embed")


# ------------------------------------------------------------------------------------------------
# Validation.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, match", [
    (dict(norm_position="middle"), "norm_position='middle'"),
    (dict(position_embedding="alibi"), "alibi"),
    (dict(rope_scaling="yarn"), "yarn"),
    (dict(hidden_act="swish2"), "swish2"),
    (dict(dtype="float64"), "float64"),
    (dict(hidden_size=30, num_heads=4), "hidden_size=30.*num_heads=4"),
    (dict(rope_scaling_factor=0.5), "0.5"),
    (dict(num_heads=0), "num_heads must be a positive integer, got 0"),  # was ZeroDivisionError
    (dict(vocab_size=-1), "vocab_size must be a positive integer, got -1"),
])
def test_config_validation_names_the_value(overrides, match):
  with pytest.raises(ValueError, match=match):
    TransformerConfig(**{**TINY, **overrides})


def test_rotary_head_size_must_be_even():
  with pytest.raises(ValueError, match="even head size, got 3"):
    TransformerConfig(**{**TINY, "hidden_size": 12, "position_embedding": "rotary"})


def test_sequence_longer_than_max_positions():
  enc = TransformerEncoder(TransformerConfig(**TINY), rngs=nnx.Rngs(0))
  ids = jnp.ones((1, 17), jnp.int32)
  with pytest.raises(ValueError, match="sequence length 17 exceeds max_position_embeddings=16"):
    jax.eval_shape(enc, ids, jnp.ones_like(ids))
  # The limit itself is fine (traced only: the check runs at trace time).
  jax.eval_shape(enc, ids[:, :16], jnp.ones_like(ids[:, :16]))


def test_mismatched_mask_shape():
  enc = TransformerEncoder(TransformerConfig(**TINY), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"\(2, 5\) and \(2, 4\)"):
    jax.eval_shape(enc, jnp.ones((2, 5), jnp.int32), jnp.ones((2, 4), jnp.int32))


# ------------------------------------------------------------------------------------------------
# Scanned layers and early exit (encode at a layer).
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, ROTARY], ids=["bert", "pre_ln_rotary"])
def test_scanned_layers_equal_the_unrolled_loop(overrides):
  enc = _make(**{**overrides, "num_layers": 3})
  ids, mask, types = _batch(seed=2)
  run = jax.jit(lambda scan: enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types),
                                 output_hidden_states=True, scan=scan), static_argnums=0)
  scanned, looped = run(True), run(False)
  assert "scan" in str(jax.make_jaxpr(lambda: enc(jnp.asarray(ids), jnp.asarray(mask),
                                                  scan=True))())
  for got, want in zip(scanned.hidden_states, looped.hidden_states):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-6)
  np.testing.assert_allclose(scanned.last_hidden_state, looped.last_hidden_state, atol=1e-5,
                             rtol=1e-6)


@pytest.mark.parametrize("overrides", [{}, ROTARY], ids=["bert", "pre_ln_rotary"])
def test_num_layers_returns_that_layers_hidden_state(overrides):
  enc = _make(**{**overrides, "num_layers": 3})
  ids, mask, _ = _batch(seed=3)
  full = _run(enc, ids, mask, output_hidden_states=True)
  for k in (1, 2, 3):
    out = _run(enc, ids, mask, num_layers=k, output_hidden_states=True)
    np.testing.assert_allclose(out.last_hidden_state, full.hidden_states[k], atol=1e-5)
    assert len(out.hidden_states) == k + 1
  if overrides:  # pre-LN: the final norm applies after the last layer only
    raw = _run(enc, ids, mask, num_layers=2).last_hidden_state
    assert not np.allclose(enc.final_norm(raw), raw, atol=1e-3)


@pytest.mark.parametrize("bad", [0, 3, -1])
def test_bad_num_layers_names_value_and_range(bad):
  enc = _make()
  ids, mask, _ = _batch()
  with pytest.raises(ValueError, match=rf"num_layers={bad} must be an integer in \[1, 2\]"):
    _run(enc, ids, mask, num_layers=bad)
