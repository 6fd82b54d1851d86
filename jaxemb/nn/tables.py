"""Embedding tables for many categorical features: full, hashed, QR, Unified Embedding, OptEmbed.

Every table maps integer ids `[B, F]` (feature f's ids in `[0, cardinalities[f])`) to embeddings
`[B, F, D]`. A feature that uses fewer than D dimensions (Unified Embedding with a per-feature
number of probes, OptEmbed with a per-field dimension) is zero-padded to D, so dot-product
interactions (DLRM) and MLPs see one layout.

Rows of every table carry the logical axis name "table_rows" (rules map it to a mesh axis); with
`row_axis` set to that mesh axis the lookup runs in `jax.shard_map` (each device takes the rows it
holds, zeros elsewhere, then a psum / psum-scatter), so the table itself is never gathered.

Hashes are integer mixing on uint32 (the murmur3 finaliser), the same in numpy and jnp and on
every process: no Python `hash`, no per-process salt.

    tables = UnifiedTables(cards, dim=16, rows=2**16, probes=2, rngs=nnx.Rngs(0))
    emb = tables(ids)                      # [B, F, 16]
    tables.num_params                      # embedding parameters
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

ROWS = "table_rows"   # logical name of table rows (shard these)
DIM = "table_dim"     # logical name of the embedding width (normally replicated)


# --- hashing --------------------------------------------------------------------------------

def fmix32(x: Any, xp: Any = jnp) -> Any:
  """murmur3's 32-bit finaliser: a bijection on uint32 with full avalanche.

  `xp` is `jnp` or `numpy`; both wrap uint32 multiplication modulo 2**32, so the two agree bit
  for bit (tested).
  """
  x = xp.asarray(x).astype(xp.uint32)
  x = x ^ (x >> xp.uint32(16))
  x = x * xp.uint32(0x85EBCA6B)
  x = x ^ (x >> xp.uint32(13))
  x = x * xp.uint32(0xC2B2AE35)
  return x ^ (x >> xp.uint32(16))


def hash_ids(ids: Any, salt: Any, xp: Any = jnp) -> Any:
  """uint32 hash of integer `ids` under integer `salt` (broadcasting).

  For a fixed salt this is a bijection of the low 32 bits of the id (xor with a mixed salt, then
  `fmix32`), so distinct ids below 2**32 never collide before the modulo.
  """
  def u32(x):
    # host values through numpy first: jnp refuses Python ints above int32
    return xp.asarray(x if isinstance(x, jax.Array) else np.asarray(x).astype(np.uint32)
                      ).astype(xp.uint32)

  with np.errstate(over="ignore"):
    salt_mix = fmix32(u32(salt) * xp.uint32(0x9E3779B9) + xp.uint32(0x7F4A7C15), xp)
    return fmix32(u32(ids) ^ salt_mix, xp)


def hash_rows(ids: Any, salt: Any, rows: Any, xp: Any = jnp) -> Any:
  """`hash_ids(ids, salt) % rows` as int32 (rows broadcast like ids)."""
  return (hash_ids(ids, salt, xp) % xp.asarray(rows).astype(xp.uint32)).astype(xp.int32)


# --- sharded lookup -------------------------------------------------------------------------

def _batch_axes(mesh: Any, n: int) -> tuple[str, ...]:
  """The mesh's batch axes (data, fsdp) of size > 1 whose product divides `n`."""
  axes = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names and mesh.shape[a] > 1)
  size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
  return axes if n % size == 0 else ()


