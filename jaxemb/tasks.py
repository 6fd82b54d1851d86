"""Evaluation tasks by name, in one table: `jaxemb eval --task NAME[:SPLIT]` and training
evaluators (`dict(task=NAME, split=...)`) look tasks up here.

Each entry is a module path whose `TASK` attribute is a `jaxemb.evaluate.registry.Task`;
modules are imported on use, so naming a task loads only its own code.
"""

from __future__ import annotations

import importlib

from jaxemb.evaluate.registry import Task

TASKS: dict[str, str] = {
    "stdlib_code_search": "jaxemb.data.code_search",
    "stdlib_modules": "jaxemb.data.stdlib_modules",  # long documents (up to ~4k tokens)
    "stdlib_test_continuation": "jaxemb.data.test_continuation",  # code -> code
    "passkey": "jaxemb.data.passkey",  # synthetic, split = document length in tokens
    "needle": "jaxemb.data.needle",
}


def list_tasks() -> list[str]:
  """Sorted names of the known tasks."""
  return sorted(TASKS)


def get(name: str) -> Task:
  """The task called `name`; ValueError listing the known tasks otherwise."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}")
  return importlib.import_module(TASKS[name]).TASK


def parse(spec: str, default_split: str = "test") -> tuple[Task, str]:
  """"stdlib_code_search:test" -> (that task, "test"); the split defaults to `default_split`."""
  name, _, split = str(spec).partition(":")
  return get(name), split or default_split


def evaluate(task: Task, split: str, embed_fn, data_dir: str | None = None) -> dict[str, float]:
  """`task`'s metrics of `embed_fn` on `split` (unprefixed names)."""
  return task.evaluate(embed_fn, task.load(split, data_dir))


def baseline(task: Task, name: str, split: str, data_dir: str | None = None) -> dict[str, float]:
  """Metrics of `task`'s model-free baseline `name` on `split`."""
  if name not in task.baselines:
    raise ValueError(f"task {task.name!r} has no baseline {name!r}; it has "
                     f"{sorted(task.baselines) or 'none'}")
  return task.baselines[name][1](task.load(split, data_dir))
