"""The one evaluation mechanism: named evaluators and tasks, in tables filled in one place.

An evaluator is a callable `(embed_fn, data) -> Iterator[(metric_name, value)]`, where
`embed_fn(texts: list[str]) -> np.ndarray [N, D]`; configs and the CLI name them by string
(`get_evaluator("retrieval")`). A `Task` bundles how to load a split's data with how to evaluate
an `embed_fn` on it (and optional baselines that need no model); `jaxemb.tasks` holds the table
of tasks, `jaxemb eval` and the training recipes dispatch through it.

Logged metric names are `<split>/<metric>`, e.g. `test/mrr@10`; see `prefix_metrics`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

EmbedFn = Callable[[list[str]], np.ndarray]
Evaluator = Callable[[EmbedFn, Any], Iterator[tuple[str, float]]]

# name -> "module:function" (imported on first use) or the evaluator itself.
EVALUATORS: dict[str, str | Evaluator] = {
    "retrieval": "jaxemb.evaluate.retrieval:retrieval_evaluator",
    "sts": "jaxemb.evaluate.sts:sts_evaluator",
    "rankme": "jaxemb.evaluate.rank:rankme_evaluator",
    "pair_classification": "jaxemb.evaluate.classification:pair_classification_evaluator",
    "classification": "jaxemb.evaluate.classification:classification_evaluator",
    "clustering": "jaxemb.evaluate.clustering:clustering_evaluator",
    "quality": "jaxemb.evaluate.quality:quality_evaluator",
}


@dataclasses.dataclass(frozen=True)
class Task:
  """A named evaluation task.

  load: `(split, data_dir) -> data` (e.g. queries, corpus, relevance).
  evaluate: `(embed_fn, data) -> {metric: value}`.
  baselines: name -> (label for tables, `(data) -> {metric: value}`), methods without a model
    (e.g. BM25), logged under `<split>_<name>/<metric>`.
  """

  name: str
  load: Callable[[str, str | None], Any]
  evaluate: Callable[[EmbedFn, Any], dict[str, float]]
  baselines: Mapping[str, tuple[str, Callable[[Any], dict[str, float]]]] = dataclasses.field(
      default_factory=dict)


def _check_name(kind: str, name: str) -> None:
  if not isinstance(name, str) or not name:
    raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")


def resolve(entry: str | Callable) -> Any:
  """A table entry: the object itself, or the attribute a "module:attribute" string names."""
  if not isinstance(entry, str):
    return entry
  module, _, name = entry.partition(":")
  return getattr(importlib.import_module(module), name)


def register(name: str, fn: Evaluator) -> Evaluator:
  """Adds a user evaluator under `name` (an explicit call, never an import side effect)."""
  _check_name("evaluator", name)
  if name in EVALUATORS and resolve(EVALUATORS[name]) is not fn:
    raise ValueError(f"evaluator {name!r} is already registered to {EVALUATORS[name]!r}")
  EVALUATORS[name] = fn
  return fn


def get_evaluator(name: str) -> Evaluator:
  """The evaluator named `name`; ValueError listing the known names otherwise."""
  if name not in EVALUATORS:
    raise ValueError(f"unknown evaluator {name!r}; known evaluators: "
                     f"{', '.join(sorted(EVALUATORS))}")
  return resolve(EVALUATORS[name])


def list_evaluators() -> list[str]:
  """Sorted names of the known evaluators."""
  return sorted(EVALUATORS)


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