def take_rows(table: jax.Array, rows: jax.Array, row_axis: str | None = None) -> jax.Array:
  """`table[rows]` (rows any int shape) -> `rows.shape + (D,)`, row-sharded when asked.

  With `row_axis` naming an axis of the current mesh (`jax.set_mesh`) of size > 1 that divides the
  table's rows, the lookup is a `jax.shard_map`: each device holds a contiguous block of rows,
  takes the ids that fall in it (zeros for the rest) and the partial results are summed over
  `row_axis` (psum, or psum-scatter back to the batch shards when the batch is split over the
  same axis, after all-gathering the ids: ids are small, the table is not). Otherwise a plain
  `jnp.take`.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if (row_axis is None or mesh.empty or row_axis not in mesh.axis_names
      or mesh.shape[row_axis] == 1):
    return jnp.take(table, rows, axis=0)
  shards = mesh.shape[row_axis]
  if table.shape[0] % shards:
    raise ValueError(f"table rows {table.shape[0]} do not divide over mesh axis "
                     f"{row_axis!r} of size {shards}; pad rows (pad_rows_to={shards})")
  flat = rows.reshape(-1)
  batch = _batch_axes(mesh, flat.shape[0])
  gather = row_axis in batch

  def local(table_block, ids):
    if gather:
      ids = jax.lax.all_gather(ids, row_axis, tiled=True)
    block = table_block.shape[0]
    offset = ids - jax.lax.axis_index(row_axis) * block
    inside = (offset >= 0) & (offset < block)
    out = jnp.take(table_block, jnp.where(inside, offset, 0), axis=0)
    out = jnp.where(inside[:, None], out, jnp.zeros((), out.dtype))
    if gather:
      return jax.lax.psum_scatter(out, row_axis, scatter_dimension=0, tiled=True)
    return jax.lax.psum(out, row_axis)

  spec = P(batch if batch else None)
  out = jax.shard_map(local, mesh=mesh, in_specs=(P(row_axis, None), spec),
                      out_specs=P(batch if batch else None, None))(table, flat)
  return out.reshape(rows.shape + (table.shape[1],))


# --- helpers --------------------------------------------------------------------------------

def _cards(cardinalities: Sequence[int]) -> np.ndarray:
  cards = np.asarray([int(c) for c in cardinalities], np.int64)
  if cards.ndim != 1 or cards.size == 0 or (cards < 1).any():
    raise ValueError(f"cardinalities must be a non-empty list of positive ints, "
                     f"got {list(cardinalities)}")
  return cards


def _per_feature(value: int | Sequence[int], n: int, name: str) -> np.ndarray:
  out = np.full(n, int(value), np.int64) if np.isscalar(value) else np.asarray(value, np.int64)
  if out.shape != (n,) or (out < 1).any():
    raise ValueError(f"{name} must be a positive int or {n} positive ints, got {value!r}")
  return out


def _padded(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _table(rngs: nnx.Rngs, rows: int, dim: int, std: float, dtype: Any) -> nnx.Param:
  init = nnx.with_partitioning(nnx.initializers.normal(std), (ROWS, DIM))
  return nnx.Param(init(rngs.params(), (rows, dim), dtype))


def check_ids(ids: Any, cardinalities: Sequence[int]) -> None:
  """ValueError unless host `ids` are `[B, F]` ints with feature f's ids in [0, card_f)."""
  ids = np.asarray(ids)
  cards = np.asarray(cardinalities)
  if ids.ndim != 2 or ids.shape[1] != cards.size or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"ids must be an int array [batch, {cards.size}], "
                     f"got {ids.dtype} {ids.shape}")
  bad = (ids < 0) | (ids >= cards[None, :])
  if bad.any():
    b, f = np.argwhere(bad)[0]
    raise ValueError(f"id {ids[b, f]} of feature {f} outside [0, {cards[f]})")


def _check_call(ids: Any, cards: np.ndarray) -> jax.Array:
  if not isinstance(ids, jax.core.Tracer):
    check_ids(np.asarray(ids), cards)
  elif ids.ndim != 2 or ids.shape[1] != cards.size:
    raise ValueError(f"ids must be [batch, {cards.size}], got {ids.shape}")
  return jnp.asarray(ids, jnp.int32)


