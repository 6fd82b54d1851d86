"""Experiment configs: `configs/<name>.py:get_config(arg)` plus `--config.key=value` overrides."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys

import ml_collections


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]` by calling its `get_config(arg)`."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist")
  module_spec = importlib.util.spec_from_file_location(
      f"jaxemb_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(module_spec)
  # Configs share pieces through `import common` (configs/common.py) beside them.
  sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
  try:
    module_spec.loader.exec_module(module)
  finally:
    sys.path.pop(0)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} has no get_config(arg) function")
  config = module.get_config(arg or None)
  config.config_spec = spec
  return config


def _parse_value(text: str, current):
  """Parses an override using the type of the value it replaces."""
  if isinstance(current, bool):
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"expected a boolean, got {text!r}")
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(value, bool) and not isinstance(current, bool) and current is not None:
    # bool is an int subclass: without this, `total_steps=True` would be accepted as 1.
    raise ValueError(f"expected {type(current).__name__}, got {text!r}")
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  if current is not None and not isinstance(value, type(current)):
    raise ValueError(f"expected {type(current).__name__}, got {text!r}")
  return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
  """Applies `key.sub=value` overrides in place; unknown keys raise ValueError naming them."""
  for item in overrides:
    key, sep, text = item.removeprefix("--config.").partition("=")
    if not sep:
      raise ValueError(f"override {item!r} is not of the form --config.key=value")
    node, parts = config, key.split(".")
    for part in parts[:-1]:
      if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
        raise ValueError(f"unknown config key {key!r} (no section {part!r})")
      node = node[part]
    if parts[-1] not in node:
      raise ValueError(f"unknown config key {key!r}; valid keys here: {sorted(node.keys())}")
    try:
      node[parts[-1]] = _parse_value(text, node[parts[-1]])
    except ValueError as e:
      raise ValueError(f"bad value for config key {key!r}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Building configs: the loop's defaults and `get_config(arg)` argument parsing.
# ---------------------------------------------------------------------------------------------

def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """`"runlocal,transformer,steps=10"` -> options over `defaults`.

  A bare word sets a boolean option to True (it must be a default's name); `key=value` sets
  an option of the default's type. Unknown words raise ValueError listing the valid ones.
  """
  options = dict(defaults)
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, text = item.partition("=")
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}; valid: {sorted(defaults)}")
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
      options[key] = True
    elif isinstance(default, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={text!r} is not a boolean")
      options[key] = text.lower() in ("true", "1")
    else:
      try:
        options[key] = type(default)(text)
      except ValueError:
        raise ValueError(f"config argument {key}={text!r} is not a "
                         f"{type(default).__name__}") from None
  return ml_collections.ConfigDict(options)


def base_config(recipe: str) -> ml_collections.ConfigDict:
  """The loop's own keys with their defaults; the recipe adds its sections."""
  c = ml_collections.ConfigDict()
  c.recipe = recipe
  c.seed = 0
  c.optim = dict(lr=1e-3, warmup_steps=0, decay="cosine", end_factor=0.0, weight_decay=0.01,
                 b1=0.9, b2=0.999, eps=1e-8, clip_norm=1.0)
  c.mesh = dict(data=-1, fsdp=1, tensor=1)
  c.logical_axis_rules = ()
  c.batch_size = 32
  c.microbatches = 1
  c.total_steps = 100
  c.stop_at_step = 0  # >0: end after this step with a checkpoint (schedule unchanged)
  c.log_every = 10
  c.checkpoint_every = 50
  c.keep_checkpoints = 2
  c.best_metric = ""
  c.best_mode = "max"
  c.async_checkpoint = True
  c.nonfinite = "skip"  # or "stop"
  c.eval_every = 0
  c.evaluators = []
  c.final_evaluators = []
  c.export = False
  c.progress = True
  return c
