"""Input pipeline: a random-access source -> shuffled global batches placed on the mesh.

Every process walks the same seeded order of *global* batches (a grain `MapDataset`, shuffled
per epoch, read by index) and materialises only its own rows, so the data a step sees does not
depend on the number of processes or devices, and the iterator position restores exactly.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Iterator

import grain
import jax
import numpy as np


class GlobalBatches:
  """Iterator of global batches as sharded `jax.Array`s, resumable via `get_state/set_state`.

  Args:
    source: random-access source of examples (dicts of equal-shape numpy arrays), or a grain
      `MapDataset`.
    global_batch_size: rows per step over all processes.
    seed: shuffle seed; each epoch is reshuffled.
    sharding: where batches go (leading dimension split over the batch mesh axes).
    transform: optional `(batch, index) -> batch` applied to the process-local numpy rows of
      global batch `index` (e.g. tokenisation, padding, sampling seeded by the index), before
      they are placed on devices.
    shuffle: read the source in a seeded shuffled order (else in order).
    prefetch: batches prepared ahead on a background thread (0: on the caller's thread). The
      saved position is that of the next batch to be *consumed*, so resume stays exact.
  """

  def __init__(self, source, global_batch_size: int, *, seed: int,
               sharding: jax.sharding.NamedSharding,
               transform: Callable[[dict, int], dict] | None = None, shuffle: bool = True,
               prefetch: int = 0):
    if prefetch < 0:
      raise ValueError(f"prefetch must be >= 0, got {prefetch}")
    n_proc, proc = jax.process_count(), jax.process_index()
    if global_batch_size % n_proc:
      raise ValueError(f"global batch {global_batch_size} is not divisible by the "
                       f"{n_proc} processes")
    if len(source) < global_batch_size:
      raise ValueError(f"dataset has {len(source)} examples, fewer than one batch of "
                       f"{global_batch_size}")
    local = global_batch_size // n_proc
    self._local_offsets = range(proc * local, (proc + 1) * local)
    ds = source if isinstance(source, grain.MapDataset) else grain.MapDataset.source(source)
    if shuffle:
      ds = ds.shuffle(seed=seed)  # a keyed permutation, reshuffled every epoch after repeat()
    self._examples = ds.repeat()
    self._next_batch = 0
    self._sharding = sharding
    self._transform = transform
    self.global_batch_size = global_batch_size
    self._prefetch = prefetch
    self._pending: dict[int, concurrent.futures.Future] = {}
    # One worker: batches are prepared in order, and tokenisers release the GIL while they run.
    self._pool = concurrent.futures.ThreadPoolExecutor(1) if prefetch else None

  def local_batch(self, index: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch `index` (random access: only those are read)."""
    first = index * self.global_batch_size
    rows = [self._examples[first + offset] for offset in self._local_offsets]
    batch = {k: np.stack([row[k] for row in rows]) for k in rows[0]}
    return self._transform(batch, index) if self._transform is not None else batch

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self

  def _host_batch(self, index: int) -> dict[str, np.ndarray]:
    if self._pool is None:
      return self.local_batch(index)
    for ahead in range(index, index + self._prefetch + 1):
      if ahead not in self._pending:
        self._pending[ahead] = self._pool.submit(self.local_batch, ahead)
    return self._pending.pop(index).result()

  def __next__(self) -> dict[str, jax.Array]:
    batch = self._host_batch(self._next_batch)
    self._next_batch += 1
    return {k: jax.make_array_from_process_local_data(self._sharding, v)
            for k, v in batch.items()}

  def get_state(self) -> dict[str, Any]:
    """JSON-serialisable position, saved with every checkpoint."""
    return {"next_batch": self._next_batch}

  def set_state(self, state: dict[str, Any]) -> None:
    self._drop_pending()
    self._next_batch = int(state["next_batch"])

  def _drop_pending(self) -> None:
    for future in self._pending.values():
      future.cancel()
    concurrent.futures.wait(list(self._pending.values()))
    self._pending.clear()

  def close(self) -> None:
    """Stops the prefetch worker (batches prepared ahead are dropped)."""
    if self._pool is not None:
      self._drop_pending()
      self._pool.shutdown(wait=True)
      self._pool = None


class ShuffledChunks:
  """Rows of a small-example array served `chunk` at a time, reshuffled every epoch.

  The examples form an endless stream: epoch e is `rows[permutation(seed, e)]`, epochs back to
  back (a chunk may straddle two epochs; no example is dropped or repeated within an epoch).
  Item j is `{key: int32 [chunk, width]}`, stream positions [j*chunk, (j+1)*chunk): a pure
  function of (seed, j), so training resumes exactly and does not depend on the number of
  devices. Reading a step as a few items of many examples keeps the input pipeline's per-item
  cost off tiny-example workloads (edges, triples). `len()` covers `epochs` epochs (rounded up).
  """

  def __init__(self, rows: np.ndarray, chunk: int, *, seed: int, key: str, width: int,
               epochs: int = 1000):
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != width or not len(rows):
      raise ValueError(f"{key} rows must be a non-empty [N, {width}] array, got {rows.shape}")
    if chunk < 1:
      raise ValueError(f"chunk must be >= 1, got {chunk}")
    self._rows = rows.astype(np.int32)
    self._chunk, self._seed, self._key = int(chunk), int(seed), key
    self._len = -(-len(rows) * int(epochs) // self._chunk)
    self._perms: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return self._len

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perms:
      if len(self._perms) > 4:
        self._perms.clear()
      self._perms[epoch] = np.random.default_rng([self._seed, epoch]).permutation(
          len(self._rows))
    return self._perms[epoch]

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self._len:
      raise IndexError(f"item {index} out of range [0, {self._len})")
    n = len(self._rows)
    pos = np.arange(index * self._chunk, (index + 1) * self._chunk)
    epochs = pos // n
    out = np.empty((self._chunk, self._rows.shape[1]), np.int32)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      out[sel] = self._rows[self._perm(int(epoch))[pos[sel] % n]]
    return {self._key: out}

