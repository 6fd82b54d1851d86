"""TFDS builder: code -> code continuation pairs from the stdlib's test suite.

Built from the RUNNING interpreter's `test` package with `ast` (nothing is downloaded); the
config name is the Python version, as for `stdlib_code_search`.
"""

from __future__ import annotations

import sysconfig

import tensorflow_datasets as tfds

from jaxemb.data.builders.stdlib_code_search.stdlib_code_search_dataset_builder import (
    StdlibExamples, running_config)
from jaxemb.data.builders.stdlib_test_continuation import extract

_DESCRIPTION = """\
Code -> code retrieval pairs from the test suite (the `test` package) of the Python standard
library of the interpreter that built the dataset: one example per function or method of 6-60
non-blank lines (docstring removed); `query` is its first half of lines, `code` the second
half. Splits by test module (salted sha256, about 80/10/10). A package set disjoint from
stdlib_code_search's, which excludes test suites.

Source licence: the Python standard library, Copyright (c) Python Software Foundation,
distributed under the PSF License Agreement (https://docs.python.org/3/license.html).
"""

_TEXT_FEATURES = ("query", "code", "module", "qualname", "id", "python_version")


class StdlibTestContinuation(StdlibExamples, tfds.core.GeneratorBasedBuilder):
  """Function first half -> second half retrieval pairs from the running Python's test suite."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [running_config("test suite")]

  def _info(self) -> tfds.core.DatasetInfo:
    return self._stdlib_info(_DESCRIPTION, _TEXT_FEATURES, min_lines=extract.MIN_LINES,
                             max_lines=extract.MAX_LINES)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download: the source is the local stdlib
    self._check_python()
    return self._splits(extract.extract(sysconfig.get_paths()["stdlib"]), extract.split_of)
