"""Tests for jaxemb.nn.pooling: numpy references, padding invariance, params, jit, dtypes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.nn import pooling
from jaxemb.nn.pooling import (
    POOLER_KINDS,
    POOLING_FUNCTIONS,
    LatentAttentionPooling,
    MultiLayerPooling,
    Pooler,
)

B, L, D = 3, 5, 8
LENGTHS = (5, 3, 1)  # full row, partly padded row, single-token row
NUM_LAYERS = 3
MODULE_KW = {
    "latent_attention": dict(num_latents=4, num_heads=2, mlp_dim=16),
    "multi_layer": dict(base="mean"),
}


# ----------------------------------------------------------------------------------------------
# Batch construction.
# ----------------------------------------------------------------------------------------------


def _batch(seed=0, lengths=LENGTHS, length=L, dim=D, layers=None):
  """Right-padded batch; pad positions hold random values (the reference ignores them)."""
  rng = np.random.default_rng(seed)
  shape = (len(lengths), length, dim) if layers is None else (layers, len(lengths), length, dim)
  hidden = rng.normal(size=shape).astype(np.float32)
  mask = np.array([[1] * n + [0] * (length - n) for n in lengths], np.int32)
  return hidden, mask


_GARBAGE = np.array([1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)


def _repad(hidden, mask, extra, side, seed=1):
  """Moves each row's real tokens to `side`'s opposite end of a longer sequence.

  The new length is L + extra; every padded position is filled with garbage (huge, inf, NaN).
  Works on `[B, L, D]` and on stacked `[N, B, L, D]` hidden states.
  """
  rng = np.random.default_rng(seed)
  new_len = mask.shape[1] + extra
  lead = hidden.shape[:-3]
  out = rng.choice(_GARBAGE, size=(*lead, mask.shape[0], new_len, hidden.shape[-1]))
  out = out.astype(hidden.dtype)
  new_mask = np.zeros((mask.shape[0], new_len), np.int32)
  for b in range(mask.shape[0]):
    real = np.flatnonzero(mask[b])
    start = 0 if side == "right" else new_len - len(real)
    out[..., b, start:start + len(real), :] = hidden[..., b, real, :]
    new_mask[b, start:start + len(real)] = 1
  return out, new_mask


# ----------------------------------------------------------------------------------------------
# Slow numpy references: loops over rows and tokens.
# ----------------------------------------------------------------------------------------------


def _real_tokens(hidden_row, mask_row):
  return [hidden_row[i].astype(np.float64) for i in range(len(mask_row)) if mask_row[i]]


def ref_cls(hidden, mask):
  out = np.zeros((hidden.shape[0], hidden.shape[2]))
  for b in range(hidden.shape[0]):
    toks = _real_tokens(hidden[b], mask[b])
    if toks:
      out[b] = toks[0]
  return out


def ref_last_token(hidden, mask):
  out = np.zeros((hidden.shape[0], hidden.shape[2]))
  for b in range(hidden.shape[0]):
    toks = _real_tokens(hidden[b], mask[b])
    if toks:
      out[b] = toks[-1]
  return out


def ref_mean(hidden, mask):
  out = np.zeros((hidden.shape[0], hidden.shape[2]))
  for b in range(hidden.shape[0]):
    toks = _real_tokens(hidden[b], mask[b])
    total = np.zeros(hidden.shape[2])
    for t in toks:
      total += t
    out[b] = total / max(len(toks), 1e-9)
  return out


def ref_max(hidden, mask):
  out = np.zeros((hidden.shape[0], hidden.shape[2]))
  for b in range(hidden.shape[0]):
    toks = _real_tokens(hidden[b], mask[b])
    for d in range(hidden.shape[2]):
      out[b, d] = max(t[d] for t in toks) if toks else 0.0
  return out


def ref_weighted_mean(hidden, mask):
  out = np.zeros((hidden.shape[0], hidden.shape[2]))
  for b in range(hidden.shape[0]):
    toks = _real_tokens(hidden[b], mask[b])
    weights = [i + 1 for i in range(len(toks))]
    for w, t in zip(weights, toks):
      out[b] += w / sum(weights) * t
  return out


REFERENCES = {
    "cls": ref_cls,
    "mean": ref_mean,
    "max": ref_max,
    "weighted_mean": ref_weighted_mean,
    "last_token": ref_last_token,
}


def _gelu(x):
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def ref_latent_attention(module, hidden, mask):
  """NV-Embed pooling re-implemented token by token, head by head, from the module's params."""
  p = lambda v: np.asarray(v[...], np.float64)
  latents = p(module.latents)
  wq, wk, wv, wo = (p(m.kernel) for m in (module.query, module.key, module.value, module.out))
  w1, b1, w2, b2 = p(module.mlp_in.kernel), p(module.mlp_in.bias), p(module.mlp_out.kernel), p(
      module.mlp_out.bias)
  heads = module.num_heads
  hd = hidden.shape[2] // heads
  keys, values = latents @ wk, latents @ wv
  rows = []
  for b in range(hidden.shape[0]):
    outs = []
    for i in range(hidden.shape[1]):
      if not mask[b, i]:
        continue
      x = hidden[b, i].astype(np.float64)
      q = x @ wq
      attended = np.zeros_like(q)
      for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        logits = np.array([q[sl] @ keys[r, sl] for r in range(len(latents))]) / math.sqrt(hd)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()  # softmax over the latents, per head
        attended[sl] = sum(probs[r] * values[r, sl] for r in range(len(latents)))
      x = x + attended @ wo
      x = x + _gelu(x @ w1 + b1) @ w2 + b2
      outs.append(x)
    rows.append(np.mean(outs, axis=0) if outs else np.zeros(hidden.shape[2]))
  return np.stack(rows)


