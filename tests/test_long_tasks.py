"""Long-document tasks: synthetic passkey / needle (lengths, statements, seeding, Acc@1 of a
lexical oracle), stdlib_modules extraction and build, and `jaxemb eval` with long-context flags."""

import json
import re

import numpy as np
import pytest

from jaxemb import cli, tasks
from jaxemb.data import longembed
from jaxemb.data.builders.stdlib_modules import extract


@pytest.mark.parametrize("task", ["passkey", "needle"])
def test_synthetic_documents(task):
  data = longembed.make_data(task, 256, num_docs=12, num_queries=6)
  assert len(data["corpus"]) == 12 and len(data["queries"]) == 6
  tok = longembed._tokenizer()
  lengths = [len(tok.encode(doc).ids) for doc in data["corpus"]]  # [CLS]/[SEP] included
  assert max(lengths) <= 256 and min(lengths) >= 256 - 40, lengths
  rng = np.random.default_rng([0, 256, int(task == "needle")])  # make_data's draw
  said, _, _ = longembed.statements(task, rng, 12)
  filler = " ".join(longembed._filler(task)[0])
  for doc, statement in zip(data["corpus"], said):
    # LongEmbed's construction: one filler shared by every document, cut to the length, with
    # the document's own statement inserted at a sentence boundary.
    before, after = doc.split(statement)
    assert filler.startswith((before + after.lstrip()).strip())
    assert before == "" or before.endswith((". ", "? ", "! "))
  for query, name, (target,) in zip(data["queries"], data["names"], data["relevant"]):
    assert name in query and said[target] in data["corpus"][target]
    # The asked-for name is in its document and in no other.
    assert [i for i, doc in enumerate(data["corpus"]) if name in doc] == [target]
  if task == "passkey":
    assert all(len(n.split()) == 2 for n in data["names"])  # first and last name
    assert filler.startswith("The grass is green. The sky is blue.")
  else:
    asked = {q.format(n="") for _, q in longembed.NEEDLES}
    assert all(q.replace(n, "") in asked for q, n in zip(data["queries"], data["names"]))
  assert longembed.make_data(task, 256, num_docs=12, num_queries=6) == data  # seeded
  assert longembed.make_data(task, 256, num_docs=12, num_queries=6, seed=1) != data


def test_acc_at_1_of_a_lexical_oracle():
  """An embedding that marks which made-up name a text contains finds every document."""
  data = longembed.make_data("passkey", 512, num_docs=10, num_queries=10)
  names = data["names"]

  def embed(texts):
    return np.array([[float(n in t) for n in names] for t in texts]) + 1e-3
  metrics = longembed.evaluate_data(embed, data)
  assert metrics["acc@1"] == 1.0
  # A constant embedding ranks by index order: Acc@1 is the share of queries for document 0.
  constant = longembed.evaluate_data(lambda t: np.ones((len(t), 2)), data)
  assert constant["acc@1"] == np.mean([r == {0} for r in data["relevant"]])


def test_task_table_and_bad_splits():
  task, split = tasks.parse("needle:1024")
  assert (task.name, split) == ("needle", "1024")
  assert tasks.get("passkey").name == "passkey" and tasks.get("stdlib_modules").load
  with pytest.raises(ValueError, match=r"split must be a document length in tokens.*'300'"):
    task.load("300")
  with pytest.raises(ValueError, match="num_queries <= num_docs, got 20 and 10"):
    longembed.make_data("needle", 256, num_docs=10, num_queries=20)
  with pytest.raises(ValueError, match="'passkey' or 'needle', got 'haystack'"):
    longembed.task("haystack")


_MODULE = '''\
"""A small module.

It has a docstring of two paragraphs.
"""

import os


def f(x):
    return os.path.join(x, "a")
'''


