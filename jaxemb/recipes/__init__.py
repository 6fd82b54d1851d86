"""Recipes: one module per kind of embedding model (see `jaxemb.recipes.base.Recipe`).

`config.recipe` names one: a module under `jaxemb/recipes/` ("text_pairs") or a dotted import
path of the user's own module ("mypkg.my_recipe"); the module's `RECIPE` attribute is the
`Recipe` subclass. A dotted path may also name the class itself ("mypkg.my_recipe.MyRecipe").
Look-up is explicit: nothing registers itself on import.
"""

from __future__ import annotations

import importlib
import pkgutil

from jaxemb.recipes.base import Recipe, TrainData, check_keys

__all__ = ["Recipe", "TrainData", "check_keys", "get", "builtin"]


def builtin() -> list[str]:
  """Names of the recipes shipped in `jaxemb/recipes/`."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def _import(path: str):
  try:
    return importlib.import_module(path)
  except ModuleNotFoundError as e:
    if e.name and (path == e.name or path.startswith(e.name + ".")):
      return None  # the module itself is missing (not one of its own imports)
    raise


def get(name: str) -> type[Recipe]:
  """The `Recipe` subclass named by `config.recipe`; ValueError listing the built-ins."""
  if not isinstance(name, str) or not name:
    raise ValueError(f"config.recipe must be a recipe name or dotted path, got {name!r}")
  found = _import(name if "." in name else f"jaxemb.recipes.{name}")
  if found is not None:
    found = getattr(found, "RECIPE", None)
    if found is None:
      raise ValueError(f"recipe module {name!r} defines no RECIPE (its Recipe subclass)")
  elif "." in name:
    module = _import(name.rpartition(".")[0])
    found = getattr(module, name.rpartition(".")[2], None) if module is not None else None
  if not (isinstance(found, type) and issubclass(found, Recipe)):
    raise ValueError(f"unknown recipe {name!r}: not a module under jaxemb/recipes/ "
                     f"({', '.join(builtin())}) nor an importable module or Recipe subclass")
  return found
