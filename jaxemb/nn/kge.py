"""Knowledge-graph interaction models: TransE, DistMult, ComplEx, RotatE, TuckER and NFE-1.

One module, `KGEModel`, holds an entity table `[num_entities, width]` and a relation table
`[num_relations, width_r]` (plus TuckER's core tensor) and scores triples with one of the
interaction functions below. Parameterisation and initialisation follow PyKEEN 1.11.1's model
defaults:

  model     entity table (init, constraint)          relation table (init, constraint)
  transe    xavier_uniform U(+-sqrt(6/d)), L2 rows   torch xavier_uniform, then L2 rows (init)
  distmult  xavier_uniform, L2 rows                  torch xavier_normal, then L2 rows (init)
  complex   N(0, 1) re and im                        N(0, 1) re and im
  rotate    xavier_uniform over (d, 2): U(+-sqrt(3/d)) phases U[0, 2pi) as (cos, sin), |r_i| = 1
  tucker    xavier_normal N(0, 2/d)                  xavier_normal N(0, 2/d_r); core U(-1, 1)
  nfe       U(+-0.1) (mu | sigma)                    U(+-0.1) (r_mu | r_sigma), as NFE's code

Complex tables (ComplEx, RotatE) store `dim` complex numbers per row as `[re_1..re_d |
im_1..im_d]`, so `dim` counts complex dimensions as PyKEEN's `embedding_dim` does. Constraints
(TransE/DistMult entity L2 normalisation, RotatE unit modulus) are not part of the forward pass:
PyKEEN applies them after initialisation and after every optimiser step, which `constrain`
reproduces (a recipe calls it from `post_update`).

Tables carry logical axis names ("entity", "embed") and ("relation", "embed"), so a rule such as
("entity", "fsdp") shards the entity table by rows; every score is a plain jnp expression over
gathered rows or the whole table, so XLA partitions it under jit.

TuckER follows PyKEEN's interaction with its two BatchNorm layers (`BatchNorm1d`, PyTorch's
semantics; the running statistics are `nnx.BatchStat` state, which the loop carries and
checkpoints) and three dropouts. A `dropout_key` means training: dropout on, the norms on batch
statistics (updating the running ones); without it the norms use the running statistics.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxemb.nn.tables import take_rows

INTERACTIONS = ("transe", "distmult", "complex", "rotate", "tucker", "nfe")
TUCKER_DROPOUT = (0.3, 0.4, 0.5)  # PyKEEN's (head, relation, head-relation) defaults
_COMPLEX = ("complex", "rotate")


def table_widths(interaction: str, dim: int, relation_dim: int | None = None) -> tuple[int, int]:
  """(entity row width, relation row width) of the stored tables."""
  if interaction in _COMPLEX or interaction == "nfe":
    return 2 * dim, 2 * dim
  if interaction == "tucker":
    return dim, relation_dim or dim
  return dim, dim


# ---------------------------------------------------------------------------------------------
# Initialisers (key, shape, dtype) -> array, as PyKEEN 1.11.1's defaults.


def _xavier_uniform_pykeen(key, shape, dtype=jnp.float32, fan_out=None):
  # pykeen.nn.init.xavier_uniform_: fan_out = prod(shape[1:]), bound = sqrt(3) * sqrt(2 / fan_out).
  bound = math.sqrt(3.0) * math.sqrt(2.0 / float(fan_out or math.prod(shape[1:])))
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def _xavier_normal_pykeen(key, shape, dtype=jnp.float32):
  std = math.sqrt(2.0 / float(math.prod(shape[1:])))
  return std * jax.random.normal(key, shape, dtype)


def _l2_rows(x: jax.Array) -> jax.Array:
  # torch.nn.functional.normalize: x / max(||x||, 1e-12).
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _torch_xavier_uniform_norm(key, shape, dtype=jnp.float32):
  bound = math.sqrt(6.0 / float(shape[0] + shape[1]))
  return _l2_rows(jax.random.uniform(key, shape, dtype, -bound, bound))


def _torch_xavier_normal_norm(key, shape, dtype=jnp.float32):
  std = math.sqrt(2.0 / float(shape[0] + shape[1]))
  return _l2_rows(std * jax.random.normal(key, shape, dtype))


def _phases(key, shape, dtype=jnp.float32):
  phase = 2 * jnp.pi * jax.random.uniform(key, (shape[0], shape[1] // 2), dtype)
  return jnp.concatenate([jnp.cos(phase), jnp.sin(phase)], axis=-1)


def _uniform(bound: float):
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _normal(key, shape, dtype=jnp.float32):
  return jax.random.normal(key, shape, dtype)


def initializers(interaction: str):
  """(entity init, relation init) of `interaction`, PyKEEN's defaults (see module docstring)."""
  if interaction in ("transe", "distmult"):
    rel = _torch_xavier_uniform_norm if interaction == "transe" else _torch_xavier_normal_norm
    # The entity constrainer also runs once right after initialisation (reset_parameters_).
    return (lambda key, shape, dtype=jnp.float32:
            _l2_rows(_xavier_uniform_pykeen(key, shape, dtype))), rel
  if interaction == "complex":
    return _normal, _normal
  if interaction == "rotate":
    # PyKEEN's complex table has shape (n, d, 2): fan_out = 2d, the whole row width.
    return _xavier_uniform_pykeen, _phases
  if interaction == "tucker":
    return _xavier_normal_pykeen, _xavier_normal_pykeen
  if interaction == "nfe":
    return _uniform(0.1), _uniform(0.1)
  raise ValueError(f"unknown interaction {interaction!r}; expected one of {INTERACTIONS}")


