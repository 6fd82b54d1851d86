"""stdlib_test_continuation: code -> code pairs (a test-suite function's first half -> its
second half), the B task of the model-merging experiment."""

import textwrap

import pytest

from jaxemb import tasks
from jaxemb.data import registry
from jaxemb.data.builders.stdlib_code_search.extract import hash_split
from jaxemb.data.builders.stdlib_test_continuation import extract

_TEST_MODULE = textwrap.dedent('''\
    import unittest


    def helper(x):
        a = x + 1
        b = a * 2
        c = b - 3
        d = c / 4
        return d


    class TestThing(unittest.TestCase):

        @unittest.skip("slow")
        def test_long(self):
            """Checks a long thing."""
            values = [1, 2, 3]
            total = 0
            for v in values:
                total += v

                def nested():
                    return total
            self.assertEqual(total, 6)

        def test_short(self):
            self.assertTrue(True)


    def copy_of_helper_tail(y):
        z = y
        q = z
        c = b - 3
        d = c / 4
        return d
''')


def _tree(tmp_path):
  (tmp_path / "json.py").write_text("def outside_the_test_package():\n" + "    x = 1\n" * 8)
  (tmp_path / "test").mkdir()
  (tmp_path / "test" / "__init__.py").write_text("")
  (tmp_path / "test" / "test_thing.py").write_text(_TEST_MODULE)
  (tmp_path / "test" / "bad_syntax.py").write_text("def f(:\n")
  return str(tmp_path)


def test_extraction_halves_dedup_and_ids(tmp_path):
  examples = extract.extract(_tree(tmp_path))
  assert [e["id"] for e in examples] == ["test.test_thing:helper", "test.test_thing:TestThing.test_long"]
  helper, long = examples
  # 6 lines: the first 3 are the query, the last 3 the document.
  assert helper["query"] == "def helper(x):\n    a = x + 1\n    b = a * 2"
  assert helper["code"] == "    c = b - 3\n    d = c / 4\n    return d"
  # Decorators kept, docstring and blank lines gone, the nested function stays in the body;
  # 9 lines: 4 + 5.
  assert long["query"] == ('@unittest.skip("slow")\ndef test_long(self):\n'
                           '    values = [1, 2, 3]\n    total = 0')
  assert long["code"].startswith("    for v in values:") and long["code"].endswith(
      "    self.assertEqual(total, 6)")
  assert '"""' not in long["query"] + long["code"]
  # test_short is under MIN_LINES; copy_of_helper_tail's second half repeats helper's.
  assert all(e["module"] == "test.test_thing" for e in examples)


def test_split_by_test_module():
  split = extract.split_of("test.test_json.test_decode")
  assert split == hash_split("test_json", extract.SPLIT_SALT) == extract.split_of("test.test_json")
  assert split in extract.SPLITS
  with pytest.raises(ValueError, match="module of the 'test' package, got 'json.decoder'"):
    extract.split_of("json.decoder")


def test_a_python_without_its_test_suite_is_named(tmp_path):
  with pytest.raises(ValueError, match="without its test suite"):
    extract.extract(str(tmp_path))


def test_task_and_training_dataset_are_listed():
  assert tasks.get("stdlib_test_continuation").name == "stdlib_test_continuation"
  assert "stdlib_test_continuation" in registry.DATASETS


@pytest.mark.slow
def test_builds_and_splits_by_module(tmp_path):
  from jaxemb.data import test_continuation
  from jaxemb.data.builders import stdlib_test_continuation as stc
  splits = {s: [stc.decode(r) for r in stc.load(s, str(tmp_path))] for s in extract.SPLITS}
  assert all(len(rows) > 100 for rows in splits.values())
  modules = {s: {r["module"].split(".")[1] for r in rows} for s, rows in splits.items()}
  assert not modules["train"] & modules["test"] and not modules["validation"] & modules["test"]
  assert all(extract.split_of(r["module"]) == s for s, rows in splits.items() for r in rows)
  data = test_continuation.retrieval_data("test", str(tmp_path))
  assert len(data["queries"]) == len(splits["test"]) and data["relevant"][3] == {3}
  assert data["corpus"][3] == splits["test"][3]["code"]
