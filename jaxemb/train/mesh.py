"""Device mesh and logical-axis sharding rules.

Parameters are tagged with logical names ("vocab", "embed", "mlp", ...); a small rule table maps
each logical name to a mesh axis (or None = replicated). The mesh has three axes:
  data   - pure data parallelism (batch split, parameters replicated)
  fsdp   - batch split *and* parameters/optimizer state sharded (ZeRO-3 style)
  tensor - model (tensor) parallelism inside layers
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch dimension is split over both

# logical name -> mesh axis. First match wins; names not listed are replicated.
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("qkv", "tensor"),
    ("latents", None),
    ("layers", None),
)


def mesh_shape(config: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) sizes; one axis may be -1 (= all remaining devices)."""
  unknown = sorted(set(config) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"unknown mesh axes {unknown}; expected a subset of {MESH_AXES}")
  sizes = [int(config.get(axis, 1)) for axis in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh axis sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
  if -1 in sizes:
    rest = int(np.prod([s for s in sizes if s != -1]))
    if num_devices % rest:
      raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} does not divide the "
                       f"{num_devices} devices")
    sizes[sizes.index(-1)] = num_devices // rest
  if int(np.prod(sizes)) != num_devices:
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} has {int(np.prod(sizes))} devices, "
                     f"but there are {num_devices}")
  return tuple(sizes)


def make_mesh(config: Mapping[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A ('data', 'fsdp', 'tensor') mesh; by default every device on 'data'."""
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(dict(config or {"data": -1}), len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_to_mesh(names: Sequence[str | None] | None,
                    rules: Sequence[tuple[str, str | None]] = DEFAULT_RULES) -> P:
  """PartitionSpec for logical axis names; a mesh axis is used at most once per array."""
  if names is None:
    return P()
  table: dict = {}
  for name, axis in rules:
    table.setdefault(name, axis)  # first match wins (dict(rules) would keep the last)
  used, spec = set(), []
  for name in names:
    axis = table.get(name) if name is not None else None
    if axis is not None and axis in used:
      axis = None  # e.g. ("embed", "embed"): shard only the first
    used.add(axis)
    spec.append(axis)
  return P(*spec)


def _fits(shape: tuple[int, ...], spec: P, mesh: jax.sharding.Mesh) -> P:
  """Drops mesh axes that do not divide the dimension they would shard (tiny test models)."""
  out = []
  for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    out.append(axis if axis is None or dim % mesh.shape[axis] == 0 else None)
  return P(*out)


def param_shardings(abstract_params: Any, logical_names: Any, mesh: jax.sharding.Mesh,
                    rules: Sequence[tuple[str, str | None]] = DEFAULT_RULES) -> Any:
  """NamedShardings for a params pytree from a matching pytree of logical-name tuples."""
  return jax.tree.map(
      lambda x, names: NamedSharding(mesh, _fits(x.shape, logical_to_mesh(names, rules), mesh)),
      abstract_params, logical_names,
      is_leaf=lambda n: n is None or (isinstance(n, tuple) and all(
          isinstance(e, (str, type(None))) for e in n)))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data and fsdp axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def unsharded_report(params: Any, top: int = 5) -> list[tuple[str, int]]:
  """The largest fully replicated parameters (name, elements): a startup coverage check."""
  rows = []
  for path, x in jax.tree_util.tree_leaves_with_path(params):
    if getattr(x, "sharding", None) is not None and x.sharding.is_fully_replicated and x.size > 1:
      rows.append((jax.tree_util.keystr(path), int(x.size)))
  return sorted(rows, key=lambda r: -r[1])[:top]