# ---------------------------------------------------------------------------------------------
# Interaction functions on gathered rows; all broadcast over leading dimensions.


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  d = x.shape[-1] // 2
  return x[..., :d], x[..., d:]


def _identity(x: jax.Array) -> jax.Array:
  return x


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def interact(interaction: str, h: jax.Array, r: jax.Array, t: jax.Array, *, p: int = 1,
             gamma: float = 0.0, core: jax.Array | None = None,
             dropout: tuple[float, float, float] = (0.0, 0.0, 0.0),
             dropout_key: jax.Array | None = None,
             norms: tuple[Callable, Callable] | None = None) -> jax.Array:
  """Scores of broadcastable row arrays `h`, `r`, `t` ([..., width]) -> [...] (higher = truer).

  transe   -||h + r - t||_p
  distmult sum(h * r * t)
  complex  Re(<h, r, conj(t)>)
  rotate   -||h * r - t||_2 (complex product)
  tucker   DO(BN_hr(DO(BN_h(h)) x_1 DO(Z x_2 r))) . t   (`norms` = (BN_h, BN_hr), or none)
  nfe      gamma - ||r_sigma h_mu + r_mu - t_mu||^2 - || |r_sigma h_sigma| - |t_sigma| ||^2
  """
  if interaction == "transe":
    diff = h + r - t
    if p == 1:
      return -jnp.sum(jnp.abs(diff), axis=-1)
    if p == 2:
      return -jnp.sqrt(jnp.sum(diff * diff, axis=-1))
    raise ValueError(f"transe norm p must be 1 or 2, got {p}")
  if interaction == "distmult":
    return jnp.sum(h * r * t, axis=-1)
  if interaction == "complex":
    (hr, hi), (rr, ri), (tr, ti) = _split(h), _split(r), _split(t)
    return jnp.sum((hr * rr - hi * ri) * tr + (hr * ri + hi * rr) * ti, axis=-1)
  if interaction == "rotate":
    (hr, hi), (rr, ri), (tr, ti) = _split(h), _split(r), _split(t)
    dr, di = hr * rr - hi * ri - tr, hr * ri + hi * rr - ti
    return -jnp.sqrt(jnp.sum(dr * dr + di * di, axis=-1))
  if interaction == "nfe":
    (hm, hs), (rm, rs), (tm, ts) = _split(h), _split(r), _split(t)
    mu = rs * hm + rm - tm
    sigma = jnp.abs(rs * hs) - jnp.abs(ts)
    return gamma - jnp.sum(mu * mu, axis=-1) - jnp.sum(sigma * sigma, axis=-1)
  if interaction == "tucker":
    if core is None:
      raise ValueError("tucker needs its core tensor")
    keys = jax.random.split(dropout_key, 3) if dropout_key is not None else (None,) * 3
    norm_h, norm_hr = norms or (_identity, _identity)
    x = _dropout(norm_h(h), dropout[0], keys[0])
    zr = _dropout(jnp.einsum("ijk,...j->...ik", core, r), dropout[1], keys[1])
    hr = _dropout(norm_hr(jnp.einsum("...ik,...i->...k", zr, x)), dropout[2], keys[2])
    return jnp.sum(hr * t, axis=-1)
  raise ValueError(f"unknown interaction {interaction!r}; expected one of {INTERACTIONS}")


