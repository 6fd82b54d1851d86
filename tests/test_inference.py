"""jaxemb.inference: prompts, encode_query/encode_document, truncate_dim, precision, and the
prompt round trip through save_pretrained / load_pretrained (and sentence-transformers)."""

import json
import subprocess

import numpy as np
import pytest

import jaxemb
from jaxemb import encoding, inference
from jaxemb.quantization import quantize_embeddings
from tiny_tokenizer import tiny_model

TEXTS = ["hello world", "a b c", "", "tiny texts"]


@pytest.fixture(scope="module")
def model():
  m = tiny_model(vocab_size=100, max_len=24)
  m.prompts = {"query": "q ", "document": "d ", "other": "x y "}
  m.default_prompt_name = None
  return m


def test_prompts_are_prepended(model):
  want_q = encoding.encode(model, ["q " + t for t in TEXTS])
  want_d = encoding.encode(model, ["d " + t for t in TEXTS])
  np.testing.assert_array_equal(inference.encode(model, TEXTS, prompt_name="query"), want_q)
  np.testing.assert_array_equal(inference.encode(model, TEXTS, prompt="q "), want_q)
  np.testing.assert_array_equal(inference.encode_query(model, TEXTS), want_q)
  np.testing.assert_array_equal(inference.encode_document(model, TEXTS), want_d)
  # An explicit prompt wins over the query default.
  np.testing.assert_array_equal(inference.encode_query(model, TEXTS, prompt="d "), want_d)
  plain = encoding.encode(model, TEXTS)
  np.testing.assert_array_equal(inference.encode(model, TEXTS), plain)
  assert not np.allclose(plain, want_q)


def test_default_prompt_name(model):
  model.default_prompt_name = "other"
  try:
    np.testing.assert_array_equal(inference.encode(model, TEXTS),
                                  encoding.encode(model, ["x y " + t for t in TEXTS]))
  finally:
    model.default_prompt_name = None


def test_truncate_dim_and_precision(model):
  full = encoding.encode(model, TEXTS)
  got = inference.encode(model, TEXTS, truncate_dim=8)
  want = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  raw = inference.encode(model, TEXTS, truncate_dim=8, normalize=False)
  np.testing.assert_allclose(raw, encoding.encode(model, TEXTS, normalize=False)[:, :8])
  cal = np.random.default_rng(0).normal(scale=0.3, size=(50, 32)).astype(np.float32)
  for precision in ("int8", "uint8", "binary", "ubinary"):
    np.testing.assert_array_equal(
        inference.encode(model, TEXTS, precision=precision, calibration_embeddings=cal),
        quantize_embeddings(full, precision, calibration_embeddings=cal))
  np.testing.assert_allclose(jaxemb.inference.similarity(full, full, fn="cosine"), full @ full.T,
                             atol=1e-6)


def test_bad_input(model):
  with pytest.raises(ValueError, match="'nope'.*other.*query"):
    inference.encode(model, TEXTS, prompt_name="nope")
  with pytest.raises(ValueError, match="truncate_dim=33.*32"):
    inference.encode(model, TEXTS, truncate_dim=33)
  with pytest.raises(ValueError, match="'fp8'"):
    inference.encode(model, TEXTS, precision="fp8")


def test_prompts_round_trip(model, tmp_path):
  model.default_prompt_name = "query"
  try:
    jaxemb.save_pretrained(model, tmp_path / "m")
  finally:
    model.default_prompt_name = None
  cfg = json.loads((tmp_path / "m" / "config_sentence_transformers.json").read_text())
  assert cfg["prompts"] == model.prompts and cfg["default_prompt_name"] == "query"
  again = jaxemb.load_pretrained(tmp_path / "m")
  assert again.prompts == model.prompts and again.default_prompt_name == "query"
  np.testing.assert_array_equal(inference.encode(again, TEXTS),
                                inference.encode(model, TEXTS, prompt_name="query"))
  # A model saved without prompts loads with none; a default naming no prompt is rejected.
  cfg.update(prompts={}, default_prompt_name=None)
  (tmp_path / "m" / "config_sentence_transformers.json").write_text(json.dumps(cfg))
  assert jaxemb.load_pretrained(tmp_path / "m").prompts == {}
  cfg.update(default_prompt_name="query")
  (tmp_path / "m" / "config_sentence_transformers.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="default_prompt_name 'query'"):
    jaxemb.load_pretrained(tmp_path / "m")


@pytest.mark.slow  # imports torch in a subprocess: ~15-40 s
def test_sentence_transformers_reads_the_prompts(model, tmp_path, reference_python):
  jaxemb.save_pretrained(model, tmp_path / "m")
  code = ("import json, sys; from sentence_transformers import SentenceTransformer; "
          "m = SentenceTransformer(sys.argv[1], device='cpu'); "
          "print(json.dumps([m.prompts, m.default_prompt_name]))")
  out = subprocess.run([reference_python, "-c", code, str(tmp_path / "m")], capture_output=True,
                       text=True, timeout=240)
  assert out.returncode == 0, out.stderr[-2000:]
  prompts, default = json.loads(out.stdout.strip().splitlines()[-1])
  assert prompts == model.prompts and default is None
