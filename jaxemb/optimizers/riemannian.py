"""Riemannian SGD and Riemannian Adam as optax transformations, and a splitter that applies
them to manifold parameters and ordinary optax to the rest.

Each transformation needs `params` in `update` (the current points) and returns
`updates = new_point - point`, so `optax.apply_updates` lands on the Riemannian step (up to
one rounding; recipes project back onto the manifold after every update anyway). The update
rules follow geoopt 0.5.1 (`geoopt.optim.RiemannianSGD`, `RiemannianAdam`) exactly, so the
stored geoopt reference in `tests/data/geoopt_*` can check them step by step:

    SGD:   g = egrad2rgrad(x, ∇ + wd x);  buf = μ buf + (1-dampening) g;  x ← R_x(-lr buf);
           buf ← transport(x → x_new, buf)
    Adam:  g = egrad2rgrad(x, ∇ + wd x);  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) ⟨g, g⟩_x;
           x ← R_x(-lr (m/(1-β1^t)) / (√(v/(1-β2^t)) + eps));  m ← transport(x → x_new, m)

R is the retraction ("retr": project(x + u), geoopt's default, also Nickel & Kiela's RSGD) or
the exponential map ("exp"). Points are rows on the last axis (a [N, D] table is N points).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxemb.geometry import poincare

ScalarOrSchedule = float | optax.Schedule


@dataclasses.dataclass(frozen=True)
class PoincareBall:
  """The Poincaré ball of curvature -c as seen by the optimisers.

  eps: projection margin (None: `poincare.margin(dtype)`), applied after every step.
  """

  c: float = 1.0
  eps: float | None = None

  def __post_init__(self):
    if not self.c > 0:
      raise ValueError(f"PoincareBall curvature c must be > 0, got {self.c!r}")

  def egrad2rgrad(self, x, g):
    return poincare.egrad2rgrad(x, g, self.c)

  def inner(self, x, u):
    """⟨u, u⟩_x per point, keeping the last axis (size 1)."""
    return poincare.inner(x, u, c=self.c, keepdims=True)

  def retr(self, x, u):
    return poincare.project(x + u, self.c, self.eps)

  def expmap(self, x, u):
    return poincare.project(poincare.expmap(x, u, self.c), self.c, self.eps)

  def transp(self, x, y, v):
    return poincare.transp(x, y, v, self.c)

  def projx(self, x):
    return poincare.project(x, self.c, self.eps)


@dataclasses.dataclass(frozen=True)
class Euclidean:
  """Flat space: the Riemannian optimisers reduce to plain SGD / Adam with a per-row
  second moment."""

  def egrad2rgrad(self, x, g):
    return g

  def inner(self, x, u):
    return jnp.sum(u * u, axis=-1, keepdims=True)

  def retr(self, x, u):
    return x + u

  expmap = retr

  def transp(self, x, y, v):
    return v

  def projx(self, x):
    return x


def _lr(learning_rate: ScalarOrSchedule, count):
  return learning_rate(count) if callable(learning_rate) else learning_rate


def _step_fn(manifold, retraction: str):
  if retraction == "retr":
    return manifold.retr
  if retraction == "exp":
    return manifold.expmap
  raise ValueError(f"retraction must be 'retr' or 'exp', got {retraction!r}")


def _check(params, name):
  if params is None:
    raise ValueError(f"{name}.update needs params (the current manifold points)")


class RSGDState(NamedTuple):
  count: jax.Array
  momentum: Any  # pytree like params, or None without momentum


def riemannian_sgd(learning_rate: ScalarOrSchedule, manifold: Any = PoincareBall(),
                   momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                   nesterov: bool = False,
                   retraction: str = "retr") -> optax.GradientTransformation:
  """Riemannian SGD (Bonnabel 2013) as geoopt's `RiemannianSGD`.

  Args:
    learning_rate: a float or an optax schedule of the step count.
    manifold: `PoincareBall(c)`, `Euclidean()` or any object with the same methods.
    momentum, dampening, nesterov, weight_decay: as `torch.optim.SGD`. Like geoopt, the
      momentum buffer starts as the first raw gradient.
    retraction: "retr" (project(x + u)) or "exp" (exponential map); both project onto
      the manifold, so geoopt's `stabilize` option has nothing left to do.
  """
  if not 0 <= momentum < 1:
    raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
  if nesterov and (momentum <= 0 or dampening != 0):
    raise ValueError("nesterov needs momentum > 0 and dampening 0 (as torch.optim.SGD)")
  move = _step_fn(manifold, retraction)

  def init(params):
    buf = jax.tree.map(jnp.zeros_like, params) if momentum > 0 else None
    return RSGDState(count=jnp.zeros([], jnp.int32), momentum=buf)

  def update(grads, state, params=None):
    _check(params, "riemannian_sgd")
    lr = _lr(learning_rate, state.count)
    first = state.count == 0

    def leaf(g, x, buf):
      raw = g
      g = manifold.egrad2rgrad(x, g + weight_decay * x)
      if momentum > 0:
        buf = jnp.where(first, raw, buf) * momentum + (1 - dampening) * g
        direction = g + momentum * buf if nesterov else buf
        new = move(x, -lr * direction)
        buf = manifold.transp(x, new, buf)
      else:
        new = move(x, -lr * g)
      return new - x, buf

    gs, treedef = jax.tree.flatten(grads)
    xs = treedef.flatten_up_to(params)
    bufs = treedef.flatten_up_to(state.momentum) if momentum > 0 else [None] * len(gs)
    out = [leaf(g, x, b) for g, x, b in zip(gs, xs, bufs)]
    updates = treedef.unflatten([u for u, _ in out])
    new_buf = treedef.unflatten([b for _, b in out]) if momentum > 0 else None
    return updates, RSGDState(count=state.count + 1, momentum=new_buf)

  return optax.GradientTransformation(init, update)


class RAdamState(NamedTuple):
  count: jax.Array
  exp_avg: Any
  exp_avg_sq: Any  # per point: [..., 1]
  max_exp_avg_sq: Any  # amsgrad only, else None


def riemannian_adam(learning_rate: ScalarOrSchedule, manifold: Any = PoincareBall(),
                    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                    weight_decay: float = 0.0, amsgrad: bool = False,
                    retraction: str = "retr") -> optax.GradientTransformation:
  """Riemannian Adam (Bécigneul & Ganea 2019) as geoopt's `RiemannianAdam`.

  The second moment is the manifold inner product ⟨g, g⟩_x of each point (one number per
  point, not per coordinate); the first moment is parallel-transported along each step.
  """
  if not (0 <= b1 < 1 and 0 <= b2 < 1):
    raise ValueError(f"betas must be in [0, 1), got b1={b1!r}, b2={b2!r}")
  move = _step_fn(manifold, retraction)

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    sq = jax.tree.map(lambda p: jnp.zeros(p.shape[:-1] + (1,), p.dtype), params)
    return RAdamState(jnp.zeros([], jnp.int32), zeros, sq, sq if amsgrad else None)

  def update(grads, state, params=None):
    _check(params, "riemannian_adam")
    lr = _lr(learning_rate, state.count)

    def leaf(g, x, m, v, vmax):
      t = (state.count + 1).astype(x.dtype)
      g = manifold.egrad2rgrad(x, g + weight_decay * x)
      m = b1 * m + (1 - b1) * g
      v = b2 * v + (1 - b2) * manifold.inner(x, g)
      if amsgrad:
        vmax = jnp.maximum(vmax, v)
      denom = jnp.sqrt((vmax if amsgrad else v) / (1 - b2 ** t)) + eps
      direction = m / (1 - b1 ** t) / denom
      new = move(x, -lr * direction)
      return new - x, manifold.transp(x, new, m), v, vmax

    gs, treedef = jax.tree.flatten(grads)
    flat = lambda tree: treedef.flatten_up_to(tree)  # noqa: E731
    vmaxes = flat(state.max_exp_avg_sq) if amsgrad else [None] * len(gs)
    out = [leaf(*a) for a in zip(gs, flat(params), flat(state.exp_avg), flat(state.exp_avg_sq),
                                 vmaxes)]
    pick = lambda i: treedef.unflatten([o[i] for o in out])  # noqa: E731
    return pick(0), RAdamState(state.count + 1, pick(1), pick(2),
                               pick(3) if amsgrad else None)

  return optax.GradientTransformation(init, update)


def path_has(*names: str) -> Callable[[tuple, Any], bool]:
  """A label predicate: True for params whose key path contains one of `names`."""
  wanted = set(names)

  def predicate(path, _leaf) -> bool:
    keys = {str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path}
    return bool(keys & wanted)

  return predicate


def manifold_labels(params: Any, is_manifold: Callable[[tuple, Any], bool]) -> Any:
  """The pytree of "manifold" / "euclidean" labels that `partition` gives multi_transform."""
  return jax.tree_util.tree_map_with_path(
      lambda p, x: "manifold" if is_manifold(p, x) else "euclidean", params)


def partition(manifold_tx: optax.GradientTransformation,
              euclidean_tx: optax.GradientTransformation,
              is_manifold: Callable[[tuple, Any], bool]) -> optax.GradientTransformation:
  """`manifold_tx` for the params `is_manifold(path, leaf)` marks, `euclidean_tx` for the rest.

      tx = partition(riemannian_sgd(0.3), optax.adamw(1e-3), path_has("points"))
  """
  return optax.multi_transform({"manifold": manifold_tx, "euclidean": euclidean_tx},
                               lambda params: manifold_labels(params, is_manifold))


__all__ = [
    "Euclidean", "PoincareBall", "RAdamState", "RSGDState", "manifold_labels", "partition",
    "path_has", "riemannian_adam", "riemannian_sgd",
]
