"""quantize_embeddings and similarity vs sentence-transformers 6.2's outputs on the same inputs
(stored in tests/data/st_quantize_reference.npz by tests/data/make_st_quantize_reference.py)."""

from pathlib import Path

import numpy as np
import pytest

from jaxemb.quantization import (
    dequantize_embeddings, pairwise_similarity, quantize_embeddings, similarity, unpack_binary)

REF = np.load(Path(__file__).parent / "data" / "st_quantize_reference.npz")


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_quantize_matches_sentence_transformers(precision):
  for inputs, suffix in (("emb", "self"), ("emb64", "f64")):
    got = quantize_embeddings(REF[inputs], precision)
    want = REF[f"{precision}_{suffix}"]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_quantize_calibration_and_ranges_match(precision):
  got = quantize_embeddings(REF["emb"], precision, calibration_embeddings=REF["calib"])
  np.testing.assert_array_equal(got, REF[f"{precision}_calib"])
  got = quantize_embeddings(REF["emb"], precision, ranges=REF["ranges"])
  np.testing.assert_array_equal(got, REF[f"{precision}_ranges"])
  # Calibration clips: some buckets at both ends.
  assert got.min() == np.iinfo(got.dtype).min and got.max() == np.iinfo(got.dtype).max


def test_binary_bits_against_numpy_loop():
  emb = REF["emb"]
  packed = quantize_embeddings(emb, "ubinary")
  for i in range(emb.shape[0]):
    for j in range(emb.shape[1]):
      bit = (int(packed[i, j // 8]) >> (7 - j % 8)) & 1
      assert bit == int(emb[i, j] > 0)
  np.testing.assert_array_equal(unpack_binary(packed, emb.shape[1]), (emb > 0).astype(np.float32))
  np.testing.assert_array_equal(
      unpack_binary(quantize_embeddings(emb, "binary"), emb.shape[1], "binary"), emb > 0)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_dequantize_within_one_step(precision):
  emb, ranges = REF["emb"], REF["ranges"]
  inside = np.clip(emb, ranges[0], ranges[1] - 1e-3)
  back = dequantize_embeddings(quantize_embeddings(inside, precision, ranges=ranges), precision,
                               ranges)
  step = (ranges[1] - ranges[0]) / 255
  assert np.all(back <= inside + 1e-6) and np.all(inside - back <= step + 1e-6)


def test_empty_and_bad_input():
  empty = np.zeros((0, 13), np.float32)
  assert quantize_embeddings(empty, "int8").shape == (0, 13)
  assert quantize_embeddings(empty, "ubinary").shape == (0, 2)
  with pytest.raises(ValueError, match="'int4'"):
    quantize_embeddings(REF["emb"], "int4")
  with pytest.raises(ValueError, match="int8"):
    quantize_embeddings(quantize_embeddings(REF["emb"], "int8"), "uint8")
  with pytest.raises(ValueError, match="1 embedding"):
    quantize_embeddings(REF["emb"][:1], "int8")
  with pytest.raises(ValueError, match=r"\(2, 13\)"):
    quantize_embeddings(REF["emb"], "int8", ranges=np.zeros((2, 5)))


@pytest.mark.parametrize("fn", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_matches_sentence_transformers(fn):
  a, b = REF["sim_a"], REF["sim_b"]
  got = similarity(a, b, fn=fn)
  np.testing.assert_allclose(got, REF[f"sim_{fn}"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(pairwise_similarity(a, b[:9], fn=fn), np.diag(got), rtol=1e-5,
                             atol=1e-5)


def test_similarity_bad_input():
  with pytest.raises(ValueError, match="'hamming'"):
    similarity(np.ones((2, 3)), np.ones((2, 3)), fn="hamming")
  with pytest.raises(ValueError, match="dimension 3 .* dimension 4"):
    similarity(np.ones((2, 3)), np.ones((2, 4)))