def budget_rows(cardinalities: Sequence[int], budget: float) -> np.ndarray:
  """Per-feature rows for a fraction `budget` of the full tables' rows, by water-filling: every
  feature gets min(card, cap), with the largest cap whose total fits budget * sum(cards). Small
  features keep one row per id (hashing them would merge their few values for nothing); only
  the large ones are hashed."""
  if not 0 < budget <= 1:
    raise ValueError(f"budget must be in (0, 1], got {budget}")
  cards = _cards(cardinalities)
  total = budget * cards.sum()
  lo, hi = 1, int(cards.max())
  while lo < hi:  # largest cap with sum(min(cards, cap)) <= total
    mid = (lo + hi + 1) // 2
    if np.minimum(cards, mid).sum() <= total:
      lo = mid
    else:
      hi = mid - 1
  return np.minimum(cards, lo)


# --- tables ---------------------------------------------------------------------------------

class FullTables(nnx.Module):
  """One table per feature (stored as one row-concatenated array, feature f at its offset)."""

  def __init__(self, cardinalities: Sequence[int], dim: int, *, rngs: nnx.Rngs,
               row_axis: str | None = None, pad_rows_to: int = 8, std: float | None = None,
               dtype: Any = jnp.float32):
    self.cards = _cards(cardinalities)
    self.dim, self.row_axis = int(dim), row_axis
    self.offsets = np.concatenate([[0], np.cumsum(self.cards)[:-1]]).astype(np.int32)
    self.rows = int(self.cards.sum())
    std = dim ** -0.5 if std is None else std
    self.table = _table(rngs, _padded(self.rows, pad_rows_to), self.dim, std, dtype)

  @property
  def num_params(self) -> int:
    return self.rows * self.dim

  def __call__(self, ids: jax.Array) -> jax.Array:
    ids = _check_call(ids, self.cards)
    return take_rows(self.table[...], ids + self.offsets, self.row_axis)


class HashedTables(nnx.Module):
  """Per-feature hashed tables: feature f has `rows[f]` rows; its embedding is the sum of
  `num_hashes` rows picked by hashes salted by (feature, probe). Features that fit
  (card <= rows) are looked up directly with one probe (no collisions to pay for)."""

  def __init__(self, cardinalities: Sequence[int], dim: int, rows: int | Sequence[int], *,
               rngs: nnx.Rngs, num_hashes: int = 2, row_axis: str | None = None,
               pad_rows_to: int = 8, std: float | None = None, dtype: Any = jnp.float32):
    self.cards = _cards(cardinalities)
    n = self.cards.size
    self.sizes = np.minimum(_per_feature(rows, n, "rows"), self.cards)
    if num_hashes < 1:
      raise ValueError(f"num_hashes must be >= 1, got {num_hashes}")
    self.dim, self.num_hashes, self.row_axis = int(dim), int(num_hashes), row_axis
    self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int32)
    self.direct = self.sizes >= self.cards
    # probe weight [F, K]: directly indexed features use probe 0 only
    self.weights = np.ones((n, self.num_hashes), np.float32)
    self.weights[self.direct, 1:] = 0.0
    self.salts = (np.arange(n)[:, None] * 1009 + np.arange(self.num_hashes)[None, :]
                  ).astype(np.uint32)
    std = dim ** -0.5 / np.sqrt(self.num_hashes) if std is None else std
    self.table = _table(rngs, _padded(int(self.sizes.sum()), pad_rows_to), self.dim, std, dtype)

  @property
  def num_params(self) -> int:
    return int(self.sizes.sum()) * self.dim

  def row_ids(self, ids: jax.Array, xp: Any = jnp) -> Any:
    """[B, F, K] rows of the concatenated table."""
    hashed = hash_rows(ids[:, :, None], self.salts[None], self.sizes[None, :, None], xp)
    local = xp.where(self.direct[None, :, None], ids[:, :, None], hashed)
    return (local + self.offsets[None, :, None]).astype(xp.int32)

  def __call__(self, ids: jax.Array) -> jax.Array:
    ids = _check_call(ids, self.cards)
    emb = take_rows(self.table[...], self.row_ids(ids), self.row_axis)  # [B, F, K, D]
    return jnp.einsum("bfkd,fk->bfd", emb, self.weights)


