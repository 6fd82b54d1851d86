"""Tests for jaxemb.nn.ssm: kernel vs an explicit real-state recurrence, conv vs streaming,
causality, masking, sharding, numerical gradients, inits, and the encoder in a SentenceEmbedder.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.ssm import S4D, SSMConfig, SSMEncoder, init_A, s4d_kernel

H, N = 4, 8  # layer width and state size shared by the layer tests (compiles are per shape)


def _random_ssm(seed, h=3, n=5, dt_max=1.0):
  """Kernel parameters with dt spread over [1e-3, dt_max] and a mix of slow and fast modes."""
  rng = np.random.default_rng(seed)
  log_dt = np.log(np.geomspace(1e-3, dt_max, h))
  log_A_real = np.log(rng.uniform(0.05, 1.0, (h, n)))
  A_imag = rng.uniform(0.0, 30.0, (h, n))
  C = rng.normal(size=(h, n)) + 1j * rng.normal(size=(h, n))
  return log_dt, log_A_real, A_imag, C


def _reference_kernel(log_dt, log_A_real, A_imag, C, length, discretization):
  """Impulse response of the *real* 2N-state system, discretised with scipy's expm / a solve.

  Each complex mode a + ib with B = 1 is the real 2x2 block [[a, -b], [b, a]] driven through its
  first coordinate; y = 2 Re(C x) = 2 (C_re x_re - C_im x_im). Independent of the library's
  closed forms: x_k = Abar x_{k-1} + Bbar u_k, y_k = Cr x_k, run as a plain loop.
  """
  h, n = A_imag.shape
  out = np.zeros((h, length))
  for c in range(h):
    a, b = -np.exp(log_A_real[c]), A_imag[c]
    A = np.zeros((2 * n, 2 * n))
    A[0::2, 0::2] = np.diag(a)
    A[0::2, 1::2] = np.diag(-b)
    A[1::2, 0::2] = np.diag(b)
    A[1::2, 1::2] = np.diag(a)
    B = np.zeros(2 * n)
    B[0::2] = 1.0
    Cr = np.zeros(2 * n)
    Cr[0::2], Cr[1::2] = 2 * C[c].real, -2 * C[c].imag
    dt = np.exp(log_dt[c])
    eye = np.eye(2 * n)
    if discretization == "zoh":
      Abar = scipy.linalg.expm(dt * A)
      Bbar = np.linalg.solve(A, (Abar - eye) @ B)
    else:
      Abar = np.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A)
      Bbar = np.linalg.solve(eye - dt / 2 * A, dt * B)
    x = np.zeros(2 * n)
    for k in range(length):
      x = Abar @ x + Bbar * (1.0 if k == 0 else 0.0)
      out[c, k] = Cr @ x
  return out


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_kernel_matches_recurrence(discretization):
  length = 300  # not a perfect square: exercises the ragged last block of the Vandermonde
  params = _random_ssm(0)
  ref = _reference_kernel(*params, length, discretization)
  with jax.enable_x64(True):  # float64: the closed form is exact, even for dt A ~ 30i
    k64 = np.asarray(s4d_kernel(*map(jnp.asarray, params), length, discretization))
  assert k64.dtype == np.float64
  np.testing.assert_allclose(k64, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
  # float32, dt in the init range: compare against the reference on the float32-rounded
  # parameters. What remains is the rounding of dt A, a phase error ~ l |dt A| 6e-8 at lag l
  # that a float32 recurrence has too (the naive exp(l dt A) Vandermonde is no closer).
  params = _random_ssm(0, dt_max=0.1)
  f32 = [np.asarray(p, np.complex64 if np.iscomplexobj(p) else np.float32) for p in params]
  ref32 = _reference_kernel(*[p.astype(np.complex128 if np.iscomplexobj(p) else np.float64)
                              for p in f32], length, discretization)
  k32 = s4d_kernel(*map(jnp.asarray, f32), length, discretization)
  assert k32.dtype == jnp.float32 and k32.shape == (3, length)
  np.testing.assert_allclose(np.asarray(k32), ref32, rtol=0, atol=3e-5 * np.abs(ref32).max())


def test_kernel_rejects_bad_arguments():
  log_dt, log_A_real, A_imag, C = map(jnp.asarray, _random_ssm(0))
  with pytest.raises(ValueError, match="discretization='foh'"):
    s4d_kernel(log_dt, log_A_real, A_imag, C, 8, "foh")
  with pytest.raises(ValueError, match="length L must be a positive integer, got 0"):
    s4d_kernel(log_dt, log_A_real, A_imag, C, 0)
  with pytest.raises(ValueError, match=r"C must have shape \[H, N\] = \[3, 5\], got \(3, 4\)"):
    s4d_kernel(log_dt, log_A_real, A_imag, C[:, :4], 8)


def _scan_steps(layer, x):
  """Runs the streaming mode over x [B, L, H] with lax.scan; returns [B, L, H]."""
  graphdef, state = nnx.split(layer)

  @jax.jit
  def run(state, x):
    model = nnx.merge(graphdef, state)
    _, ys = jax.lax.scan(model.step, model.init_state(x.shape[0]), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1)

  return run(state, x)


@pytest.mark.parametrize("init,discretization,glu",
                         [("lin", "zoh", True), ("inv", "bilinear", False), ("legs", "zoh", True)])
def test_convolution_matches_streaming(init, discretization, glu):
  layer = S4D(H, N, init=init, discretization=discretization, glu=glu, rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(2), (2, 200, H))
  y_conv = jax.jit(lambda x: layer(x))(x)
  y_step = _scan_steps(layer, x)
  assert y_conv.shape == y_step.shape == (2, 200, H)
  np.testing.assert_allclose(np.asarray(y_step), np.asarray(y_conv), rtol=0, atol=1e-5)


def test_causal_layer_is_causal():
  layer = S4D(H, N, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 64, H))
  t = 40
  apply = jax.jit(lambda x: layer(x))
  y, y2 = apply(x), apply(x.at[:, t].add(5.0))
  np.testing.assert_allclose(np.asarray(y2[:, :t]), np.asarray(y[:, :t]), rtol=0, atol=1e-5)
  assert np.abs(np.asarray(y2[:, t:] - y[:, t:])).max() > 1e-2


def _repad(x, length, total, left, garbage=np.nan):
  """Row `x[:length]` placed inside a sequence of `total` positions with garbage padding."""
  pad = np.full((total - length,) + x.shape[1:], garbage, x.dtype)
  real = x[:length]
  row = np.concatenate([pad, real] if left else [real, pad])
  mask = np.arange(total) >= total - length if left else np.arange(total) < length
  return row, mask


@pytest.mark.parametrize("bidirectional", [True, False])
def test_masked_padding_changes_nothing(bidirectional):
  layer = S4D(H, N, bidirectional=bidirectional, rngs=nnx.Rngs(3))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(10, H)).astype(np.float32)
  lengths = (10, 7, 3)
  apply = jax.jit(lambda x, m: layer(x, m))
  refs = [np.asarray(apply(jnp.asarray(x[None, :n]), jnp.ones((1, n))))[0] for n in lengths]
  for left in (False, True):
    for garbage in (np.nan, np.inf, 1e30):
      rows = [_repad(x, n, 16, left, garbage) for n in lengths]
      y = np.asarray(apply(jnp.asarray(np.stack([r for r, _ in rows])),
                           jnp.asarray(np.stack([m for _, m in rows]))))
      for i, (ref, (_, mask)) in enumerate(zip(refs, rows)):
        np.testing.assert_allclose(y[i][mask], ref, rtol=0, atol=1e-5)
        assert np.isfinite(y[i]).all()


def test_bidirectional_sees_the_future():
  layer = S4D(H, N, bidirectional=True, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 32, H))
  apply = jax.jit(lambda x: layer(x))
  y, y2 = apply(x), apply(x.at[:, 20].add(5.0))
  assert np.abs(np.asarray(y2[:, :20] - y[:, :20])).max() > 1e-2
  with pytest.raises(ValueError, match="bidirectional=True"):
    layer.init_state(1)


def _tiny_cfg(**kw):
  # One shape family for every encoder test: eager parameter init compiles per shape.
  base = dict(vocab_size=50, hidden_size=16, num_layers=2, state_size=8, dropout_rate=0.0,
              intermediate_size=32, type_vocab_size=2)
  return SSMConfig(**{**base, **kw})


def test_sharded_forward_equals_single_device():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  model = SentenceEmbedder(SSMEncoder(_tiny_cfg(), rngs=nnx.Rngs(0)),
                           Pooler("mean", 16, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 50, (16, 24)).astype(np.int32)
  mask = (np.arange(24)[None] < rng.integers(1, 25, (16, 1))).astype(np.int32)
  embed = jax.jit(lambda state, ids, mask: nnx.merge(graphdef, state)(ids, mask))
  single = np.asarray(embed(state, jnp.asarray(ids), jnp.asarray(mask)))
  put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data", None)))
  replicated = jax.device_put(state, NamedSharding(mesh, P()))
  sharded = embed(replicated, put(ids), put(mask))
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(sharded), single, rtol=0, atol=1e-5)


def test_gradients_finite_and_match_finite_differences():
  with jax.enable_x64(True):
    f64 = jnp.float64
    layer = S4D(3, 4, bidirectional=True, dtype=f64, param_dtype=f64, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(layer)
    assert all(p.dtype == f64 for p in jax.tree.leaves(params))
    x = jax.random.normal(jax.random.key(1), (2, 12, 3), f64)
    mask = jnp.arange(12)[None] < jnp.array([[12], [9]])
    w = jax.random.normal(jax.random.key(2), (2, 12, 3), f64)

    def loss(params, x):
      y = nnx.merge(graphdef, params)(x, mask)
      return jnp.sum(jnp.where(mask[..., None], y, 0.0) * w)

    check_grads(jax.jit(loss), (params, x), order=1, modes=("rev",), eps=1e-6,
                              atol=1e-7, rtol=1e-7)
  # float32, bigger layer, garbage at padded positions: gradients stay finite.
  layer = S4D(H, N, bidirectional=True, init="legs", rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  x = jax.random.normal(jax.random.key(1), (2, 64, H)).at[1, 50:].set(jnp.nan)
  mask = jnp.arange(64)[None] < jnp.array([[64], [50]])
  grads = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.where(
      mask[..., None], nnx.merge(graphdef, p)(x, mask), 0.0) ** 2), argnums=(0, 1)))(params, x)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_init_variants():
  n = 16
  log_re, imag = init_A("lin", 2, n)
  np.testing.assert_allclose(-np.exp(log_re), -0.5, rtol=1e-6)
  np.testing.assert_allclose(imag, np.pi * np.arange(n // 2)[None].repeat(2, 0), rtol=1e-6)
  _, imag = init_A("inv", 2, n)
  k = np.arange(n // 2)
  np.testing.assert_allclose(imag[0], n / np.pi * (n / (2 * k + 1) - 1), rtol=1e-6)
  # LegS: build HiPPO-LegS and its rank-1 correction here; the normal part's eigenvalues are
  # exactly the layer's A and their conjugates.
  log_re, imag = init_A("legs", 2, n)
  r = np.sqrt(2 * np.arange(n) + 1.0)
  hippo = -np.tril(np.outer(r, r), -1) - np.diag(np.arange(n) + 1.0)
  normal = hippo + 0.5 * np.outer(r, r)
  eig = np.linalg.eigvals(normal)
  np.testing.assert_allclose(eig.real, -0.5, atol=1e-9)
  expected = np.sort(eig.imag[eig.imag > 0])
  A = -np.exp(log_re[0]) + 1j * imag[0]
  np.testing.assert_allclose(A.real, -0.5, rtol=1e-6)
  assert np.all(np.diff(imag[0]) > 0) and imag[0, 0] > 0
  np.testing.assert_allclose(imag[0], expected, rtol=1e-5)
  # The layer stores what init_A documents.
  for init in ("lin", "inv", "legs"):
    layer = S4D(H, N, init=init)
    np.testing.assert_array_equal(np.asarray(layer.A_imag[...]), init_A(init, H, N)[1])
    np.testing.assert_allclose(np.exp(np.asarray(layer.log_A_real[...])), 0.5, rtol=1e-6)
    dt = np.exp(np.asarray(layer.log_dt[...]))
    assert np.all((dt >= 1e-3 * (1 - 1e-6)) & (dt <= 1e-1 * (1 + 1e-6)))


def test_layer_validation_and_defaults():
  for kwargs, match in [(dict(state_size=7), "state_size must be an even integer"),
                        (dict(init="hippo"), "init='hippo'"),
                        (dict(dt_min=0.5, dt_max=0.1), "dt_min=0.5"),
                        (dict(activation="tanh"), "activation='tanh'")]:
    with pytest.raises(ValueError, match=match):
      S4D(4, **{"state_size": 8, **kwargs})
  layer = S4D(H, N)
  with pytest.raises(ValueError, match=r"x must have shape \[B, L, H=4\], got \(2, 5, 3\)"):
    layer(jnp.zeros((2, 5, 3)))
  with pytest.raises(ValueError, match=r"mask must have shape"):
    layer(jnp.zeros((2, 5, H)), jnp.ones((2, 4)))
  # Defaults are deterministic: two default layers are identical and have no RNG state.
  a, b = nnx.state(S4D(H, N)), nnx.state(S4D(H, N))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not jax.tree.leaves(nnx.state(layer, nnx.RngState))


def test_bfloat16_compute():
  abstract = nnx.eval_shape(lambda: S4D(H, N, param_dtype=jnp.bfloat16))
  assert abstract.A_imag.dtype == jnp.float32  # kernel parameters stay float32
  assert abstract.out.kernel.dtype == jnp.bfloat16
  x = jax.random.normal(jax.random.key(0), (2, 32, H))
  # Same parameters (same seed), bf16 compute: only bf16 rounding separates the two.
  layer16 = S4D(H, N, bidirectional=True, dtype=jnp.bfloat16)
  layer32 = S4D(H, N, bidirectional=True)
  y = jax.jit(lambda x: layer16(x))(x.astype(jnp.bfloat16))
  ref = jax.jit(lambda x: layer32(x))(x)
  assert y.dtype == jnp.bfloat16
  assert np.abs(np.asarray(y, np.float32) - np.asarray(ref)).max() < 0.05


@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_mean_pooling_is_padding_invariant(bidirectional):
  cfg = _tiny_cfg(bidirectional=bidirectional)
  encoder = SSMEncoder(cfg, rngs=nnx.Rngs(0))
  assert encoder.hidden_size == 16 and encoder.num_hidden_states == 3
  assert encoder.cfg.pad_token_id == 0
  model = SentenceEmbedder(encoder, Pooler("mean", 16, rngs=nnx.Rngs(0)))
  embed = jax.jit(lambda ids, mask: model(ids, mask))
  rng = np.random.default_rng(0)
  tokens = [rng.integers(1, 50, n) for n in (14, 5, 1)]  # the first row needs no padding

  def batch(length, left):
    # Pad positions hold random real token ids, not pad_token_id: only the mask may matter.
    ids = rng.integers(1, 50, (3, length)).astype(np.int32)
    mask = np.zeros((3, length), np.int32)
    for i, t in enumerate(tokens):
      sl = slice(length - len(t), length) if left else slice(0, len(t))
      ids[i, sl], mask[i, sl] = t, 1
    return jnp.asarray(ids), jnp.asarray(mask)

  right = np.asarray(embed(*batch(14, left=False)))
  left = np.asarray(embed(*batch(20, left=True)))
  assert right.shape == (3, 16) and right.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(right, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(left, right, rtol=0, atol=1e-5)
  assert np.abs(right[0] - right[1]).max() > 1e-3  # not trivially constant
  out = jax.eval_shape(lambda: encoder(*batch(14, False), output_hidden_states=True))
  assert len(out.hidden_states) == encoder.num_hidden_states
  assert out.last_hidden_state.shape == (3, 14, 16)


def test_encoder_dropout_and_config_validation():
  encoder = SSMEncoder(_tiny_cfg(dropout_rate=0.5), rngs=nnx.Rngs(0))
  ids, mask = jnp.ones((2, 8), jnp.int32), jnp.ones((2, 8), jnp.int32)
  train = nnx.jit(lambda m, ids, mask: m(ids, mask, deterministic=False).last_hidden_state)
  a, b = train(encoder, ids, mask), train(encoder, ids, mask)  # the RNG state advances
  assert not np.allclose(a, b)
  with pytest.raises(ValueError, match="same shape"):
    encoder(ids, mask[:, :4])
  for kw, match in [(dict(norm="sandwich"), "norm='sandwich'"),
                    (dict(state_size=5), "state_size must be an even integer >= 2, got 5"),
                    (dict(pad_token_id=50), r"pad_token_id=50 must be in \[0, 50\)"),
                    (dict(dtype="float64"), "dtype='float64'")]:
    with pytest.raises(ValueError, match=match):
      _tiny_cfg(**kw)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_encoder_scan_loop_and_num_layers_agree(norm):
  encoder = SSMEncoder(_tiny_cfg(num_layers=3, norm=norm), rngs=nnx.Rngs(1))
  rng = np.random.default_rng(1)
  ids = jnp.asarray(rng.integers(1, 50, (2, 12)), jnp.int32)
  mask = jnp.asarray(np.arange(12)[None] < np.array([[12], [7]]), jnp.int32)
  run = jax.jit(lambda scan, k: encoder(ids, mask, output_hidden_states=True, scan=scan,
                                        num_layers=k), static_argnums=(0, 1))
  looped = run(False, None)
  scanned = run(True, None)
  for got, want in zip(scanned.hidden_states, looped.hidden_states):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-6)
  for k in (1, 2):
    np.testing.assert_allclose(run(True, k).last_hidden_state, looped.hidden_states[k],
                               atol=1e-5, rtol=1e-6)
  with pytest.raises(ValueError, match=r"num_layers=4 must be an integer in \[1, 3\]"):
    encoder(ids, mask, num_layers=4)
