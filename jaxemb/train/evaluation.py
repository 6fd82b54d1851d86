"""Evaluation during training: `config.evaluators` -> `evaluate(embedder, step) -> metrics`."""

from __future__ import annotations

from typing import Any, Callable

# name -> factory(options: dict, pretrained) -> evaluate(embedder, step) -> {name: value}
EVAL_HOOKS: dict[str, Callable[..., Callable]] = {}


def register_eval_hook(name: str, factory: Callable[..., Callable]) -> None:
  EVAL_HOOKS[name] = factory


def make_evaluator(specs, pretrained=None) -> Callable[[Any, int], dict] | None:
  """Combines evaluator specs ({"name": ..., **options}) into one callable (None if none)."""
  import jaxemb.data.code_search  # noqa: F401  (registers the built-in task's hooks)
  specs = list(specs or [])
  if not specs:
    return None
  hooks = []
  for spec in specs:
    spec = dict(spec)
    name = spec.pop("name", None)  # a spec without a name gets the listing, not a KeyError
    if name not in EVAL_HOOKS:
      raise ValueError(f"unknown evaluator {name!r}; available: {sorted(EVAL_HOOKS)}")
    hooks.append(EVAL_HOOKS[name](spec, pretrained))

  def evaluate(embedder, step: int) -> dict:
    out = {}
    for hook in hooks:
      out.update(hook(embedder, step))
    return out

  return evaluate