class QRTables(nnx.Module):
  """Quotient-remainder tables (Shi et al. 2020): feature f with `buckets[f]` = m uses rows
  (id // m) of a quotient table and (id % m) of a remainder table, combined by elementwise
  multiplication ("mult", both D wide) or concatenation ("concat", D/2 each)."""

  def __init__(self, cardinalities: Sequence[int], dim: int, buckets: int | Sequence[int], *,
               rngs: nnx.Rngs, combine: str = "mult", row_axis: str | None = None,
               pad_rows_to: int = 8, std: float | None = None, dtype: Any = jnp.float32):
    self.cards = _cards(cardinalities)
    if combine not in ("mult", "concat"):
      raise ValueError(f"combine must be 'mult' or 'concat', got {combine!r}")
    if combine == "concat" and dim % 2:
      raise ValueError(f"combine='concat' needs an even dim, got {dim}")
    self.m = np.minimum(_per_feature(buckets, self.cards.size, "buckets"), self.cards)
    self.q = -(-self.cards // self.m)
    self.dim, self.combine, self.row_axis = int(dim), combine, row_axis
    self.q_offsets = np.concatenate([[0], np.cumsum(self.q)[:-1]]).astype(np.int32)
    self.r_offsets = np.concatenate([[0], np.cumsum(self.m)[:-1]]).astype(np.int32)
    width = self.dim if combine == "mult" else self.dim // 2
    std = dim ** -0.5 if std is None else std
    if combine == "mult":
      # the quotient table starts near 1 so a product starts near the remainder row
      init = nnx.with_partitioning(
          lambda key, shape, dt: 1.0 + 0.1 * jax.random.normal(key, shape, dt), (ROWS, DIM))
      self.q_table = nnx.Param(init(rngs.params(), (_padded(int(self.q.sum()), pad_rows_to),
                                                    width), dtype))
    else:
      self.q_table = _table(rngs, _padded(int(self.q.sum()), pad_rows_to), width, std, dtype)
    self.r_table = _table(rngs, _padded(int(self.m.sum()), pad_rows_to), width, std, dtype)

  @property
  def num_params(self) -> int:
    width = self.dim if self.combine == "mult" else self.dim // 2
    return int(self.q.sum() + self.m.sum()) * width

  def __call__(self, ids: jax.Array) -> jax.Array:
    ids = _check_call(ids, self.cards)
    qe = take_rows(self.q_table[...], ids // self.m + self.q_offsets, self.row_axis)
    re = take_rows(self.r_table[...], ids % self.m + self.r_offsets, self.row_axis)
    return qe * re if self.combine == "mult" else jnp.concatenate([qe, re], axis=-1)


class UnifiedTables(nnx.Module):
  """Unified Embedding (Coleman et al. 2023): ONE shared table of `rows` x (dim // max k) for
  all features; feature f's embedding concatenates `probes[f]` rows picked by hashes salted by
  (feature, probe), zero-padded to `dim` (multi-size embeddings by per-feature probes)."""

  def __init__(self, cardinalities: Sequence[int], dim: int, rows: int, *, rngs: nnx.Rngs,
               probes: int | Sequence[int] = 1, row_axis: str | None = None,
               pad_rows_to: int = 8, std: float | None = None, dtype: Any = jnp.float32):
    self.cards = _cards(cardinalities)
    n = self.cards.size
    self.probes = _per_feature(probes, n, "probes")
    self.max_probes = int(self.probes.max())
    if dim % self.max_probes:
      raise ValueError(f"dim {dim} must be a multiple of the largest probe count "
                       f"{self.max_probes}")
    if rows < 1:
      raise ValueError(f"rows must be >= 1, got {rows}")
    self.dim, self.rows, self.row_axis = int(dim), int(rows), row_axis
    self.width = self.dim // self.max_probes
    self.salts = (np.arange(n)[:, None] * 1009 + np.arange(self.max_probes)[None, :] + 7919
                  ).astype(np.uint32)
    # [F, K] 1 where feature f uses probe k
    self.used = (np.arange(self.max_probes)[None, :] < self.probes[:, None]).astype(np.float32)
    std = self.width ** -0.5 if std is None else std
    self.table = _table(rngs, _padded(self.rows, pad_rows_to), self.width, std, dtype)

  @property
  def num_params(self) -> int:
    return self.rows * self.width

  def row_ids(self, ids: jax.Array, xp: Any = jnp) -> Any:
    """[B, F, K] rows of the shared table."""
    return hash_rows(ids[:, :, None], self.salts[None], self.rows, xp)

  def __call__(self, ids: jax.Array) -> jax.Array:
    ids = _check_call(ids, self.cards)
    emb = take_rows(self.table[...], self.row_ids(ids), self.row_axis)  # [B, F, K, w]
    emb = emb * self.used[None, :, :, None]
    return emb.reshape(emb.shape[0], emb.shape[1], self.dim)


# --- OptEmbed -------------------------------------------------------------------------------

class RowMask(nnx.Variable):
  """A fixed (non-trainable) 0/1 mask over table rows (OptEmbed's retrain stage)."""


def _step_ste(x: jax.Array) -> jax.Array:
  """Unit step forward; gradient of a steep sigmoid backward (straight-through estimator)."""
  soft = jax.nn.sigmoid(10.0 * x)
  return (x > 0).astype(x.dtype) + soft - jax.lax.stop_gradient(soft)


class OptEmbedTables(nnx.Module):
  """OptEmbed (Lyu et al. 2022) over full per-feature tables.

  Row pruning: row r of field f survives while its importance (mean |e_r|) exceeds the field's
  learnable threshold t_f (`_step_ste`; `regularizer()` = sum exp(-t) pushes thresholds up).
  Supernet: `__call__(ids, dims)` keeps only the first `dims[f]` dimensions of field f
  (`sample_dims` draws them uniformly in [1, dim] per step); `search_dims` then picks per-field
  dims, and a model built with `dims=` and `keep_rows=` (the pruned rows, fixed) retrains.
  """

  def __init__(self, cardinalities: Sequence[int], dim: int, *, rngs: nnx.Rngs,
               dims: Sequence[int] | None = None, keep_rows: Any = None,
               threshold_init: float = 0.0, row_axis: str | None = None,
               pad_rows_to: int = 8, std: float | None = None, dtype: Any = jnp.float32):
    self.cards = _cards(cardinalities)
    n = self.cards.size
    self.dim, self.row_axis = int(dim), row_axis
    self.offsets = np.concatenate([[0], np.cumsum(self.cards)[:-1]]).astype(np.int32)
    self.rows = int(self.cards.sum())
    padded = _padded(self.rows, pad_rows_to)
    self.field_of_row = np.concatenate(
        [np.repeat(np.arange(n), self.cards), np.zeros(padded - self.rows, np.int64)]
    ).astype(np.int32)
    std = dim ** -0.5 if std is None else std
    self.table = _table(rngs, padded, self.dim, std, dtype)
    self.fixed_dims = None if dims is None else _per_feature(dims, n, "dims")
    if self.fixed_dims is not None and (self.fixed_dims > dim).any():
      raise ValueError(f"dims must be in [1, {dim}], got {list(self.fixed_dims)}")
    if keep_rows is None:
      self.thresholds = nnx.Param(jnp.full((n,), threshold_init, jnp.float32))
      self.keep_rows = None
    else:
      keep = np.asarray(keep_rows, np.float32).reshape(-1)
      if keep.shape != (self.rows,):
        raise ValueError(f"keep_rows must have {self.rows} entries, got {keep.shape}")
      self.thresholds = None
      self.keep_rows = RowMask(jnp.asarray(np.pad(keep, (0, padded - self.rows))))

  def importance(self) -> jax.Array:
    """[rows] mean |e| of every row."""
    return jnp.mean(jnp.abs(self.table[...]), axis=-1)

  def row_mask(self) -> jax.Array:
    """[rows] 0/1 (straight-through in the search stage; fixed in retrain)."""
    if self.keep_rows is not None:
      return self.keep_rows[...]
    return _step_ste(self.importance() - self.thresholds[...][self.field_of_row])

  def regularizer(self) -> jax.Array:
    """sum_f exp(-t_f): added to the loss (times a weight) so thresholds rise and rows prune."""
    if self.thresholds is None:
      return jnp.zeros((), jnp.float32)
    return jnp.sum(jnp.exp(-self.thresholds[...]))

  def kept_rows(self) -> np.ndarray:
    """[F] number of surviving rows per field (host)."""
    keep = np.asarray(jax.device_get(self.row_mask() > 0.5))[:self.rows]
    return np.bincount(self.field_of_row[:self.rows][keep], minlength=self.cards.size)

  def keep_mask(self) -> np.ndarray:
    """[sum(cards)] bool surviving rows (host), for the retrain model's `keep_rows`."""
    return np.asarray(jax.device_get(self.row_mask() > 0.5))[:self.rows]

  @property
  def num_params(self) -> int:
    """Stored parameters of the pruned, dimension-searched table (retrain) or of the full
    supernet (search stage)."""
    if self.keep_rows is None or self.fixed_dims is None:
      return self.rows * self.dim
    return int((self.kept_rows() * self.fixed_dims).sum())

  def __call__(self, ids: jax.Array, dims: jax.Array | None = None) -> jax.Array:
    ids = _check_call(ids, self.cards)
    rows = ids + self.offsets
    table = self.table[...]
    emb = take_rows(table, rows, self.row_axis)
    mask = take_rows(self.row_mask()[:, None], rows, self.row_axis)  # [B, F, 1]
    emb = emb * mask
    if dims is None:
      dims = self.fixed_dims
    if dims is not None:
      dims = jnp.asarray(dims, jnp.int32)
      emb = emb * (jnp.arange(self.dim)[None, :] < dims[:, None]).astype(emb.dtype)
    return emb


def sample_dims(key: jax.Array, num_fields: int, dim: int) -> jax.Array:
  """[F] int32 dims, each uniform in [1, dim] (OptEmbed's supernet sampling)."""
  return jax.random.randint(key, (num_fields,), 1, dim + 1, dtype=jnp.int32)


def search_dims(score: Callable[[np.ndarray], float], num_fields: int, dim: int, *,
                seed: int = 0, population: int = 16, generations: int = 4,
                keep: int = 4, mutate: float = 0.2,
                cost: Callable[[np.ndarray], float] | None = None,
                budget: float | None = None) -> tuple[np.ndarray, float]:
  """Evolutionary search over per-field dims in [1, dim]^F maximising `score(dims)`.

  Each generation keeps the `keep` best, refills by uniform crossover of two kept parents plus
  per-field mutation with probability `mutate`; candidates with `cost(dims) > budget` are
  shrunk field by field (largest dim first) until they fit. Returns (best dims, its score).
  """
  if population < 2 or not 1 <= keep <= population or generations < 1:
    raise ValueError(f"need population >= 2, 1 <= keep <= population, generations >= 1; got "
                     f"{population}, {keep}, {generations}")
  rng = np.random.default_rng(seed)

  def fit(d):
    if cost is None or budget is None:
      return d
    d = d.copy()
    while cost(d) > budget and (d > 1).any():
      d[np.argmax(d)] -= max(1, d.max() // 4)
      d = np.maximum(d, 1)
    return d

  pop = [fit(np.full(num_fields, dim, np.int64))]
  pop += [fit(rng.integers(1, dim + 1, num_fields)) for _ in range(population - 1)]
  scored = [(float(score(d)), d) for d in pop]
  for _ in range(generations - 1):
    scored.sort(key=lambda s: -s[0])
    parents = [d for _, d in scored[:keep]]
    children = []
    while len(children) < population - keep:
      a, b = rng.choice(len(parents), 2)
      child = np.where(rng.random(num_fields) < 0.5, parents[a], parents[b])
      flip = rng.random(num_fields) < mutate
      child = np.where(flip, rng.integers(1, dim + 1, num_fields), child)
      children.append(fit(child))
    scored = scored[:keep] + [(float(score(d)), d) for d in children]
  best = max(scored, key=lambda s: s[0])
  return best[1], best[0]
