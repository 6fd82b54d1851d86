"""Static (model2vec-style) distillation: token vectors vs jaxemb.encode of one-token texts, PCA
vs scikit-learn, SIF weights vs their formula, export loaded by sentence-transformers."""

import subprocess
import string

import numpy as np
import pytest
from sklearn.decomposition import PCA

import jaxemb
from jaxemb import static_export as se
from tiny_tokenizer import tiny_model



@pytest.fixture(scope="module")
def model():
  return tiny_model(vocab_size=80, max_len=32)


def test_token_vectors_equal_encode_of_one_token_texts(model):
  vectors = se.token_embeddings(model, batch_size=16)
  assert vectors.shape == (model.tokenizer.get_vocab_size(), 32)
  letters = list(string.ascii_lowercase[:10])
  ids = [model.tokenizer.token_to_id(c) for c in letters]
  want = jaxemb.encode(model, letters, normalize=False)
  np.testing.assert_allclose(vectors[ids], want, rtol=1e-5, atol=1e-6)


def test_sif_weights_and_pca():
  w = se.zipf_sif_weights(5, 0.1)
  z = sum(1 / r for r in range(2, 7))
  np.testing.assert_allclose(w, [0.1 / (0.1 + (1 / (i + 2)) / z) for i in range(5)])
  x = np.random.default_rng(0).normal(size=(60, 8)) @ np.diag([5, 4, 3, 2, 1, 1, 1, 1.0])
  got = se.pca(x, 3)
  ref = PCA(3).fit_transform(x)
  signs = np.sign(np.sum(got * ref, axis=0))  # an axis' sign is arbitrary
  np.testing.assert_allclose(got, ref * signs, rtol=1e-8, atol=1e-8)


def test_distill_encode_and_round_trip(model, tmp_path):
  weights, tok = se.distill_static(model, dims=8, sif_coefficient=1e-2, batch_size=16)
  raw = se.token_embeddings(model, batch_size=16)
  want = se.pca(raw, 8) * se.zipf_sif_weights(len(raw), 1e-2)[:, None]
  np.testing.assert_allclose(weights, want, rtol=1e-5, atol=1e-6)
  texts = ["hello world", "", "abc def ghi", "zz top"]
  got = se.encode_static(weights, tok, texts)
  for text, row in zip(texts, got):
    ids = tok.encode(text, add_special_tokens=False).ids
    mean = weights[ids].mean(0) if ids else np.zeros(8)
    norm = np.linalg.norm(mean)
    np.testing.assert_allclose(row, mean / norm if norm else mean, rtol=1e-5, atol=1e-7)
  out = se.save_static(weights, tok, tmp_path / "static")
  w2, tok2 = se.load_static(out)
  np.testing.assert_array_equal(w2, weights)
  np.testing.assert_array_equal(se.encode_static(w2, tok2, texts), got)
  with pytest.raises(ValueError, match=r"\[%d, dims\]" % tok.get_vocab_size()):
    se.save_static(weights[:5], tok, tmp_path / "bad")


@pytest.mark.slow  # imports torch in a subprocess: ~15-40 s
def test_sentence_transformers_loads_the_export(model, tmp_path, reference_python):
  weights, tok = se.distill_static(model, dims=8, batch_size=16)
  out = se.save_static(weights, tok, tmp_path / "static")
  texts = ["hello world", "abc def ghi", "zz top"]
  np.save(tmp_path / "texts.npy", np.array(texts))
  code = ("import sys, numpy as np; from sentence_transformers import SentenceTransformer; "
          "m = SentenceTransformer(sys.argv[1], device='cpu'); "
          "np.save(sys.argv[3], m.encode(list(np.load(sys.argv[2]))))")
  run = subprocess.run([reference_python, "-c", code, str(out), str(tmp_path / "texts.npy"),
                        str(tmp_path / "st.npy")], capture_output=True, text=True, timeout=240)
  assert run.returncode == 0, run.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / "st.npy"), se.encode_static(weights, tok, texts),
                             rtol=1e-5, atol=1e-6)
