"""Diagonal state-space layers (S4D, Gu et al. 2022, "On the Parameterization and Initialization
of Diagonal State Space Models") and an SSM sentence encoder, in Flax NNX.

An S4D layer maps `[B, L, H]` to `[B, L, H]`. Each of the H channels is an independent linear
time-invariant system with N complex modes (2N real states, conjugate pairs folded together):

    x_t = Abar x_{t-1} + Bbar u_t,    y_t = 2 Re(C x_t) + D u_t,

with A = -exp(log_A_real) + i A_imag (stable by construction), B = 1, step size
dt = exp(log_dt) and Abar, Bbar from a zero-order-hold ("zoh") or bilinear discretisation.
Unrolled, the layer is a causal convolution with kernel K[l] = 2 Re(C Abar^l Bbar), which
`s4d_kernel` computes in O(H N L) work without ever materialising an [H, N, L] tensor (a
factored Vandermonde product, see `_vandermonde`) and the layer applies with an FFT of length
2L, so training costs O(L log L) per channel rather than attention's O(L^2). It also runs as a
recurrence (`init_state` / `step`), one token at a time, with the same output.

Parameter logical axes (see `jaxemb/nn/__init__.py`): "embed" for the width H, None for the
state (mode) axis and the direction axis, "mlp" for the GLU's doubled width, "vocab" for
embedding rows. The kernel parameters (log_dt, log_A_real, A_imag, C, D) are at least float32:
they are tiny ([H, N]) and a bfloat16 A_imag (values up to ~N pi) or dt would visibly detune the
modes. C is stored as two real arrays (C_re, C_im) because complex parameters are awkward for
optimizers and checkpoints. Gu et al. train A and dt with a smaller learning rate and no weight
decay; the parameter names make such an optax mask easy (`log_dt`, `log_A_real`, `A_imag`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxemb.nn import layers
from jaxemb.nn.layers import ACTIVATIONS, DTYPES, check_choice as _check_choice
from jaxemb.nn.transformer import EncoderOutput

Array = jax.Array

DISCRETIZATIONS: tuple[str, ...] = ("zoh", "bilinear")
INITS: tuple[str, ...] = ("lin", "inv", "legs")


# ----------------------------------------------------------------------------------------------
# Kernel: discretisation and Vandermonde product.
# ----------------------------------------------------------------------------------------------


def _expm1(z: Array) -> Array:
  """exp(z) - 1 for complex z without the cancellation of `exp(z) - 1` near 0.

  dt A is as small as ~5e-4 at init, where the naive form would lose ~4 of float32's 7 digits
  of Bbar in the slowest (longest-memory) channels.
  """
  a, b = jnp.real(z), jnp.imag(z)
  re = jnp.expm1(a) * jnp.cos(b) - 2.0 * jnp.sin(0.5 * b) ** 2
  im = jnp.exp(a) * jnp.sin(b)
  return jax.lax.complex(re, im)


def _discretize(log_dt: Array, log_A_real: Array, A_imag: Array,
                discretization: str) -> tuple[Array, Array]:
  """Returns (log Abar, Bbar), both complex `[H, N]`, for B = 1."""
  dt = jnp.exp(log_dt)[:, None]
  A = jax.lax.complex(-jnp.exp(log_A_real), A_imag)
  dtA = dt * A
  if discretization == "zoh":
    # Abar = exp(dt A), Bbar = A^-1 (exp(dt A) - 1) B.
    return dtA, _expm1(dtA) / A
  # Bilinear (Tustin): Abar = (1 + dt A / 2) / (1 - dt A / 2), Bbar = dt B / (1 - dt A / 2).
  # |Abar| < 1 since Re A < 0, so log Abar is finite; powers become exp(l log Abar).
  denom = 1.0 - 0.5 * dtA
  return jnp.log((1.0 + 0.5 * dtA) / denom), dt / denom


def _vandermonde(P: Array, log_abar: Array, length: int) -> Array:
  """`2 Re sum_n P[..., h, n] exp(l log_abar[h, n])` for l < length, real `[..., H, length]`.

  The powers are factored as exp((a T + t) z) = exp(a T z) exp(t z) with T ~ sqrt(length), so
  the sum over modes is a complex matmul of `[H, N, length / T]` by `[H, N, T]`: no
  `[H, N, length]` tensor is ever materialised, in the forward or the backward pass.
  """
  block = max(1, math.isqrt(length - 1) + 1) if length > 1 else 1
  blocks = -(-length // block)
  real = jnp.real(log_abar).dtype
  inner = jnp.exp(log_abar[..., None] * jnp.arange(block, dtype=real))  # [H, N, T]
  outer = jnp.exp(log_abar[..., None] * (block * jnp.arange(blocks, dtype=real)))  # [H, N, A]
  kernel = jnp.einsum("...hna,hnt->...hat", P[..., None] * outer, inner,
                      precision=jax.lax.Precision.HIGHEST)  # TPUs would otherwise use bf16 passes
  kernel = kernel.reshape(*kernel.shape[:-2], blocks * block)[..., :length]
  return 2.0 * jnp.real(kernel)


def _check_kernel_args(log_dt, log_A_real, A_imag, C, length, discretization):
  _check_choice("discretization", discretization, DISCRETIZATIONS)
  if not isinstance(length, (int, np.integer)) or length < 1:
    raise ValueError(f"kernel length L must be a positive integer, got {length!r}")
  if log_dt.ndim != 1:
    raise ValueError(f"log_dt must have shape [H], got {log_dt.shape}")
  shape = (log_dt.shape[0], log_A_real.shape[-1] if log_A_real.ndim else 0)
  for name, value in (("log_A_real", log_A_real), ("A_imag", A_imag), ("C", C)):
    if value.shape != shape:
      raise ValueError(f"{name} must have shape [H, N] = {list(shape)}, got {value.shape}")


def s4d_kernel(log_dt: Array, log_A_real: Array, A_imag: Array, C: Array, L: int,
               discretization: str = "zoh") -> Array:
  """The S4D convolution kernel `K[h, l] = 2 Re sum_n C[h, n] Abar[h, n]^l Bbar[h, n]`.

  With dt = exp(log_dt) and A = -exp(log_A_real) + i A_imag (B = 1):
    "zoh":      Abar = exp(dt A),                       Bbar = (exp(dt A) - 1) / A
    "bilinear": Abar = (1 + dt A / 2) / (1 - dt A / 2),  Bbar = dt / (1 - dt A / 2)

  Args:
    log_dt: `[H]` log step sizes.
    log_A_real: `[H, N]`; the real part of A is -exp(log_A_real) < 0.
    A_imag: `[H, N]` imaginary part of A.
    C: `[H, N]` complex output weights (N complex modes stand for 2N real states).
    L: kernel length.
    discretization: "zoh" or "bilinear".

  Returns:
    Real kernel `[H, L]` in the real dtype of the inputs (float32 unless x64 is on).
  """
  _check_kernel_args(log_dt, log_A_real, A_imag, C, L, discretization)
  log_abar, bbar = _discretize(log_dt, log_A_real, A_imag, discretization)
  return _vandermonde(C * bbar, log_abar, L)


def _causal_or_bidirectional_conv(u: Array, k_fwd: Array, k_bwd: Array | None) -> Array:
  """`y[t] = sum_{s<=t} k_fwd[t-s] u[s] (+ sum_{s>=t} k_bwd[s-t] u[s])` via an FFT of length 2L.

  u: `[B, L, H]` float32; kernels `[H, L]`. Zero-padding to 2L turns the FFT's circular
  convolution into a linear one. The backward kernel (the forward kernel run over the reversed
  sequence, reversed back) sits at negative lags, i.e. at indices 2L - d of the same circle, so
  both directions cost one transform.
  """
  length = u.shape[1]
  kernel = k_fwd
  if k_bwd is not None:
    kernel = jnp.concatenate([k_fwd.at[:, 0].add(k_bwd[:, 0]), jnp.zeros_like(k_bwd[:, :1]),
                              k_bwd[:, :0:-1]], axis=1)
  k_f = jnp.fft.rfft(kernel, n=2 * length, axis=-1).T  # [L + 1, H]
  u_f = jnp.fft.rfft(u, n=2 * length, axis=1)  # [B, L + 1, H]
  return jnp.fft.irfft(u_f * k_f, n=2 * length, axis=1)[:, :length]


# ----------------------------------------------------------------------------------------------
# Initialisation of A.
# ----------------------------------------------------------------------------------------------


def legs_imag(state_size: int) -> np.ndarray:
  """Imaginary parts (positive, ascending) of the diagonal part of HiPPO-LegS ("S4D-LegS").

  HiPPO-LegS is normal plus low rank: A + P P^T = -I/2 + S with S skew-symmetric, where
  A[n, k] = -sqrt((2n+1)(2k+1)) for n > k, -(n+1) on the diagonal, 0 above, and
  P[n] = sqrt(n + 1/2). Its eigenvalues are -1/2 +- i w; S4D-LegS keeps one of each conjugate
  pair, giving `state_size // 2` values w > 0.
  """
  n = np.arange(state_size, dtype=np.float64)
  r = np.sqrt(2 * n + 1)
  skew = 0.5 * np.where(n[:, None] > n[None, :], -1.0, 1.0) * r[:, None] * r[None, :]
  np.fill_diagonal(skew, 0.0)
  w = np.linalg.eigvalsh(-1j * skew)  # -iS is Hermitian; its eigenvalues come in +- pairs
  return np.sort(w[w > 0])[: state_size // 2]


def init_A(init: str, features: int, state_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(log_A_real, A_imag), float32 `[features, state_size // 2]`, for an S4D initialisation.

  All inits have Re A = -1/2. With N = state_size (real states) and n = 0 .. N/2 - 1:
    "lin":  Im A = pi n                           (S4D-Lin)
    "inv":  Im A = (N / pi) (N / (2n + 1) - 1)     (S4D-Inv)
    "legs": Im A = the positive eigenvalue imaginary parts of HiPPO-LegS's normal part.
  """
  _check_choice("init", init, INITS)
  modes = state_size // 2
  n = np.arange(modes, dtype=np.float64)
  if init == "lin":
    imag = np.pi * n
  elif init == "inv":
    imag = state_size / np.pi * (state_size / (2 * n + 1) - 1)
  else:
    imag = legs_imag(state_size)
  imag = np.broadcast_to(imag, (features, modes)).astype(np.float32)
  return np.full((features, modes), np.log(0.5), np.float32), imag