def _make(kind, dtype=None):
  kw = dict(MODULE_KW.get(kind, {}))
  if kind == "multi_layer":
    kw["num_layers"] = NUM_LAYERS
  if kind == "latent_attention" and dtype is not None:
    kw["dtype"] = dtype
  return Pooler(kind, D, rngs=nnx.Rngs(0), **kw)


def _call(pooler, hidden, mask):
  """Calls a Pooler; `hidden` is [N, B, L, D] for multi_layer, [B, L, D] otherwise."""
  if pooler.kind == "multi_layer":
    return pooler(hidden[-1], mask, all_hidden=hidden)
  return pooler(hidden, mask)


def _layers(kind):
  return NUM_LAYERS if kind == "multi_layer" else None


# ----------------------------------------------------------------------------------------------
# Parameter-free functions.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POOLING_FUNCTIONS))
@pytest.mark.parametrize("side", ["right", "left"])
def test_function_matches_numpy_reference(name, side):
  hidden, mask = _batch()
  hidden, mask = _repad(hidden, mask, extra=2, side=side)
  got = POOLING_FUNCTIONS[name](jnp.asarray(hidden), jnp.asarray(mask))
  assert got.shape == (B, D) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, REFERENCES[name](hidden, mask), rtol=1e-6, atol=1e-6)


def test_bool_and_int_masks_agree():
  hidden, mask = _batch()
  for fn in POOLING_FUNCTIONS.values():
    np.testing.assert_array_equal(fn(hidden, mask), fn(hidden, mask.astype(bool)))


def test_last_token_left_equals_right_padding():
  hidden, mask = _batch()
  right = pooling.last_token_pool(*map(jnp.asarray, _repad(hidden, mask, 3, "right")))
  left = pooling.last_token_pool(*map(jnp.asarray, _repad(hidden, mask, 3, "left")))
  np.testing.assert_array_equal(right, left)
  np.testing.assert_array_equal(right[1], hidden[1, LENGTHS[1] - 1])


@pytest.mark.parametrize("name", sorted(POOLING_FUNCTIONS))
def test_all_pad_row_gives_zeros(name):
  hidden, mask = _batch(lengths=(3, 0))
  hidden, mask = _repad(hidden, mask, extra=1, side="right")  # garbage everywhere in row 1
  got = np.asarray(POOLING_FUNCTIONS[name](hidden, mask))
  assert np.isfinite(got).all()
  np.testing.assert_array_equal(got[1], 0.0)


