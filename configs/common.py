"""Shared pieces of every experiment config: the loop's keys with defaults and `parse_arg`.

A config file states only what differs:

    import common
    def get_config(arg=None):
      arg = common.parse_arg(arg, runlocal=False, size="base")   # "runlocal,size=small"
      c = common.base_config(recipe="text_pairs")
      c.model = dict(...); c.data = dict(...)
      ...

`jaxemb.train.config.load_config` puts this directory on `sys.path` while a config loads.
"""

import ml_collections


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