def _constant(value: np.ndarray):
  """An initializer returning a fixed array (so it can be wrapped by `nnx.with_partitioning`)."""
  return lambda key, shape, dtype=jnp.float32: jnp.asarray(value, dtype).reshape(shape)


# ----------------------------------------------------------------------------------------------
# The S4D layer.
# ----------------------------------------------------------------------------------------------


class S4D(nnx.Module):
  """S4D layer over `[B, L, H]`: SSM convolution + D skip, activation, dropout, output projection.

  Causal by default (output at t depends on inputs <= t), which also enables the streaming
  `init_state` / `step` mode. `bidirectional=True` adds a second kernel (own C, shared A and dt,
  as in S4) run over the reversed sequence. When a mask is given, padded positions are zeroed
  before the convolution, so neither their values nor their number can reach real positions
  (left or right padding, causal or bidirectional).
  """

  def __init__(self, features: int, state_size: int = 64, *, init: str = "lin",
               bidirectional: bool = False, discretization: str = "zoh",
               dt_min: float = 1e-3, dt_max: float = 1e-1, activation: str = "gelu",
               glu: bool = True, dropout_rate: float = 0.0, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    """Builds the layer.

    Args:
      features: width H of the input and output.
      state_size: real state size N per channel, as S4D's `d_state`; must be even; the layer
        keeps N / 2 complex modes.
      init: initialisation of A, one of `INITS` ("lin", "inv", "legs"); see `init_A`.
      bidirectional: add an anti-causal kernel (non-causal layer; no streaming mode).
      discretization: "zoh" or "bilinear".
      dt_min, dt_max: log dt is drawn uniformly from [log dt_min, log dt_max] per channel.
      activation: nonlinearity after the SSM, a key of `ACTIVATIONS`.
      glu: output projection H -> 2H followed by a GLU (as S4D); else a plain H -> H linear.
      dropout_rate: dropout after the activation (training only).
      dtype: compute dtype of the projection; the convolution always runs in float32.
      param_dtype: dtype of the projection parameters (kernel parameters are at least float32).
      rngs: random streams; defaults to `nnx.Rngs(0)`, so default layers are deterministic.
    """
    if not isinstance(features, (int, np.integer)) or features < 1:
      raise ValueError(f"features must be a positive integer, got {features!r}")
    if not isinstance(state_size, (int, np.integer)) or state_size < 2 or state_size % 2:
      raise ValueError(f"state_size must be an even integer >= 2 (N real states = N/2 complex "
                       f"modes), got {state_size!r}")
    _check_choice("discretization", discretization, DISCRETIZATIONS)
    _check_choice("activation", activation, tuple(ACTIVATIONS))
    if not 0 < dt_min <= dt_max:
      raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    rngs = nnx.Rngs(0) if rngs is None else rngs
    self.features, self.state_size, self.modes = features, state_size, state_size // 2
    self.init, self.bidirectional, self.discretization = init, bidirectional, discretization
    self.activation, self.glu, self.dtype = activation, glu, dtype
    h, m, k = features, self.modes, 2 if bidirectional else 1
    # Kernel parameters are at least float32 (float64 stays float64, for gradient checks).
    f32 = jnp.promote_types(param_dtype, jnp.float32)
    log_A_real, A_imag = init_A(init, h, state_size)

    def param(initializer, shape, names):
      return nnx.Param(nnx.with_partitioning(initializer, names)(rngs.params(), shape, f32))

    def log_uniform(key, shape, dtype=f32):
      return jax.random.uniform(key, shape, dtype, math.log(dt_min), math.log(dt_max))

    self.log_dt = param(log_uniform, (h,), ("embed",))
    self.log_A_real = param(_constant(log_A_real), (h, m), ("embed", None))
    self.A_imag = param(_constant(A_imag), (h, m), ("embed", None))
    # C ~ complex standard normal (unit total variance, as torch.randn(cfloat)); one per direction.
    c_init = nnx.initializers.normal(math.sqrt(0.5))
    self.C_re = param(c_init, (k, h, m), (None, "embed", None))
    self.C_im = param(c_init, (k, h, m), (None, "embed", None))
    self.D = param(nnx.initializers.normal(1.0), (h,), ("embed",))
    names = ("embed", "mlp") if glu else ("mlp", "embed")
    self.out = layers.dense(h, 2 * h if glu else h, names, dtype=dtype, param_dtype=param_dtype,
                            kernel_init=nnx.initializers.lecun_normal(), rngs=rngs)
    # No RNG state at all without dropout, so default layers are pure functions of their params.
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs if dropout_rate else None)

  def kernel(self, length: int) -> Array:
    """Real kernels `[directions, H, length]` (forward first, then backward if bidirectional)."""
    log_abar, bbar = _discretize(self.log_dt[...], self.log_A_real[...], self.A_imag[...],
                                 self.discretization)
    C = jax.lax.complex(self.C_re[...], self.C_im[...])
    return _vandermonde(C * bbar, log_abar, length)

  def _output(self, y: Array, deterministic: bool) -> Array:
    """Activation, dropout and output projection (GLU or linear) of the SSM output."""
    y = ACTIVATIONS[self.activation](y.astype(self.dtype))
    y = self.out(self.dropout(y, deterministic=deterministic))
    if self.glu:
      a, b = jnp.split(y, 2, axis=-1)
      y = a * jax.nn.sigmoid(b)
    return y

  def __call__(self, x: Array, mask: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """Applies the layer (convolution mode).

    Args:
      x: `[B, L, H]` inputs.
      mask: optional `[B, L]`, nonzero for real tokens; padded positions are zeroed first.
      deterministic: disables dropout when True.

    Returns:
      `[B, L, H]` in the compute dtype. Outputs at padded positions are meaningless.
    """
    if x.ndim != 3 or x.shape[-1] != self.features:
      raise ValueError(f"x must have shape [B, L, H={self.features}], got {x.shape}")
    if mask is not None:
      if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must have shape [B, L] = {x.shape[:2]}, got {mask.shape}")
      # Select rather than multiply: garbage (inf/NaN) at padded positions must not leak in.
      x = jnp.where(jnp.asarray(mask).astype(bool)[..., None], x, jnp.zeros((), x.dtype))
    # FFT and skip in (at least) float32 whatever the compute dtype: bf16 FFTs lose the kernel's
    # long, small tail.
    u = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    k = self.kernel(x.shape[1]).astype(u.dtype)
    y = _causal_or_bidirectional_conv(u, k[0], k[1] if self.bidirectional else None)
    y = y + u * self.D[...]
    return self._output(y, deterministic)

  # Streaming (recurrent) mode ----------------------------------------------------------------

  def init_state(self, batch_size: int) -> Array:
    """Zero recurrent state, complex `[batch_size, H, state_size // 2]` (causal layers only)."""
    if self.bidirectional:
      raise ValueError("streaming needs a causal layer, got bidirectional=True")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dtype = jnp.result_type(self.log_dt[...].dtype, jnp.complex64)  # complex128 under float64
    return jnp.zeros((batch_size, self.features, self.modes), dtype)

  def step(self, state: Array, x_t: Array) -> tuple[Array, Array]:
    """One recurrent step: `(state, x_t [B, H]) -> (new state, y_t [B, H])`.

    Feeding x_0, x_1, ... from `init_state` reproduces the convolution output (no dropout).
    """
    if self.bidirectional:
      raise ValueError("streaming needs a causal layer, got bidirectional=True")
    if x_t.ndim != 2 or x_t.shape[-1] != self.features:
      raise ValueError(f"x_t must have shape [B, H={self.features}], got {x_t.shape}")
    if state.shape != (x_t.shape[0], self.features, self.modes):
      raise ValueError(f"state must have shape {(x_t.shape[0], self.features, self.modes)}, "
                       f"got {state.shape}")
    log_abar, bbar = _discretize(self.log_dt[...], self.log_A_real[...], self.A_imag[...],
                                 self.discretization)
    C = jax.lax.complex(self.C_re[0], self.C_im[0])
    u = x_t.astype(jnp.promote_types(x_t.dtype, jnp.float32))
    state = jnp.exp(log_abar) * state + bbar * u[..., None]
    y = 2.0 * jnp.real(jnp.sum(C * state, axis=-1)) + u * self.D[...]
    return state, self._output(y[:, None], deterministic=True)[:, 0]


# ----------------------------------------------------------------------------------------------
# SSM encoder with the TransformerEncoder calling convention.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SSMConfig:
  """Hyper-parameters of `SSMEncoder`."""

  vocab_size: int = 30522
  hidden_size: int = 256
  num_layers: int = 4
  state_size: int = 64  # real states per channel (S4D's d_state); N / 2 complex modes
  init: str = "lin"  # "lin", "inv" or "legs"
  bidirectional: bool = True
  discretization: str = "zoh"
  dt_min: float = 1e-3
  dt_max: float = 1e-1
  dropout_rate: float = 0.1
  norm: str = "pre"  # "pre" or "post"
  layer_norm_eps: float = 1e-5
  # Position-wise feed-forward after each S4D block: None for none (pure S4D stack).
  intermediate_size: int | None = None
  hidden_act: str = "gelu"
  glu: bool = True
  type_vocab_size: int = 0  # 0: token_type_ids are accepted and ignored
  # Length used by data pipelines (truncation/bucketing); the encoder accepts any length.
  max_length: int | None = None
  pad_token_id: int = 0
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"

  def __post_init__(self):
    _check_choice("init", self.init, INITS)
    _check_choice("norm", self.norm, ("pre", "post"))
    _check_choice("discretization", self.discretization, DISCRETIZATIONS)
    _check_choice("hidden_act", self.hidden_act, tuple(ACTIVATIONS))
    _check_choice("dtype", self.dtype, tuple(DTYPES))
    _check_choice("param_dtype", self.param_dtype, tuple(DTYPES))
    for name in ("vocab_size", "hidden_size", "num_layers"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
    if self.state_size < 2 or self.state_size % 2:
      raise ValueError(f"state_size must be an even integer >= 2, got {self.state_size}")
    if self.intermediate_size is not None and self.intermediate_size < 1:
      raise ValueError(f"intermediate_size must be None or positive, got "
                       f"{self.intermediate_size}")
    if self.max_length is not None and self.max_length < 1:
      raise ValueError(f"max_length must be None or positive, got {self.max_length}")
    if not 0 <= self.pad_token_id < self.vocab_size:
      raise ValueError(f"pad_token_id={self.pad_token_id} must be in [0, {self.vocab_size})")

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def params_dtype(self):
    return DTYPES[self.param_dtype]


def _layer_norm(cfg: SSMConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return layers.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, dtype=cfg.compute_dtype,
                           param_dtype=cfg.params_dtype, rngs=rngs)


def _dense(cfg: SSMConfig, din: int, dout: int, names: tuple, rngs: nnx.Rngs) -> nnx.Linear:
  return layers.dense(din, dout, names, dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype,
                      kernel_init=nnx.initializers.lecun_normal(), rngs=rngs)


class SSMBlock(nnx.Module):
  """Norm, S4D, dropout, residual; then an optional feed-forward sub-block the same way."""

  def __init__(self, cfg: SSMConfig, *, rngs: nnx.Rngs):
    self.pre = cfg.norm == "pre"
    self.norm = _layer_norm(cfg, rngs)
    self.ssm = S4D(cfg.hidden_size, cfg.state_size, init=cfg.init,
                   bidirectional=cfg.bidirectional, discretization=cfg.discretization,
                   dt_min=cfg.dt_min, dt_max=cfg.dt_max, activation=cfg.hidden_act,
                   glu=cfg.glu, dropout_rate=cfg.dropout_rate, dtype=cfg.compute_dtype,
                   param_dtype=cfg.params_dtype, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)
    self.activation = ACTIVATIONS[cfg.hidden_act]
    ffn = cfg.intermediate_size
    self.ffn_norm = _layer_norm(cfg, rngs) if ffn else None
    self.ffn_in = _dense(cfg, cfg.hidden_size, ffn, ("embed", "mlp"), rngs) if ffn else None
    self.ffn_out = _dense(cfg, ffn, cfg.hidden_size, ("mlp", "embed"), rngs) if ffn else None

  def _residual(self, x, fn, norm, deterministic):
    if self.pre:
      return x + self.dropout(fn(norm(x)), deterministic=deterministic)
    return norm(x + self.dropout(fn(x), deterministic=deterministic))

  def __call__(self, x: Array, mask: Array, *, deterministic: bool) -> Array:
    # The S4D zeroes padded positions of its input, so padding never reaches real tokens.
    x = self._residual(x, lambda h: self.ssm(h, mask, deterministic=deterministic), self.norm,
                       deterministic)
    if self.ffn_in is not None:
      x = self._residual(x, lambda h: self.ffn_out(self.activation(self.ffn_in(h))),
                         self.ffn_norm, deterministic)
    return x


class SSMEncoder(nnx.Module):
  """Token embedding + a stack of S4D blocks: `(input_ids, attention_mask) -> EncoderOutput`.

  Same calling convention as `TransformerEncoder`, so it drops into `SentenceEmbedder`. No
  position embedding: the SSM kernels are position-aware. Cost is O(L log L) in time and O(L)
  in memory, and there is no maximum length.
  """

  def __init__(self, cfg: SSMConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    kw = dict(dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype, rngs=rngs)
    self.word = layers.token_embedding(cfg.vocab_size, cfg.hidden_size, **kw)
    self.token_type = (layers.token_embedding(cfg.type_vocab_size, cfg.hidden_size,
                                              row_axis=None, **kw)
                       if cfg.type_vocab_size else None)
    self.dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)
    self.layers = nnx.List([SSMBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.final_norm = _layer_norm(cfg, rngs) if cfg.norm == "pre" else None

  @property
  def hidden_size(self) -> int:
    return self.cfg.hidden_size

  @property
  def num_hidden_states(self) -> int:
    """How many states `output_hidden_states=True` returns (embeddings + each layer)."""
    return self.cfg.num_layers + 1

  def __call__(self, input_ids: Array, attention_mask: Array, token_type_ids: Array | None = None,
               *, deterministic: bool = True, output_hidden_states: bool = False,
               num_layers: int | None = None, scan: bool = False) -> EncoderOutput:
    """Encodes a padded batch.

    Args:
      input_ids: int [B, L] token ids.
      attention_mask: [B, L], 1 for real tokens and 0 for padding (left or right).
      token_type_ids: optional int [B, L]; used only when `cfg.type_vocab_size > 0`.
      deterministic: disables dropout when True (inference).
      output_hidden_states: also return the embedding output and every layer's output.
      num_layers: run only the first `num_layers` blocks (1 .. cfg.num_layers; all by default);
        the output is then `hidden_states[num_layers]` of a full run (no final norm).
      scan: run the blocks under `jax.lax.scan` (inference only; off by default, see
        `jaxemb.nn.layers.run_layers` for why).
    """
    if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
      raise ValueError(f"expected input_ids and attention_mask of the same shape [B, L], got "
                       f"{input_ids.shape} and {attention_mask.shape}")
    if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
      raise ValueError(f"token_type_ids must have shape {input_ids.shape}, got "
                       f"{token_type_ids.shape}")
    x = self.word(input_ids)
    if self.token_type is not None:
      x = x + self.token_type(jnp.zeros_like(input_ids) if token_type_ids is None
                              else token_type_ids)
    num_layers = layers.check_num_layers(num_layers, self.cfg.num_layers)
    x = self.dropout(x, deterministic=deterministic)
    first = x
    x, states = layers.run_layers(
        self.layers[:num_layers], x,
        lambda layer, h: layer(h, attention_mask, deterministic=deterministic),
        deterministic=deterministic, want_states=output_hidden_states, scan=scan)
    if self.final_norm is not None and num_layers == self.cfg.num_layers:
      x = self.final_norm(x)
      if states:
        states[-1] = x
    return EncoderOutput(x, (first, *states) if output_hidden_states else None)