# ---------------------------------------------------------------------------------------------
# 1-N scores as matrix products (training against all entities; float32 expansions).

FAST_ONE_TO_ALL = ("transe", "distmult", "complex", "rotate", "nfe", "tucker")


def _sqdist(q: jax.Array, e: jax.Array) -> jax.Array:
  # ||q_b - e_j||^2 = |q_b|^2 + |e_j|^2 - 2 q_b.e_j, clamped at 0 (float32 cancellation).
  d = jnp.sum(q * q, -1)[:, None] + jnp.sum(e * e, -1)[None, :] - 2.0 * q @ e.T
  return jnp.maximum(d, 0.0)


def _neg_dist(d2: jax.Array) -> jax.Array:
  # sqrt with a floor, so a (near-)zero distance has a finite gradient.
  return -jnp.sqrt(jnp.maximum(d2, 1e-12))


def _cmul(a: jax.Array, b: jax.Array, conj_b: bool = False) -> jax.Array:
  (ar, ai), (br, bi) = _split(a), _split(b)
  if conj_b:
    bi = -bi
  return jnp.concatenate([ar * br - ai * bi, ar * bi + ai * br], axis=-1)


Affine = tuple[jax.Array, jax.Array]  # BatchNorm at running statistics: x -> x * a + c


def tails_matmul(interaction: str, h: jax.Array, r: jax.Array, ent: jax.Array, *, p: int = 1,
                 gamma: float = 0.0, core: jax.Array | None = None,
                 norms: tuple[Affine, Affine] | None = None) -> jax.Array | None:
  """(h, r, every entity) scores `[B, E]` from rows `h`, `r` `[B, w]` as matrix products, or None
  where the interaction has no such form (TransE L1). Equal to `interact` (no dropout, TuckER's
  `norms` as their evaluation-time affine maps) up to float32 rounding of the expansions
  ||a - b||^2 = |a|^2 + |b|^2 - 2ab."""
  if interaction == "distmult":
    return (h * r) @ ent.T
  if interaction == "complex":
    return _cmul(h, r) @ ent.T
  if interaction == "rotate":
    return _neg_dist(_sqdist(_cmul(h, r), ent))
  if interaction == "transe":
    return _neg_dist(_sqdist(h + r, ent)) if p == 2 else None
  if interaction == "nfe":
    (hm, hs), (rm, rs), (em, es) = _split(h), _split(r), _split(ent)
    return gamma - _sqdist(rs * hm + rm, em) - _sqdist(jnp.abs(rs * hs), jnp.abs(es))
  if interaction == "tucker":
    (a_h, c_h), (a_hr, c_hr) = norms or ((1.0, 0.0), (1.0, 0.0))
    hr = jnp.einsum("...ik,...i->...k", jnp.einsum("ijk,...j->...ik", core, r), h * a_h + c_h)
    return (hr * a_hr + c_hr) @ ent.T
  return None