# ----------------------------------------------------------------------------------------------
# Padding invariance, for every kind behind the uniform entry point.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POOLER_KINDS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_never_changes_result(kind, side):
  pooler = _make(kind)
  hidden, mask = _batch(layers=_layers(kind))
  base = _call(pooler, jnp.asarray(hidden), jnp.asarray(mask))
  for extra in (0, 4):
    padded, padded_mask = _repad(hidden, mask, extra, side)
    got = _call(pooler, jnp.asarray(padded), jnp.asarray(padded_mask))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, base, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Trainable poolers.
# ----------------------------------------------------------------------------------------------


def test_latent_attention_matches_numpy_reimplementation():
  module = LatentAttentionPooling(D, rngs=nnx.Rngs(3), **MODULE_KW["latent_attention"])
  hidden, mask = _batch(seed=4)
  hidden, mask = _repad(hidden, mask, extra=2, side="left")
  got = module(jnp.asarray(hidden), jnp.asarray(mask))
  assert got.shape == (B, D)
  np.testing.assert_allclose(got, ref_latent_attention(module, hidden, mask), rtol=1e-5,
                             atol=1e-5)


def test_latent_attention_defaults():
  module = LatentAttentionPooling(16, rngs=nnx.Rngs(0))
  assert module.latents.shape == (512, 16)
  assert module.mlp_in.kernel.shape == (16, 64)
  assert module.num_heads == 8


@pytest.mark.parametrize("base", sorted(POOLING_FUNCTIONS))
def test_multi_layer_zero_query_is_mean_over_layers(base):
  module = MultiLayerPooling(NUM_LAYERS, D, base=base, rngs=nnx.Rngs(0))
  hidden, mask = _batch(layers=NUM_LAYERS)
  want = np.mean([REFERENCES[base](hidden[n], mask) for n in range(NUM_LAYERS)], axis=0)
  np.testing.assert_allclose(module(jnp.asarray(hidden), jnp.asarray(mask)), want, rtol=1e-6,
                             atol=1e-6)


