"""Orbax checkpoints: train state + data-iterator position, atomic, async, last-N + best.

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a checkpoint that looks valid. Restoring takes an abstract target carrying
the *current* shardings, so a checkpoint written on 8 devices restores onto 1 or 4.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class Checkpointer:
  """Saves and restores `{"state": pytree, "data": json}` per step under `workdir/checkpoints`.

  Args:
    workdir: the run directory.
    keep: how many of the latest checkpoints to keep.
    best_metric: also keep the checkpoint with the best value of this metric (when given).
    best_mode: "max" or "min" for `best_metric`.
    async_save: write in a background thread while training continues.
  """

  def __init__(self, workdir: str, *, keep: int = 3, best_metric: str | None = None,
               best_mode: str = "max", async_save: bool = True):
    if keep < 1:
      raise ValueError(f"keep must be >= 1, got {keep}")
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode={best_mode!r} is not 'max' or 'min'")
    keep_policies = [policies.LatestN(n=keep)]
    if best_metric:
      keep_policies.append(policies.BestN(
          get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min", n=1,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep_policies),
        enable_async_checkpointing=async_save, create=True)
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.best_metric, self.best_mode = best_metric, best_mode
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: Any, data_state: dict, metrics: dict | None = None) -> None:
    """Starts saving `state` and the data position at `step` (returns before the write ends)."""
    if self.best_metric and metrics is not None and self.best_metric not in metrics:
      metrics = None  # no evaluation at this step: kept only while among the latest
    items = {"state": ocp.args.StandardSave(state), "data": ocp.args.JsonSave(data_state)}
    if self.best_metric and metrics is not None:
      # Stored with the step (orbax keeps metrics in memory only), for `best_step`.
      items["best"] = ocp.args.JsonSave({self.best_metric: float(metrics[self.best_metric])})
    self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the best `best_metric` (waits for pending saves); None without a
    best metric or when no kept checkpoint has it. Ties go to the earliest step."""
    if not self.best_metric:
      return None
    self.wait()
    best = None
    for step in sorted(self._manager.all_steps()):
      if not os.path.isdir(os.path.join(self.directory, str(step), "best")):
        continue  # saved without the metric
      stored = self._manager.restore(step, args=ocp.args.Composite(best=ocp.args.JsonRestore()))
      if self.best_metric not in stored.best:
        continue
      value = float(stored.best[self.best_metric])
      if best is None or (value < best[0] if self.best_mode == "min" else value > best[0]):
        best = (value, step)
    return None if best is None else best[1]

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int] | None:
    """(state, data_state, step) of `step` (default: latest), or None when there is none.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with the target shardings.
    """
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore()))
    return restored.state, restored.data, step

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of arrays."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
