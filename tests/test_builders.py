"""`jaxemb.data.builders.prepare`: one build per dataset, safe when processes ask at once."""

import fcntl
import os

import pytest

from jaxemb.data.builders import default_data_dir, kg_triples, prepare


def _nations(data_dir):
  return kg_triples.KgTriples(config="nations", data_dir=str(data_dir),
                              file_format="array_record")


def test_a_builder_made_before_another_built_the_dataset_reads_it(tmp_path):
  # The second builder is made while the dataset does not exist yet, as in a process that waited
  # on the lock while another built it: TFDS gave it no metadata, `prepare` must read it.
  first, second = _nations(tmp_path), _nations(tmp_path)
  prepare(first)
  assert not second.info.splits
  assert prepare(second) is second
  assert {s: second.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
      "train": 1592, "validation": 199, "test": 201}  # Nations' split sizes (PyKEEN's files)
  assert second.as_data_source("test")[0] == first.as_data_source("test")[0]


def test_the_build_runs_under_an_exclusive_lock(tmp_path, monkeypatch):
  builder = _nations(tmp_path)
  build = builder.download_and_prepare
  held = []

  def build_and_probe(*args, **kwargs):
    # a second open of the lock file is another process's view of it: it must not get the lock
    with open(os.path.join(tmp_path, ".kg_triples.lock")) as other:
      with pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held.append(True)
    return build(*args, **kwargs)

  monkeypatch.setattr(builder, "download_and_prepare", build_and_probe)
  prepare(builder)
  assert held == [True]
  with open(os.path.join(tmp_path, ".kg_triples.lock")) as other:  # released afterwards
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_default_data_dir_follows_the_environment(monkeypatch):
  monkeypatch.setenv("JAXEMB_DATA_DIR", "/some/where")
  assert default_data_dir() == kg_triples.default_data_dir() == "/some/where"
  monkeypatch.delenv("JAXEMB_DATA_DIR")
  assert default_data_dir() == os.path.expanduser("~/.cache/jaxemb/tfds")
