"""Click-through-rate data: a seeded synthetic teacher with the Criteo schema, and a Criteo TSV
reader.

Synthetic data (`CTRSpec`, `generate`): 13 dense and 26 categorical fields, field f's
cardinality scaled from Criteo Kaggle's (`CRITEO_CARDINALITIES`). Every value is a pure
function of (seed, example index), computed with integer hashing, so any slice of any split can
be generated on its own, on any machine, vectorised, without storing per-id tables (the ~10^7-row
variant costs no memory):

  ids       id_f = perm_f(zipf rank): a Zipf(`zipf`) rank over [0, card_f), moved to a hashed
            id; with `drift` > 0 the rank -> id map rotates by drift * card_f * (index / total)
            over the data (slow popularity drift)
  dense     x_j = floor(exp(N(mu_j, 1))) (non-negative counts like Criteo's)
  teacher   logit = b + sum_f w_f[id_f] + scale_fm * sum_{f<g} <v_f[id_f], v_g[id_g]>
                    + sum_j u_j * z_j,   z_j the standardised log1p(x_j)
            w ~ N(0, sigma_w^2), v ~ N(0, sigma_v^2 I_k) per (field, id), derived by hashing;
            b is set so the mean click probability is `positive_rate` (about 25%)
  label     Bernoulli(sigmoid(logit)); `prob` = the teacher's sigmoid(logit), whose AUC on a
            split is the oracle AUC (the best any model can do in expectation)

Criteo TSV (`read_criteo_tsv`): `label \\t I1..I13 \\t C1..C26`, empty fields allowed, ints may be
negative (clipped to 0), categoricals 8-hex-digit strings hashed into each field's
cardinality (id 0 = missing).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

import numpy as np

# Criteo Kaggle display-advertising challenge, categorical fields C1..C26.
CRITEO_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
    5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
NUM_DENSE = 13
NUM_SPARSE = 26
_M32 = np.uint64(0xFFFFFFFF)


def scaled_cardinalities(scale: float, min_card: int = 4) -> tuple[int, ...]:
  """ceil(scale * Criteo's cardinality), at least min(card, `min_card`), at most card."""
  if not 0 < scale <= 1:
    raise ValueError(f"scale must be in (0, 1], got {scale}")
  cards = np.asarray(CRITEO_CARDINALITIES, np.int64)
  out = np.maximum(np.ceil(cards * scale).astype(np.int64), np.minimum(cards, min_card))
  return tuple(int(c) for c in np.minimum(out, cards))


@dataclasses.dataclass(frozen=True)
class CTRSpec:
  """Everything that defines a synthetic CTR data set (see the module docstring)."""

  scale: float = 1e-3
  num_train: int = 100_000
  num_validation: int = 10_000
  num_test: int = 20_000
  seed: int = 0
  zipf: float = 1.1
  drift: float = 0.0
  latent_dim: int = 4
  sigma_w: float = 0.25
  sigma_v: float = 0.5
  scale_fm: float = 0.1
  sigma_dense: float = 0.15
  positive_rate: float = 0.25

  def __post_init__(self):
    if min(self.num_train, self.num_validation, self.num_test) < 1:
      raise ValueError(f"split sizes must be >= 1, got {self.num_train}, "
                       f"{self.num_validation}, {self.num_test}")
    if self.zipf <= 0 or self.zipf == 1.0:
      raise ValueError(f"zipf exponent must be > 0 and != 1, got {self.zipf}")
    if not 0 <= self.drift <= 1:
      raise ValueError(f"drift must be in [0, 1], got {self.drift}")
    if not 0 < self.positive_rate < 1:
      raise ValueError(f"positive_rate must be in (0, 1), got {self.positive_rate}")
    if self.latent_dim < 1:
      raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
    scaled_cardinalities(self.scale)

  @property
  def cardinalities(self) -> tuple[int, ...]:
    return scaled_cardinalities(self.scale)

  @property
  def total(self) -> int:
    return self.num_train + self.num_validation + self.num_test

  def split_range(self, split: str) -> tuple[int, int]:
    """[start, stop) example indices of "train", "validation" or "test" (disjoint, in order, so
    drift runs from train into test)."""
    starts = {"train": 0, "validation": self.num_train,
              "test": self.num_train + self.num_validation}
    sizes = {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}
    if split not in starts:
      raise ValueError(f"split must be one of {sorted(starts)}, got {split!r}")
    return starts[split], starts[split] + sizes[split]


# --- hashing to uniforms / normals (numpy, uint64 arithmetic masked to 32 bits) -------------

def _fmix32(x: np.ndarray) -> np.ndarray:
  x = x & _M32
  x ^= x >> np.uint64(16)
  x = (x * np.uint64(0x85EBCA6B)) & _M32
  x ^= x >> np.uint64(13)
  x = (x * np.uint64(0xC2B2AE35)) & _M32
  return x ^ (x >> np.uint64(16))


def _hash(*keys: np.ndarray | int) -> np.ndarray:
  """uint64 (< 2**32) hash of several integer arrays (broadcast), combined murmur-style."""
  h = np.uint64(0x811C9DC5)
  for k in keys:
    k = np.asarray(k).astype(np.uint64) & _M32
    h = _fmix32((h * np.uint64(0x01000193)) ^ _fmix32(k + np.uint64(0x9E3779B9)))
  return h


def _uniform(*keys) -> np.ndarray:
  """(0, 1) float64 uniforms from hashes."""
  return (_hash(*keys).astype(np.float64) + 0.5) / 2.0 ** 32


def _normal(*keys) -> np.ndarray:
  """Standard normals by Box-Muller from two hashed uniforms."""
  u1, u2 = _uniform(*keys, 0), _uniform(*keys, 1)
  return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def zipf_ranks(u: np.ndarray, n: np.ndarray | int, a: float) -> np.ndarray:
  """Ranks in [0, n) with P(rank r) ~ (r + 1)^-a, by inverting the continuous power-law CDF."""
  n = np.asarray(n, np.float64)
  one_a = 1.0 - a
  r = (u * (np.power(n + 1.0, one_a) - 1.0) + 1.0) ** (1.0 / one_a) - 1.0
  return np.minimum(np.floor(r), n - 1).astype(np.int64)


def _rank_to_id(rank: np.ndarray, field: int, card: int, seed: int) -> np.ndarray:
  """A bijection of [0, card) (affine map with a hashed multiplier coprime to card), so popular
  ids are scattered over the id range instead of sitting at 0, 1, 2, ..."""
  mult = int(_hash(seed, field, 77)) % card
  while np.gcd(mult, card) != 1:
    mult = (mult + 1) % card
  add = int(_hash(seed, field, 78)) % card
  return (rank.astype(np.int64) * mult + add) % card


# --- generation -----------------------------------------------------------------------------

_DENSE_MU = np.linspace(0.0, 3.0, NUM_DENSE)  # log-count centre of each dense field


def _sparse(spec: CTRSpec, index: np.ndarray) -> np.ndarray:
  cards = spec.cardinalities
  out = np.empty((index.size, NUM_SPARSE), np.int64)
  t = index.astype(np.float64) / spec.total
  for f, card in enumerate(cards):
    rank = zipf_ranks(_uniform(spec.seed, 1, f, index), card, spec.zipf)
    if spec.drift:
      rank = (rank + np.floor(spec.drift * card * t).astype(np.int64)) % card
    out[:, f] = _rank_to_id(rank, f, card, spec.seed)
  return out


def _dense(spec: CTRSpec, index: np.ndarray) -> np.ndarray:
  j = np.arange(NUM_DENSE)
  z = _normal(spec.seed, 2, j[None, :], index[:, None])
  return np.floor(np.exp(_DENSE_MU[None, :] + z)).astype(np.float32)


def _logit_without_bias(spec: CTRSpec, sparse: np.ndarray, dense: np.ndarray) -> np.ndarray:
  f = np.arange(NUM_SPARSE)
  w = spec.sigma_w * _normal(spec.seed, 3, f[None, :], sparse)
  k = np.arange(spec.latent_dim)
  v = spec.sigma_v * _normal(spec.seed, 4, f[None, :, None], sparse[:, :, None], k[None, None])
  s = v.sum(axis=1)
  pair = 0.5 * (np.sum(s * s, axis=-1) - np.sum(v * v, axis=(1, 2)))  # sum_{f<g} <v_f, v_g>
  # standardised log-counts: log1p(floor(exp(mu + z))) is close to mu + z for large mu
  zd = (np.log1p(dense.astype(np.float64)) - np.log1p(np.exp(_DENSE_MU))) / 1.0
  u = spec.sigma_dense * _normal(spec.seed, 5, np.arange(NUM_DENSE))
  return w.sum(axis=1) + spec.scale_fm * pair + zd @ u


def _bias(spec: CTRSpec) -> float:
  """b with mean sigmoid(b + logit) = positive_rate on a fixed train sample (bisection)."""
  index = np.arange(min(spec.num_train, 20_000), dtype=np.int64)
  base = _logit_without_bias(spec, _sparse(spec, index), _dense(spec, index))
  lo, hi = -20.0, 20.0
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    if np.mean(1.0 / (1.0 + np.exp(-(base + mid)))) > spec.positive_rate:
      hi = mid
    else:
      lo = mid
  return 0.5 * (lo + hi)


_BIAS_CACHE: dict[CTRSpec, float] = {}


def teacher_bias(spec: CTRSpec) -> float:
  """The teacher's intercept for `spec` (computed once per spec)."""
  if spec not in _BIAS_CACHE:
    _BIAS_CACHE[spec] = _bias(spec)
  return _BIAS_CACHE[spec]


def teacher_prob(spec: CTRSpec, sparse: np.ndarray, dense: np.ndarray) -> np.ndarray:
  """The teacher's click probability [N] for ids [N, 26] and dense counts [N, 13]."""
  sparse, dense = np.asarray(sparse, np.int64), np.asarray(dense, np.float64)
  if sparse.ndim != 2 or sparse.shape[1] != NUM_SPARSE or dense.shape != (len(sparse), NUM_DENSE):
    raise ValueError(f"need sparse [N, {NUM_SPARSE}] and dense [N, {NUM_DENSE}], got "
                     f"{sparse.shape} and {dense.shape}")
  logit = _logit_without_bias(spec, sparse, dense) + teacher_bias(spec)
  return 1.0 / (1.0 + np.exp(-logit))


def generate(spec: CTRSpec, index: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
  """Examples at global `index` (int array): {"dense" [N,13] float32 counts, "sparse" [N,26]
  int32 ids, "label" [N] int32, "prob" [N] float32 teacher probability}."""
  index = np.asarray(index, np.int64).reshape(-1)
  if index.size and (index.min() < 0 or index.max() >= spec.total):
    raise ValueError(f"example index outside [0, {spec.total}): {index.min()}..{index.max()}")
  sparse, dense = _sparse(spec, index), _dense(spec, index)
  prob = teacher_prob(spec, sparse, dense)
  label = (_uniform(spec.seed, 6, index) < prob).astype(np.int32)
  return {"dense": dense, "sparse": sparse.astype(np.int32), "label": label,
          "prob": prob.astype(np.float32)}


def generate_split(spec: CTRSpec, split: str, chunk: int = 65_536
                   ) -> Iterable[dict[str, np.ndarray]]:
  """`generate` over a whole split in chunks of `chunk` examples (with their "index")."""
  start, stop = spec.split_range(split)
  for lo in range(start, stop, chunk):
    index = np.arange(lo, min(lo + chunk, stop))
    yield {"index": index, **generate(spec, index)}


def dense_transform(dense: np.ndarray) -> np.ndarray:
  """The usual Criteo dense preprocessing: log(1 + max(x, 0))."""
  return np.log1p(np.maximum(np.asarray(dense, np.float32), 0.0))


# --- Criteo TSV -----------------------------------------------------------------------------

def categorical_id(value: str, field: int, cardinality: int) -> int:
  """Criteo hex categorical -> id in [0, cardinality): 0 for missing, else 1 + hash % (card-1)."""
  if not value:
    return 0
  if cardinality < 2:
    raise ValueError(f"cardinality must be >= 2, got {cardinality}")
  try:
    raw = int(value, 16)
  except ValueError:
    raise ValueError(f"categorical field C{field + 1} value {value!r} is not hexadecimal"
                     ) from None
  return 1 + int(_hash(field, raw & 0xFFFFFFFF, raw >> 32)) % (cardinality - 1)


def read_criteo_tsv(path: str | os.PathLike, cardinalities: Sequence[int] | None = None,
                    max_rows: int | None = None) -> dict[str, np.ndarray]:
  """Reads a Criteo display-advertising TSV (train.txt format) into arrays.

  Returns {"label" [N] int32, "dense" [N,13] float32 (negatives and missing -> 0), "sparse"
  [N,26] int32 ids hashed into `cardinalities` (default Criteo's own)}. ValueError names the line
  and field of any malformed value.
  """
  cards = tuple(cardinalities or CRITEO_CARDINALITIES)
  if len(cards) != NUM_SPARSE:
    raise ValueError(f"need {NUM_SPARSE} cardinalities, got {len(cards)}")
  labels, dense, sparse = [], [], []
  with open(path, encoding="utf-8") as fh:
    for n, line in enumerate(fh, 1):
      if max_rows is not None and len(labels) >= max_rows:
        break
      line = line.rstrip("\n").rstrip("\r")
      if not line:
        continue
      cols = line.split("\t")
      if len(cols) != 1 + NUM_DENSE + NUM_SPARSE:
        raise ValueError(f"{path}:{n}: expected {1 + NUM_DENSE + NUM_SPARSE} tab-separated "
                         f"fields, got {len(cols)}")
      if cols[0] not in ("0", "1"):
        raise ValueError(f"{path}:{n}: label must be 0 or 1, got {cols[0]!r}")
      labels.append(int(cols[0]))
      row = []
      for j, v in enumerate(cols[1:1 + NUM_DENSE]):
        try:
          row.append(max(int(v), 0) if v else 0)
        except ValueError:
          raise ValueError(f"{path}:{n}: dense field I{j + 1} value {v!r} is not an integer"
                           ) from None
      dense.append(row)
      sparse.append([categorical_id(v, f, cards[f])
                     for f, v in enumerate(cols[1 + NUM_DENSE:])])
  return {"label": np.asarray(labels, np.int32),
          "dense": np.asarray(dense, np.float32).reshape(-1, NUM_DENSE),
          "sparse": np.asarray(sparse, np.int32).reshape(-1, NUM_SPARSE)}
