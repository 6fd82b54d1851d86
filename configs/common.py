"""Shared pieces of every experiment config (re-exported from `jaxemb.train.config`).

A config file states only what differs:

    import common
    def get_config(arg=None):
      arg = common.parse_arg(arg, runlocal=False, size="base")   # ":runlocal,size=small"
      c = common.base_config(recipe="text_pairs")                # the loop's keys + defaults
      c.model = dict(...); c.data = dict(...)
      ...

`jaxemb.train.config.load_config` puts this directory on `sys.path` while a config loads.
"""

from jaxemb.train.config import base_config, parse_arg

__all__ = ["base_config", "parse_arg"]