def test_stdlib_modules_extraction(tmp_path):
  (tmp_path / "alpha.py").write_text(_MODULE)
  (tmp_path / "beta.py").write_text(_MODULE.replace("A small", "Another small"))  # same code
  (tmp_path / "gamma.py").write_text("x = 1\n")  # no docstring
  (tmp_path / "json").mkdir()
  (tmp_path / "json" / "__init__.py").write_text('"""JSON encoder and decoder."""\nX = 2\n')
  examples = extract.extract(str(tmp_path))
  assert [e["module"] for e in examples] == ["alpha", "json"]
  alpha = examples[0]
  assert alpha["query"] == "A small module. It has a docstring of two paragraphs."
  assert alpha["code"] == 'import os\n\n\ndef f(x):\n    return os.path.join(x, "a")'
  assert '"""' not in alpha["code"]
  assert extract.split_of("json") == "test" and extract.split_of("json.decoder") == "test"
  assert extract.cut("ab\ncd\nef", 7) == "ab\ncd"
  with pytest.raises(ValueError, match="existing directory"):
    extract.extract(str(tmp_path / "missing"))


@pytest.mark.slow
def test_stdlib_modules_builds_and_splits_by_package(tmp_path):
  from jaxemb.data.builders import stdlib_modules as sm
  test = [sm.decode(r) for r in sm.load("test", str(tmp_path))]
  train = [sm.decode(r) for r in sm.load("train", str(tmp_path))]
  assert len(test) >= 10 and len(train) > len(test)
  assert all(extract.split_of(r["module"]) == "test" for r in test)
  assert {extract.split_of(r["module"]) for r in train} == {"train"}
  assert max(len(r["code"]) for r in train) <= extract.MAX_CODE_CHARS
  data = tasks.get("stdlib_modules").load("test", str(tmp_path))
  assert data["relevant"][0] == {0} and len(data["corpus"]) == len(test)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  """A tiny model (32 position rows) saved as a sentence-transformers directory."""
  from jaxemb.pretrained.sentence_transformers import save_pretrained
  from tiny_tokenizer import tiny_model
  directory = tmp_path_factory.mktemp("tiny")
  save_pretrained(tiny_model(max_len=32), directory)
  return str(directory)


def test_cli_names_a_method_that_does_not_apply(capsys, tiny_dir):
  for method, message in (("ntk", "'ntk'.*absolute"), ("yarn", "unknown position_scaling")):
    with pytest.raises(SystemExit) as e:
      cli.main(["eval", "--model", tiny_dir, "--task", "needle:256", "--max-seq-length",
                "1024", "--position-scaling", method])
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.slow
def test_cli_eval_prints_acc_at_1(capsys, tiny_dir):
  # The full 100 x 50 task at the shortest length, with PCW past the model's 32 positions.
  cli.main(["eval", "--model", tiny_dir, "--task", "passkey:256", "--max-seq-length", "256",
            "--position-scaling", "pcw", "--quiet"])
  last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert last["task"] == "passkey:256" and last["position_scaling"] == "pcw"
  assert last["max_seq_length"] == 256 and 0.0 <= last["acc@1"] <= 1.0


def test_cli_encode_takes_the_long_context_flags(tmp_path, tiny_dir):
  import jaxemb
  from jaxemb import long_context
  texts = [" ".join("abcdefghij"[i % 10] for i in range(n)) for n in (5, 50, 90)]
  (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
  out = tmp_path / "out.npy"
  cli.main(["encode", "--model", tiny_dir, "--input", str(tmp_path / "in.txt"), "--output",
            str(out), "--max-seq-length", "96", "--position-scaling", "gp", "--quiet"])
  want = long_context.encode(jaxemb.load_pretrained(tiny_dir), texts, max_seq_length=96,
                             position_scaling="gp")
  np.testing.assert_allclose(np.load(out), want, atol=1e-6)
  cli.main(["encode", "--model", tiny_dir, "--input", str(tmp_path / "in.txt"), "--output",
            str(out), "--max-seq-length", "96", "--position-scaling", "gp",
            "--attention-scaling", "--quiet"])
  scaled = long_context.encode(jaxemb.load_pretrained(tiny_dir), texts, max_seq_length=96,
                               position_scaling="gp", attention_scaling=True)
  # The tiny random model attends almost uniformly, so scaling its logits moves the long texts
  # (52 and 92 tokens, past its 32 positions) by only ~1e-5: compare tightly.
  np.testing.assert_allclose(np.load(out), scaled, atol=1e-7, rtol=0)
  assert np.abs(scaled[1:] - want[1:]).max() > 1e-6
  np.testing.assert_allclose(scaled[0], want[0], atol=1e-7, rtol=0)  # 7 tokens: unscaled
