"""TFDS builder: module search pairs (module docstring -> module source) from the stdlib.

Built from the RUNNING interpreter's standard library with `ast` (nothing is downloaded);
the config name is the Python version, as for `stdlib_code_search`.
"""

from __future__ import annotations

import sysconfig

import tensorflow_datasets as tfds

from jaxemb.data.builders.stdlib_code_search.stdlib_code_search_dataset_builder import (
    StdlibExamples, running_config)
from jaxemb.data.builders.stdlib_modules import extract

_DESCRIPTION = """\
Long-document retrieval pairs from the Python standard library of the interpreter that built
the dataset: one example per module with a docstring; `query` is the module docstring
(whitespace collapsed), `code` the module source without it, cut at 14,000 characters (about
4k tokens). Splits by top-level package exactly as stdlib_code_search (frozen test packages).

Source licence: the Python standard library, Copyright (c) Python Software Foundation,
distributed under the PSF License Agreement (https://docs.python.org/3/license.html).
"""

_TEXT_FEATURES = ("query", "code", "module", "id", "python_version")


class StdlibModules(StdlibExamples, tfds.core.GeneratorBasedBuilder):
  """Module docstring -> module source retrieval pairs from the running Python's stdlib."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [running_config()]

  def _info(self) -> tfds.core.DatasetInfo:
    return self._stdlib_info(_DESCRIPTION, _TEXT_FEATURES, max_code_chars=extract.MAX_CODE_CHARS)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download: the source is the local stdlib
    self._check_python()
    return self._splits(extract.extract(sysconfig.get_paths()["stdlib"]), extract.split_of)
