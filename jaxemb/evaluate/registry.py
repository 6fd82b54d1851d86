"""String registries of evaluators and evaluation tasks.

An evaluator is a callable `(embed_fn, data) -> Iterator[(metric_name, value)]`, where
`embed_fn(texts: list[str]) -> np.ndarray [N, D]`. Configs name evaluators by string
(`@register("retrieval")`, `get_evaluator("retrieval")`), as big_vision does. A task is a named
loader returning the `data` an evaluator consumes; datasets register themselves with
`register_task` (e.g. "stdlib_code_search").

Logged metric names are `<split>/<metric>`, e.g. `test/mrr@10`; see `prefix_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

EmbedFn = Callable[[list[str]], np.ndarray]
Evaluator = Callable[[EmbedFn, Any], Iterator[tuple[str, float]]]
TaskLoader = Callable[..., Any]

_EVALUATORS: dict[str, Evaluator] = {}
_TASKS: dict[str, TaskLoader] = {}


def _check_name(kind: str, name: str) -> None:
  if not isinstance(name, str) or not name:
    raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")


def _add(table: dict[str, Callable], kind: str, name: str, fn: Callable) -> None:
  _check_name(kind, name)
  # Re-registering the same object is harmless (e.g. a module reloaded in a notebook).
  if name in table and table[name] is not fn:
    raise ValueError(f"{kind} {name!r} is already registered to {table[name]!r}")
  table[name] = fn


def _lookup(table: dict[str, Callable], kind: str, name: str) -> Callable:
  if name not in table:
    known = ", ".join(sorted(table)) or "(none)"
    raise ValueError(f"unknown {kind} {name!r}; registered {kind}s: {known}")
  return table[name]


def register(name: str) -> Callable[[Evaluator], Evaluator]:
  """Decorator registering an evaluator under `name`; returns the evaluator unchanged."""
  _check_name("evaluator", name)

  def decorator(fn: Evaluator) -> Evaluator:
    _add(_EVALUATORS, "evaluator", name, fn)
    return fn

  return decorator


def get_evaluator(name: str) -> Evaluator:
  """The evaluator registered as `name`; ValueError listing the registered names otherwise."""
  return _lookup(_EVALUATORS, "evaluator", name)


def list_evaluators() -> list[str]:
  """Sorted names of the registered evaluators."""
  return sorted(_EVALUATORS)


def register_task(name: str, loader: TaskLoader) -> TaskLoader:
  """Registers `loader` (returns an evaluator's `data`) as task `name`; returns `loader`."""
  _add(_TASKS, "task", name, loader)
  return loader


def get_task(name: str) -> TaskLoader:
  """The loader of task `name`; ValueError listing the registered tasks otherwise."""
  return _lookup(_TASKS, "task", name)


def list_tasks() -> list[str]:
  """Sorted names of the registered tasks."""
  return sorted(_TASKS)


def prefix_metrics(
    split: str, metrics: Mapping[str, float] | Iterable[tuple[str, float]]
) -> dict[str, float]:
  """`{f"{split}/{name}": value}`: the names under which metrics are logged."""
  _check_name("split", split)
  items = metrics.items() if isinstance(metrics, Mapping) else metrics
  return {f"{split}/{name}": value for name, value in items}


def require_fields(evaluator: str, data: Any, fields: tuple[str, ...]) -> tuple[Any, ...]:
  """`data[f]` for each field, or a ValueError naming the evaluator and the missing fields."""
  if not isinstance(data, Mapping):
    raise ValueError(
        f"evaluator {evaluator!r} expects a mapping with fields {list(fields)}, "
        f"got {type(data).__name__}"
    )
  missing = [f for f in fields if f not in data]
  if missing:
    raise ValueError(
        f"evaluator {evaluator!r} data lacks fields {missing}; has {sorted(data)}, "
        f"expected {list(fields)}"
    )
  return tuple(data[f] for f in fields)
