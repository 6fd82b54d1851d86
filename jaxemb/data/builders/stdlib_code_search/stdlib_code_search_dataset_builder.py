"""TFDS builder: code search pairs (docstring -> function) from the Python stdlib.

The corpus is built from the RUNNING interpreter's standard-library source with `ast`
(nothing is downloaded), so its content depends on the Python version. That version is
the builder config name (`py3_11_7`), is stored in the dataset metadata and in every
example's `python_version` feature; datasets from different interpreters therefore
live in different directories and never mix.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import re
import sysconfig
from collections.abc import Callable, Iterator, Sequence

import tensorflow_datasets as tfds

from jaxemb.data.builders.stdlib_code_search import extract

_DESCRIPTION = """\
Code search pairs mined from the Python standard library of the interpreter that built
the dataset (see the `python_version` feature and metadata). One example per function
or method with a docstring: `query` is the docstring's first paragraph (whitespace
collapsed) and `code` the function's source (decorators, signature and body) with the
docstring removed. Test suites, site-packages and functions nested inside functions
are excluded; trivial docstrings (< 3 words, TODO/XXX/FIXME/Docstring), stub bodies
(pass, ..., raise NotImplementedError) and exact duplicate code are dropped.

Splits are by top-level package (e.g. all of `email.*` together), about 80/10/10 by
example count: test is the frozen list `TEST_PACKAGES`, train/validation a sha256
hash of the package name, so no package straddles two splits.

Source licence: the Python standard library, Copyright (c) Python Software Foundation,
distributed under the PSF License Agreement (https://docs.python.org/3/license.html).
"""

_CITATION = """\
@misc{python_stdlib,
  author = {{Python Software Foundation}},
  title = {The Python Standard Library},
  howpublished = {\\url{https://docs.python.org/3/library/}},
  note = {Source of the jaxemb stdlib_code_search dataset; PSF License},
}
"""

_LICENSE = (
    "Python standard library source, Copyright (c) Python Software Foundation; "
    "PSF License Agreement, https://docs.python.org/3/license.html")

_TEXT_FEATURES = ("query", "code", "module", "qualname", "id", "python_version")


def config_name(python_version: str) -> str:
  """`3.11.7` -> `py3_11_7` (`3.13.0rc1` -> `py3_13_0rc1`)."""
  if not re.fullmatch(r"\d+\.\d+\.\d+\S*", python_version):
    raise ValueError(
        f"python_version must look like '3.11.7', got {python_version!r}")
  return "py" + re.sub(r"[^0-9A-Za-z]+", "_", python_version)


@dataclasses.dataclass(eq=False)
class StdlibCodeSearchConfig(tfds.core.BuilderConfig):
  """One config per interpreter: the corpus is a function of its stdlib."""
  python_version: str = ""


def running_config(source: str = "standard library") -> StdlibCodeSearchConfig:
  """The one config of a builder mined from this interpreter's `source`: only the running
  Python's stdlib can be read."""
  version = platform.python_version()
  return StdlibCodeSearchConfig(
      name=config_name(version),
      python_version=version,
      description=f"Built from the CPython {version} {source}.",
  )


class StdlibExamples:
  """Mixin of the builders whose examples are mined from the running interpreter's stdlib:
  its config names the Python version, every example has an "id" and gets a
  "python_version" feature, and the splits are "train", "validation" and "test"."""

  def _stdlib_info(self, description: str, features: Sequence[str],
                   **metadata) -> tfds.core.DatasetInfo:
    """DatasetInfo of text `features` mined from the stdlib (its citation and PSF license),
    with the Python version in `metadata`."""
    return tfds.core.DatasetInfo(
        builder=self, description=description,  # type: ignore[arg-type]
        features=tfds.features.FeaturesDict({name: tfds.features.Text() for name in features}),
        supervised_keys=None, homepage="https://docs.python.org/3/library/",
        citation=_CITATION, license=_LICENSE,
        metadata=tfds.core.MetadataDict(
            python_version=self.builder_config.python_version,  # type: ignore[attr-defined]
            **metadata))

  def _check_python(self) -> None:
    wanted = self.builder_config.python_version  # type: ignore[attr-defined]
    if wanted != platform.python_version():
      raise ValueError(f"config {self.builder_config.name!r} needs Python "  # type: ignore
                       f"{wanted}, running {platform.python_version()}")

  def _splits(self, examples: Sequence[dict[str, str]], split_of: Callable[[str], str]):
    """Example generators by split, each example's split `split_of(example["module"])`."""
    by_split: dict[str, list[dict[str, str]]] = {s: [] for s in extract.SPLITS}
    for example in examples:
      by_split[split_of(example["module"])].append(example)
    return {split: self._generate_examples(rows) for split, rows in by_split.items()}

  def _generate_examples(self, examples: Sequence[dict[str, str]]
                         ) -> Iterator[tuple[str, dict[str, str]]]:
    version = self.builder_config.python_version  # type: ignore[attr-defined]
    for example in examples:
      yield example["id"], {**example, "python_version": version}


class StdlibCodeSearch(StdlibExamples, tfds.core.GeneratorBasedBuilder):
  """Docstring -> code retrieval pairs from the running Python's standard library."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release: functions/methods with docstrings, package-level "
               "80/10/10 split with a frozen test package list.",
  }
  # Only the running interpreter's stdlib can be read, so only its config exists.
  BUILDER_CONFIGS = [running_config()]

  def _info(self) -> tfds.core.DatasetInfo:
    return self._stdlib_info(_DESCRIPTION, _TEXT_FEATURES, split_salt=extract.SPLIT_SALT,
                             test_packages=list(extract.TEST_PACKAGES))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download: the source is the local stdlib.
    self._check_python()
    result = extract.extract(sysconfig.get_paths()["stdlib"])
    _warn_about_split_drift(result.examples)
    self.info.metadata.update(
        stats=dataclasses.asdict(result.stats), skipped_files=result.skipped_files)
    return self._splits(result.examples, extract.split_of)


def _warn_about_split_drift(examples: Sequence[dict[str, str]]) -> None:
  """Logs where this stdlib's packages disagree with the frozen test list.

  The frozen list wins (test stays comparable across Python versions); the warning
  just makes a changed stdlib visible.
  """
  packages = {extract.top_level_package(ex["module"]) for ex in examples}
  new = sorted(p for p in packages
               if extract.hash_split(p) == "test" and p not in extract.TEST_PACKAGES)
  if new:
    logging.warning("stdlib_code_search: packages %s hash to test but are not in "
                    "the frozen TEST_PACKAGES; they go to train.", new)