def heads_matmul(interaction: str, r: jax.Array, t: jax.Array, ent: jax.Array, *, p: int = 1,
                 gamma: float = 0.0, core: jax.Array | None = None,
                 norms: tuple[Affine, Affine] | None = None) -> jax.Array | None:
  """(every entity, r, t) scores `[B, E]` as matrix products (see `tails_matmul`)."""
  if interaction == "distmult":
    return (r * t) @ ent.T
  if interaction == "complex":
    w = _cmul(r, t, conj_b=True)  # Re(sum e * w): e_re w_re - e_im w_im
    wr, wi = _split(w)
    return jnp.concatenate([wr, -wi], axis=-1) @ ent.T
  if interaction == "rotate":
    # |e r - t|^2 = sum_i |e_i|^2 |r_i|^2 - 2 Re(e_i r_i conj t_i) + |t_i|^2 (no |r_i| = 1 needed)
    (er, ei), (rr, ri), (tr, ti) = _split(ent), _split(r), _split(t)
    w = _cmul(r, t, conj_b=True)
    wr, wi = _split(w)
    d2 = ((er * er + ei * ei) @ (rr * rr + ri * ri).T
          - 2.0 * ent @ jnp.concatenate([wr, -wi], axis=-1).T
          + jnp.sum(tr * tr + ti * ti, -1)[None, :])
    return _neg_dist(jnp.maximum(d2, 0.0)).T
  if interaction == "transe":
    return _neg_dist(_sqdist(t - r, ent)) if p == 2 else None
  if interaction == "nfe":
    (rm, rs), (tm, ts), (em, es) = _split(r), _split(t), _split(ent)
    c = rm - tm
    mu = ((em * em) @ (rs * rs).T + 2.0 * em @ (rs * c).T + jnp.sum(c * c, -1)[None, :])
    ars = jnp.abs(rs)
    sig = ((es * es) @ (ars * ars).T - 2.0 * jnp.abs(es) @ (ars * jnp.abs(ts)).T
           + jnp.sum(ts * ts, -1)[None, :])
    return (gamma - jnp.maximum(mu, 0.0) - jnp.maximum(sig, 0.0)).T
  if interaction == "tucker":
    # sum_k (a_k x_k + c_k) t_k with x = Z x_1 e' x_2 r: the head side folds a into t.
    (a_h, c_h), (a_hr, c_hr) = norms or ((1.0, 0.0), (1.0, 0.0))
    scores = jnp.einsum("ijk,bj,bk->bi", core, r, t * a_hr) @ (ent * a_h + c_h).T
    return scores + jnp.sum(t * c_hr, axis=-1)[:, None]
  return None


# ---------------------------------------------------------------------------------------------
# The modules.


def has_train_mode(interaction: str, dropout, batch_norm: bool) -> bool:
  """Whether training scores differ from evaluation ones (TuckER with dropout or BatchNorm):
  training then scores gathered rows with a `dropout_key`, not the matrix-product forms."""
  return interaction == "tucker" and (any(float(x) for x in dropout) or bool(batch_norm))


