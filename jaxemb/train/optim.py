"""Optimiser: AdamW with warm-up + cosine/linear decay, global-norm clipping, masked decay."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

# Parameters whose last path element is one of these get no weight decay (norms and biases).
_NO_DECAY = ("bias", "scale")


def learning_rate_schedule(lr: float, total_steps: int, warmup_steps: int = 0,
                           decay: str = "cosine", end_factor: float = 0.0) -> optax.Schedule:
  """Linear warm-up to `lr`, then `decay` ("cosine", "linear" or "constant") to lr*end_factor."""
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}")
  if not 0 <= warmup_steps <= total_steps:
    raise ValueError(f"warmup_steps={warmup_steps} must be in [0, total_steps={total_steps}]")
  decay_steps = max(total_steps - warmup_steps, 1)
  if decay == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end_factor)
  elif decay == "linear":
    main = optax.linear_schedule(lr, lr * end_factor, decay_steps)
  elif decay == "constant":
    main = optax.constant_schedule(lr)
  else:
    raise ValueError(f"decay={decay!r} is not one of ('cosine', 'linear', 'constant')")
  if warmup_steps == 0:
    return main
  warmup = optax.linear_schedule(0.0, lr, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay: everything but biases and norm scales."""
  def keep(path, _):
    last = path[-1]
    name = getattr(last, "key", getattr(last, "name", None))
    return name not in _NO_DECAY
  return jax.tree_util.tree_map_with_path(keep, params)


def path_name(path) -> str:
  """A tree path as "model/encoder/embeddings/position/embedding" (dict keys and indices)."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def zero_updates(frozen: Callable[[str], bool]) -> optax.GradientTransformation:
  """Sets to zero the updates of every parameter whose `path_name` is `frozen` (as
  `optax.set_to_zero` on those leaves). Not optax.masked / multi_transform: the loop shards the
  optimiser state like the params, which their MaskedNode leaves break; the cost is the
  moments of the frozen parameters."""
  def update(updates, state, params=None):
    del params
    return jax.tree_util.tree_map_with_path(
        lambda path, u: jnp.zeros_like(u) if frozen(path_name(path)) else u, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config: Mapping[str, Any], total_steps: int) -> tuple[
    optax.GradientTransformation, optax.Schedule]:
  """AdamW per `config` (lr, warmup_steps, decay, end_factor, weight_decay, b1, b2, eps,
  clip_norm, trainable); returns the transformation and its learning-rate schedule.

  `trainable`: path prefixes (`path_name` of the {"model", "extra"} params, e.g.
  "model/encoder/embeddings/position") of the only parameters that move; the others' updates
  are zero (after AdamW, so weight decay does not move them either)."""
  schedule = learning_rate_schedule(config["lr"], total_steps, config.get("warmup_steps", 0),
                                    config.get("decay", "cosine"), config.get("end_factor", 0.0))
  parts = []
  if config.get("clip_norm"):
    parts.append(optax.clip_by_global_norm(config["clip_norm"]))
  parts.append(optax.adamw(schedule, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999),
                           eps=config.get("eps", 1e-8),
                           weight_decay=config.get("weight_decay", 0.0), mask=decay_mask))
  trainable = tuple(config.get("trainable") or ())
  if trainable:
    parts.append(zero_updates(lambda name: not name.startswith(trainable)))
  return optax.chain(*parts), schedule
