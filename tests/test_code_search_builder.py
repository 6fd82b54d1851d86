"""Tests for the stdlib_code_search TFDS builder: extraction, split rule, build, read."""

import collections
import platform
import sys
import sysconfig
import textwrap

import pytest

from jaxemb.data.builders import stdlib_code_search as scs
from jaxemb.data.builders.stdlib_code_search import extract

_ALPHA = '''\
import sys


def add(a, b):
    """Add two numbers
    together.

    More details that are not part of the query.
    """
    return a + b


def nodoc(x):
    return x


async def fetch(url):
    """Fetch the given url asynchronously."""
    return await get(url)


def stub():
    """This is a stub function."""
    pass


def ellipsis_stub():
    """This is another stub."""
    ...


def abstract(self):
    """Subclasses must implement this."""
    raise NotImplementedError("abstract")


def short():
    """Short."""
    return 1


def todo_fn():
    """TODO: write the docs later."""
    return 2


class Box:
    """A box (class docstrings are not examples)."""

    @property
    def size(self):
        """The size of the box."""
        return self._size

    class Inner:
        def meth(self):
            """Inner method does things.

            Details.
            """
            def helper():
                """Nested helper is not an example."""
                return 1
            return helper()


if sys.platform == "win32":
    def plat():
        """Platform specific version one."""
        return 1
else:
    def plat():
        """Platform specific version two."""
        return 2


def oneliner(x): "Return x plus one."; return x + 1
'''

_BETA_INIT = '''\
async def fetch(url):
    """Fetch the given url asynchronously."""
    return await get(url)
'''

_BETA_UTIL = '''\
def add(a, b):
    """Sum of two numbers, the same code as alpha.add."""
    return a + b


def mul(a, b):
    """Multiply two numbers together."""
    return a * b
'''

_IGNORED = '''\
def visible_if_not_pruned():
    """This function must never be extracted."""
    return 1
'''


@pytest.fixture
def fake_stdlib(tmp_path):
  root = tmp_path / "lib"
  files = {
      "alpha.py": _ALPHA,
      "beta/__init__.py": _BETA_INIT,
      "beta/util.py": _BETA_UTIL,
      "broken.py": "def f(:\n    return 1\n",
      "test/test_alpha.py": _IGNORED,
      "beta/tests/test_util.py": _IGNORED,
      "site-packages/thirdparty.py": _IGNORED,
      "idlelib/idle_test/test_x.py": _IGNORED,
      "__pycache__/alpha.py": _IGNORED,
      "bad-name.py": _IGNORED,
  }
  for rel, text in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  (root / "latin.py").write_bytes(b"def f():\n    '''Caf\xe9 au lait.'''\n")
  return root


def test_extract_exact_examples(fake_stdlib):
  result = extract.extract(str(fake_stdlib))
  got = [(e["id"], e["query"], e["code"]) for e in result.examples]
  helper = textwrap.dedent('''\
      def meth(self):
          def helper():
              """Nested helper is not an example."""
              return 1
          return helper()''')
  assert got == [
      ("alpha:add", "Add two numbers together.", "def add(a, b):\n    return a + b"),
      ("alpha:fetch", "Fetch the given url asynchronously.",
       "async def fetch(url):\n    return await get(url)"),
      ("alpha:Box.size", "The size of the box.",
       "@property\ndef size(self):\n    return self._size"),
      ("alpha:Box.Inner.meth", "Inner method does things.", helper),
      ("alpha:plat", "Platform specific version one.", "def plat():\n    return 1"),
      ("alpha:plat#2", "Platform specific version two.", "def plat():\n    return 2"),
      ("alpha:oneliner", "Return x plus one.", "def oneliner(x): return x + 1"),
      ("beta.util:mul", "Multiply two numbers together.",
       "def mul(a, b):\n    return a * b"),
  ]
  assert [(e["module"], e["qualname"]) for e in result.examples][2] == (
      "alpha", "Box.size")
  assert extract.extract_examples(str(fake_stdlib)) == result.examples


def test_extract_counts_skips_and_duplicates(fake_stdlib):
  result = extract.extract(str(fake_stdlib))
  stats = result.stats
  # broken.py: syntax error; latin.py: undeclared latin-1 byte -> decode error.
  assert sorted(result.skipped_files) == ["broken.py", "latin.py"]
  assert stats.files_skipped == 2
  assert stats.files_not_modules == 1  # bad-name.py
  assert stats.files == 6  # pruned dirs never counted
  assert stats.functions == 16  # 13 in alpha (helper not visited) + 3 in beta
  assert stats.no_docstring == 1
  assert stats.junk_query == 2  # "Short." and "TODO: ..."
  assert stats.empty_body == 3  # pass, ..., raise NotImplementedError
  assert stats.duplicate_pair == 1  # beta.fetch == alpha.fetch
  assert stats.duplicate_code == 1  # beta.util.add has alpha.add's code
  assert stats.examples == len(result.examples) == 8


def test_extract_rejects_missing_dir(tmp_path):
  with pytest.raises(ValueError, match="existing directory"):
    extract.extract(str(tmp_path / "nope"))


@pytest.mark.parametrize("doc, query", [
    ("One line.", "One line."),
    ("\n  Leading blank line\n  then more.\n\n  Second para.", "Leading blank line then more."),
    ("Tabs\tand   spaces\n    collapse.", "Tabs and spaces collapse."),
])
def test_first_paragraph(doc, query):
  assert extract.first_paragraph(doc) == query


@pytest.mark.parametrize("query, junk", [
    ("Docstring", True), ("TODO: fill this in", True), ("XXX this is broken", True),
    ("Two words", True), ("Return the sum.", False), ("Return a todo list.", False),
])
def test_is_junk_query(query, junk):
  assert extract.is_junk_query(query) is junk