class BatchNorm1d(nnx.Module):
  """PyTorch's `BatchNorm1d` over the last axis, every other axis a batch axis (PyKEEN's
  `apply_optional_bn`): training normalises by the batch mean and biased variance and moves
  the running statistics by `momentum` (the variance unbiased, n / (n - 1)); evaluation uses
  the running ones. Trainable scale (1) and bias (0); running mean 0, variance 1."""

  def __init__(self, dim: int, *, momentum: float = 0.1, eps: float = 1e-5,
               param_dtype: Any = jnp.float32):
    self.momentum, self.eps = float(momentum), float(eps)
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.mean = nnx.BatchStat(jnp.zeros((dim,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((dim,), jnp.float32))

  def affine(self) -> Affine:
    """(a, c) with evaluation-time output x * a + c."""
    a = self.scale[...] * jax.lax.rsqrt(self.var[...] + self.eps)
    return a, self.bias[...] - self.mean[...] * a

  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if not train:
      a, c = self.affine()
      return x * a + c
    flat = x.reshape(-1, x.shape[-1])
    n = flat.shape[0]
    mean, var = jnp.mean(flat, axis=0), jnp.var(flat, axis=0)
    m = self.momentum
    unbiased = var * (n / (n - 1)) if n > 1 else var
    self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
    self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)
    return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class KGEModel(nnx.Module):
  """Entity and relation tables plus an interaction function.

  Args:
    interaction: one of INTERACTIONS.
    num_entities, num_relations: table sizes.
    dim: embedding dimension (complex dimensions for ComplEx/RotatE, as PyKEEN's
      `embedding_dim`; per-part dimension for NFE's mu and sigma).
    relation_dim: TuckER's relation dimension (default `dim`).
    p: TransE's norm (1 or 2; PyKEEN's default 1).
    gamma: NFE's score offset (does not change ranks).
    dropout: TuckER's (head, relation, head-relation) dropout rates (PyKEEN: 0.3, 0.4, 0.5).
    batch_norm: TuckER's BatchNorm of the head and of the head-relation product (PyKEEN's
      `apply_batch_normalization`, default True).
    row_axis: a mesh axis the entity table is row-sharded over (e.g. "fsdp"); triple scoring
      then looks rows up with `jaxemb.nn.tables.take_rows` (each device serves its own rows, no
      all-gather of the table). Empty: plain indexing (XLA decides).
    rngs: parameter initialisation stream.
  """

  def __init__(self, interaction: str, num_entities: int, num_relations: int, dim: int, *,
               relation_dim: int | None = None, p: int = 1, gamma: float = 0.0,
               dropout: tuple[float, float, float] = TUCKER_DROPOUT, batch_norm: bool = True,
               param_dtype: Any = jnp.float32, row_axis: str = "", rngs: nnx.Rngs):
    if interaction not in INTERACTIONS:
      raise ValueError(f"unknown interaction {interaction!r}; expected one of {INTERACTIONS}")
    for name, value in (("num_entities", num_entities), ("num_relations", num_relations),
                        ("dim", dim)):
      if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if interaction == "transe" and p not in (1, 2):
      raise ValueError(f"transe norm p must be 1 or 2, got {p}")
    if any(not 0.0 <= float(x) < 1.0 for x in dropout) or len(dropout) != 3:
      raise ValueError(f"dropout must be three rates in [0, 1), got {dropout}")
    self.interaction, self.p, self.gamma = interaction, int(p), float(gamma)
    self.row_axis = row_axis or None
    self.num_entities, self.num_relations, self.dim = int(num_entities), int(num_relations), int(dim)
    self.dropout = tuple(float(x) for x in dropout) if interaction == "tucker" else (0.0,) * 3
    ew, rw = table_widths(interaction, dim, relation_dim)
    ent_init, rel_init = initializers(interaction)
    self.entity = nnx.Param(nnx.with_partitioning(ent_init, ("entity", "embed"))(
        rngs.params(), (self.num_entities, ew), param_dtype))
    self.relation = nnx.Param(nnx.with_partitioning(rel_init, ("relation", "embed"))(
        rngs.params(), (self.num_relations, rw), param_dtype))
    if interaction == "tucker":
      self.core = nnx.Param(nnx.with_partitioning(_uniform(1.0), (None, None, None))(
          rngs.params(), (dim, rw, dim), param_dtype))
    else:
      self.core = None
    if interaction == "tucker" and batch_norm:
      self.norm_h, self.norm_hr = (BatchNorm1d(dim, param_dtype=param_dtype) for _ in range(2))
    else:
      self.norm_h = self.norm_hr = None

  @property
  def has_train_mode(self) -> bool:
    """Whether training scores differ from evaluation ones (see `has_train_mode`)."""
    return has_train_mode(self.interaction, self.dropout, self.norm_h is not None)

  def _interact(self, h, r, t, dropout_key=None):
    core = self.core[...] if self.core is not None else None
    norms = None
    if self.norm_h is not None:
      train = dropout_key is not None
      norms = (lambda x: self.norm_h(x, train), lambda x: self.norm_hr(x, train))
    return interact(self.interaction, h, r, t, p=self.p, gamma=self.gamma, core=core,
                    dropout=self.dropout, dropout_key=dropout_key, norms=norms)

  def _norm_affines(self) -> tuple[Affine, Affine] | None:
    return None if self.norm_h is None else (self.norm_h.affine(), self.norm_hr.affine())

  def score_hrt(self, h: jax.Array, r: jax.Array, t: jax.Array, *,
                dropout_key: jax.Array | None = None) -> jax.Array:
    """Scores of triples given as integer index arrays of one shape -> float array of it."""
    ent, rel = self.entity[...], self.relation[...]
    return self._interact(self._rows(ent, h), rel[r], self._rows(ent, t), dropout_key)

  def _rows(self, ent: jax.Array, ids: jax.Array) -> jax.Array:
    return take_rows(ent, ids, self.row_axis) if self.row_axis else ent[ids]

  __call__ = score_hrt

  def score_t(self, h: jax.Array, r: jax.Array, *, dropout_key: jax.Array | None = None
              ) -> jax.Array:
    """(h, r, every tail): `[B]` indices -> `[B, num_entities]` scores."""
    ent, rel = self.entity[...], self.relation[...]
    return self._interact(ent[h][:, None], rel[r][:, None], ent[None], dropout_key)

  def score_h(self, r: jax.Array, t: jax.Array, *, dropout_key: jax.Array | None = None
              ) -> jax.Array:
    """(every head, r, t): `[B]` indices -> `[B, num_entities]` scores."""
    ent, rel = self.entity[...], self.relation[...]
    return self._interact(ent[None], rel[r][:, None], ent[t][:, None], dropout_key)

  @property
  def has_matmul(self) -> bool:
    """Whether 1-N scores have a matrix-product form (all but TransE L1)."""
    return not (self.interaction == "transe" and self.p == 1)

  def score_t_matmul(self, h: jax.Array, r: jax.Array) -> jax.Array:
    """Like `score_t` (no dropout) through matrix products: for training against all or many
    entities. Falls back to `score_t` where there is no product form (TransE L1)."""
    ent, rel = self.entity[...], self.relation[...]
    core = self.core[...] if self.core is not None else None
    out = tails_matmul(self.interaction, ent[h], rel[r], ent, p=self.p, gamma=self.gamma,
                       core=core, norms=self._norm_affines())
    return self.score_t(h, r) if out is None else out

  def score_h_matmul(self, r: jax.Array, t: jax.Array) -> jax.Array:
    """Like `score_h` (no dropout) through matrix products (see `score_t_matmul`)."""
    ent, rel = self.entity[...], self.relation[...]
    core = self.core[...] if self.core is not None else None
    out = heads_matmul(self.interaction, rel[r], ent[t], ent, p=self.p, gamma=self.gamma,
                       core=core, norms=self._norm_affines())
    return self.score_h(r, t) if out is None else out

  def rows(self, h: jax.Array, r: jax.Array, t: jax.Array
           ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The gathered (entity, relation, entity) rows of triples (for regularisers)."""
    ent, rel = self.entity[...], self.relation[...]
    return self._rows(ent, h), rel[r], self._rows(ent, t)


def constrain(interaction: str, params: dict) -> dict:
  """PyKEEN's constrainers on a params dict {"entity", "relation", ...} (pure function).

  transe/distmult: entity rows to unit L2 norm; rotate: every complex relation element to
  modulus 1 (clamped at float eps, as `pykeen.utils.complex_normalize`); others unchanged.
  """
  out = dict(params)
  if interaction in ("transe", "distmult"):
    out["entity"] = _l2_rows(params["entity"])
  elif interaction == "rotate":
    re, im = _split(params["relation"])
    eps = jnp.finfo(params["relation"].dtype).eps
    modulus = jnp.maximum(jnp.sqrt(re * re + im * im), eps)
    out["relation"] = jnp.concatenate([re / modulus, im / modulus], axis=-1)
  return out


def build(options: dict, num_entities: int, num_relations: int, rngs: nnx.Rngs) -> KGEModel:
  """A `KGEModel` from a config section {interaction, dim, relation_dim, p, gamma, dropout,
  batch_norm, row_axis}."""
  valid = {"interaction", "dim", "relation_dim", "p", "gamma", "dropout", "batch_norm",
           "row_axis"}
  bad = sorted(set(options) - valid)
  if bad:
    raise ValueError(f"unknown model option(s) {bad}; valid: {sorted(valid)}")
  return KGEModel(options["interaction"], num_entities, num_relations, int(options["dim"]),
                  relation_dim=options.get("relation_dim") or None, p=int(options.get("p", 1)),
                  gamma=float(options.get("gamma", 0.0)),
                  dropout=tuple(options.get("dropout", TUCKER_DROPOUT)),
                  batch_norm=bool(options.get("batch_norm", True)),
                  row_axis=options.get("row_axis", ""), rngs=rngs)