def test_multi_layer_gradient_reaches_query():
  module = MultiLayerPooling(NUM_LAYERS, D, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(module, nnx.Param)
  hidden, mask = _batch(layers=NUM_LAYERS)
  target = np.random.default_rng(5).normal(size=(B, D)).astype(np.float32)

  def loss(params):
    return jnp.sum(nnx.merge(graphdef, params)(hidden, mask) * target)

  grads = jax.grad(loss)(params)
  assert np.abs(np.asarray(grads["query"][...])).max() > 1e-4


def test_multi_layer_nonzero_query_prefers_aligned_layer():
  module = MultiLayerPooling(2, D, rngs=nnx.Rngs(0))
  hidden, mask = _batch(layers=2)
  pooled = np.stack([ref_mean(hidden[n], mask) for n in range(2)])
  module.query[...] = jnp.asarray(100.0 * (pooled[1, 0] - pooled[0, 0]), jnp.float32)
  got = module(jnp.asarray(hidden), jnp.asarray(mask))
  np.testing.assert_allclose(got[0], pooled[1, 0], rtol=1e-4, atol=1e-4)


def _spec_by_path(module):
  specs = nnx.get_partition_spec(nnx.state(module))
  return {path: leaf for path, leaf in nnx.to_flat_state(specs)}


def test_params_carry_logical_sharding_names():
  P = jax.sharding.PartitionSpec
  la = _spec_by_path(LatentAttentionPooling(D, rngs=nnx.Rngs(0), **MODULE_KW["latent_attention"]))
  # get_partition_spec keeps the Variable wrappers and puts a PartitionSpec inside each.
  get = lambda specs, *path: specs[path].get_value()
  assert get(la, "latents") == P("latents", "embed")
  assert get(la, "query", "kernel") == P("embed", None)
  assert get(la, "out", "kernel") == P(None, "embed")
  assert get(la, "mlp_in", "kernel") == P("embed", "mlp")
  assert get(la, "mlp_in", "bias") == P("mlp")
  assert get(la, "mlp_out", "kernel") == P("mlp", "embed")
  assert get(la, "mlp_out", "bias") == P("embed")
  ml = _spec_by_path(MultiLayerPooling(NUM_LAYERS, D, rngs=nnx.Rngs(0)))
  assert get(ml, "query") == P("embed")
  allowed = {"embed", "mlp", "latents", "layers", None}
  for specs in (la, ml):
    for path in specs:
      assert set(get(specs, *path)) <= allowed, path


# ----------------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------------


def test_unknown_kind_lists_valid_kinds():
  with pytest.raises(ValueError, match="'attention'.*latent_attention.*multi_layer"):
    Pooler("attention", D, rngs=nnx.Rngs(0))


def test_multi_layer_errors():
  with pytest.raises(ValueError, match="needs num_layers"):
    Pooler("multi_layer", D, rngs=nnx.Rngs(0))
  pooler = _make("multi_layer")
  hidden, mask = _batch(layers=NUM_LAYERS)
  with pytest.raises(ValueError, match="needs all_hidden"):
    pooler(hidden[-1], mask)
  with pytest.raises(ValueError, match=r"num_layers=3.*\(2, 3, 5, 8\)"):
    pooler(hidden[-1], mask, all_hidden=hidden[:2])
  with pytest.raises(ValueError, match="unknown base pooler 'sum'"):
    MultiLayerPooling(NUM_LAYERS, D, base="sum", rngs=nnx.Rngs(0))


def test_option_errors():
  with pytest.raises(ValueError, match=r"kind 'mean' takes no options, got \['num_heads'\]"):
    Pooler("mean", D, num_heads=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_layers=2 is only used by kind 'multi_layer'"):
    Pooler("cls", D, num_layers=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_heads=3 must divide dim=8"):
    LatentAttentionPooling(D, num_heads=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_latents must be a positive integer, got 0"):
    LatentAttentionPooling(D, num_latents=0, rngs=nnx.Rngs(0))


def test_shape_and_dtype_errors():
  hidden, mask = _batch()
  with pytest.raises(ValueError, match=r"\[B, L, D\], got shape \(5, 8\)"):
    pooling.mean_pool(hidden[0], mask)
  bad_mask = r"mask must have shape \[B, L\] = \(3, 5\), got shape \(3, 4\)"
  with pytest.raises(ValueError, match=bad_mask):
    pooling.max_pool(hidden, mask[:, :4])
  with pytest.raises(ValueError, match="float array, got dtype int32"):
    pooling.cls_pool(hidden.astype(np.int32), mask)
  with pytest.raises(ValueError, match=r"hidden width must be dim=8, got shape \(3, 5, 4\)"):
    _make("latent_attention")(hidden[..., :4], mask)


# ----------------------------------------------------------------------------------------------
# Functional form under jit, and bfloat16.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POOLER_KINDS)
def test_jit_via_split_merge(kind):
  pooler = _make(kind)
  graphdef, state = nnx.split(pooler)
  hidden, mask = map(jnp.asarray, _batch(layers=_layers(kind)))

  @jax.jit
  def apply(state, hidden, mask):
    return _call(nnx.merge(graphdef, state), hidden, mask)

  np.testing.assert_allclose(apply(state, hidden, mask), _call(pooler, hidden, mask), rtol=1e-6,
                             atol=1e-6)


@pytest.mark.parametrize("kind", POOLER_KINDS)
def test_bfloat16_hidden(kind):
  hidden, mask = _batch(layers=_layers(kind))
  want = _call(_make(kind), jnp.asarray(hidden), jnp.asarray(mask))
  pooler = _make(kind, dtype=jnp.bfloat16)
  got = _call(pooler, jnp.asarray(hidden, jnp.bfloat16), jnp.asarray(mask))
  assert got.dtype == jnp.bfloat16 and got.shape == (B, D)
  tol = 1e-1 if kind == "latent_attention" else 2e-2
  np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=tol, atol=tol)