def test_module_name():
  assert extract.module_name("email/mime/text.py") == "email.mime.text"
  assert extract.module_name("json/__init__.py") == "json"
  assert extract.module_name("_sysconfigdata__linux_x86_64-linux-gnu.py") is None
  with pytest.raises(ValueError, match="ending in .py"):
    extract.module_name("README.txt")


# ---------------------------------------------------------------- split rule

@pytest.fixture(scope="module")
def stdlib_extraction():
  return extract.extract(sysconfig.get_paths()["stdlib"])


def test_split_rule_deterministic_and_package_level():
  for module in ["json.decoder", "email.mime.text", "asyncio.events", "os"]:
    package = module.split(".")[0]
    assert extract.split_of(module) == extract.split_of(package)
    assert extract.hash_bucket(package) == extract.hash_bucket(package)
  assert extract.split_of("json.decoder") == "test"  # frozen
  with pytest.raises(ValueError, match="non-empty dotted name"):
    extract.split_of("")


def test_frozen_test_packages_agree_with_hash_rule():
  assert list(extract.TEST_PACKAGES) == sorted(set(extract.TEST_PACKAGES))
  for package in extract.TEST_PACKAGES:
    assert extract.hash_split(package) == "test", package


def test_new_package_in_test_bucket_goes_to_train():
  new = next(f"new_pkg_{i}" for i in range(1000)
             if extract.hash_split(f"new_pkg_{i}") == "test")
  assert new not in extract.TEST_PACKAGES
  assert extract.split_of(new) == "train"


def test_stdlib_split_packages_and_proportions(stdlib_extraction):
  examples = stdlib_extraction.examples
  splits_of_package = collections.defaultdict(set)
  for ex in examples:
    splits_of_package[extract.top_level_package(ex["module"])].add(
        extract.split_of(ex["module"]))
  assert all(len(s) == 1 for s in splits_of_package.values())
  counts = extract.split_counts(examples)
  total = sum(counts.values())
  assert total > 1000
  for split, target in zip(extract.SPLITS, (80, 10, 10)):
    assert abs(100 * counts[split] / total - target) <= 4, counts
  ids = [ex["id"] for ex in examples]
  assert len(ids) == len(set(ids))
  assert len({ex["code"] for ex in examples}) == len(examples)


# ---------------------------------------------------------------- TFDS build

@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = scs.StdlibCodeSearch(data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return builder, data_dir


def test_build_counts_and_metadata(built, stdlib_extraction):
  builder, data_dir = built
  expected = extract.split_counts(stdlib_extraction.examples)
  assert {s: builder.info.splits[s].num_examples for s in scs.SPLITS} == expected
  assert scs.counts(data_dir) == expected  # reuses the prepared data
  version = platform.python_version()
  assert builder.builder_config.python_version == version
  assert builder.info.config_name == "py" + version.replace(".", "_")
  assert str(builder.info.version) == "1.0.0"
  assert "PSF" in builder.info.description
  assert "PSF" in builder.info.redistribution_info.license
  # A fresh builder reads metadata back from disk.
  reloaded = scs.StdlibCodeSearch(data_dir=data_dir, file_format="array_record")
  assert reloaded.info.metadata["python_version"] == version
  assert reloaded.info.metadata["stats"]["examples"] == sum(expected.values())
  assert "tensorflow" not in sys.modules


def test_read_back_splits(built):
  builder, data_dir = built
  test_ids = set()
  for split in scs.SPLITS:
    source = builder.as_data_source(split)
    raw = source[0]
    assert isinstance(raw["query"], bytes)
    for i in range(len(source)):
      ex = scs.decode(source[i])
      assert ex["python_version"] == platform.python_version()
      in_test_packages = ex["module"].split(".")[0] in scs.TEST_PACKAGES
      assert in_test_packages == (split == "test"), (split, ex["id"])
      assert ex["id"] == f"{ex['module']}:{ex['qualname']}" or "#" in ex["id"]
      if split == "test":
        test_ids.add(ex["id"])
  assert "json.decoder:JSONDecoder.decode" in test_ids
  assert "tensorflow" not in sys.modules


def test_tfds_data_source_and_load(built):
  import tensorflow_datasets as tfds
  _, data_dir = built
  source = tfds.data_source(
      "stdlib_code_search", split="test", data_dir=data_dir, download=False)
  loaded = scs.load("test", data_dir)
  assert len(source) == len(loaded) == scs.counts(data_dir)["test"]
  assert scs.decode(source[0]) == scs.decode(loaded[0])
  with pytest.raises(ValueError, match="split must be one of"):
    scs.load("dev", data_dir)


def test_grain_read(built):
  import grain
  _, data_dir = built
  source = scs.load("validation", data_dir)
  dataset = grain.MapDataset.source(source).shuffle(seed=0).map(scs.decode).batch(4)
  batch = next(iter(dataset.to_iter_dataset()))
  assert set(batch) == {"query", "code", "module", "qualname", "id", "python_version"}
  assert len(batch["query"]) == 4
  assert all(isinstance(q, str) and q for q in batch["query"].tolist())
  # Same seed, same order: the shuffle is deterministic.
  again = grain.MapDataset.source(source).shuffle(seed=0).map(scs.decode).batch(4)
  assert again[0]["id"].tolist() == batch["id"].tolist()
  assert "tensorflow" not in sys.modules


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv("JAXEMB_DATA_DIR", "/some/where")
  assert scs.default_data_dir() == "/some/where"
  monkeypatch.delenv("JAXEMB_DATA_DIR")
  assert scs.default_data_dir().endswith("/.cache/jaxemb/tfds")
