"""`transfer`: new tokenizer + rebuilt embedding table, template and pad checks, save/load round
trip, bad tokenizers, distillation, the CLI. Tiny random models except one MiniLM check."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import tokenizers
from flax import nnx
from tokenizers import decoders, models, pre_tokenizers, trainers

import jaxemb
from jaxemb.adapt import transfer as T
from jaxemb.model import EmbeddingModel
from tiny_tokenizer import tiny_model

TEXTS = ["hello world", "def foo(bar): return bar", "the quick brown fox", "open a file",
         "return the sum of two numbers", "x = y + 1", "read lines from a socket",
         "sort a list in place", "parse the header", "close the connection"]


def _tiny() -> EmbeddingModel:
  return tiny_model(max_len=64)


def _bpe(vocab_size=300, specials=("[PAD]", "[UNK]")) -> tokenizers.Tokenizer:
  """A cased byte-level BPE without a post-processor (no [CLS]/[SEP] of its own)."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(specials), show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  return tok


@pytest.fixture(scope="module")
def tiny():
  return _tiny()


def test_new_tokenizer_gets_the_source_template(tiny):
  new = T.transfer(tiny, _bpe(), "mean")
  tok = new.tokenizer
  enc = tok.encode("hello world")
  assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
  assert {"[CLS]", "[SEP]"} <= set(T.init_lib.special_tokens(tok))
  size = tok.get_vocab_size(with_added_tokens=True)
  assert T.word_embeddings(new).shape == (size, 32)
  assert new.module.encoder.cfg.vocab_size == size
  assert new.pad_token_id == tok.token_to_id("[PAD]") == 0
  # Specials copied from the source rows of the same name.
  src, dst = T.word_embeddings(tiny), T.word_embeddings(new)
  for name in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
    np.testing.assert_array_equal(dst[tok.token_to_id(name)],
                                  src[tiny.tokenizer.token_to_id(name)])
  # The source model is untouched.
  assert T.word_embeddings(tiny).shape == (tiny.tokenizer.get_vocab_size(), 32)
  # Embeddings of the new model come out finite and normalised.
  emb = jaxemb.encode(new, TEXTS)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_own_template_is_kept(tiny):
  bpe = _bpe(specials=("<pad>", "<s>", "</s>"))
  bpe.post_processor = tokenizers.processors.TemplateProcessing(
      single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
  new = T.transfer(tiny, bpe, "mean")
  enc = new.tokenizer.encode("hello")
  assert enc.tokens[0] == "<s>" and enc.tokens[-1] == "</s>"
  assert "[CLS]" not in new.tokenizer.get_vocab(True)
  # <s> plays [CLS]'s role, so it copies [CLS]'s row.
  np.testing.assert_array_equal(T.word_embeddings(new)[1],
                                T.word_embeddings(tiny)[tiny.tokenizer.token_to_id("[CLS]")])
  assert new.pad_token_id == 0


def test_transfer_to_own_tokenizer_is_identity(tiny):
  """Every token of the source overlaps itself: the new model embeds exactly as the source."""
  for method in ("random", "mean", "ofa"):
    new = T.transfer(tiny, tiny.tokenizer, method)
    np.testing.assert_array_equal(T.word_embeddings(new), T.word_embeddings(tiny))
    np.testing.assert_allclose(jaxemb.encode(new, TEXTS), jaxemb.encode(tiny, TEXTS), atol=1e-6)


@pytest.mark.parametrize("method", T.init_lib.METHODS)
def test_round_trip_through_save_and_load(tiny, tmp_path, method):
  new = T.transfer(tiny, _bpe(), method, texts=TEXTS)
  out = jaxemb.save_pretrained(new, tmp_path / method)
  again = jaxemb.load_pretrained(out)
  assert json.loads(again.tokenizer.to_str())["model"]["type"] == "BPE"
  for text in TEXTS:
    assert again.tokenizer.encode(text).ids == new.tokenizer.encode(text).ids
  np.testing.assert_array_equal(T.word_embeddings(again), T.word_embeddings(new))
  assert again.pad_token_id == new.pad_token_id
  np.testing.assert_allclose(jaxemb.encode(again, TEXTS), jaxemb.encode(new, TEXTS), atol=1e-6)


def test_malformed_tokenizer_file(tiny, tmp_path):
  bad = tmp_path / "tokenizer.json"
  bad.write_text('{"model": {"type": "BPE", "vocab": ')
  with pytest.raises(ValueError, match="not a valid Hugging Face tokenizer.json"):
    T.transfer(tiny, bad, "mean")
  bad.write_text(json.dumps({"version": "1.0", "model": {"type": "NoSuchModel"}}))
  with pytest.raises(ValueError, match="not a valid Hugging Face tokenizer.json"):
    T.transfer(tiny, tmp_path, "mean")  # a directory holding the file
  with pytest.raises(FileNotFoundError, match="no tokenizer file"):
    T.transfer(tiny, tmp_path / "missing.json", "mean")


def test_empty_vocabulary(tiny):
  empty = tokenizers.Tokenizer(models.WordLevel({}, unk_token="[UNK]"))
  with pytest.raises(ValueError, match="empty vocabulary"):
    T.transfer(tiny, empty, "mean")
  only_specials = tokenizers.Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1},
                                                        unk_token="[UNK]"))
  only_specials.add_special_tokens(["[PAD]", "[UNK]"])
  with pytest.raises(ValueError, match="empty vocabulary"):
    T.transfer(tiny, only_specials, "mean")


def test_no_pad_token(tiny):
  with pytest.raises(ValueError, match="no pad token.*pad_token='\\[PAD\\]'"):
    T.transfer(tiny, _bpe(specials=("[UNK]",)), "mean")
  new = T.transfer(tiny, _bpe(specials=("[UNK]",)), "mean", pad_token="[PAD]")
  assert new.tokenizer.id_to_token(new.pad_token_id) == "[PAD]"
  np.testing.assert_array_equal(T.word_embeddings(new)[new.pad_token_id],
                                T.word_embeddings(tiny)[0])


def test_bad_method_and_missing_texts(tiny):
  with pytest.raises(ValueError, match="unknown transfer method 'fvt'"):
    T.transfer(tiny, _bpe(), "fvt")
  for method in ("focus", "distill"):
    with pytest.raises(ValueError, match="needs training texts"):
      T.transfer(tiny, _bpe(), method)


def test_distill_loss_matches_numpy():
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
  cos = np.mean([1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(s, t)])
  np.testing.assert_allclose(T.distill_loss(s, t, "cosine"), cos, rtol=1e-5)
  np.testing.assert_allclose(T.distill_loss(s, t, "mse"), ((s - t) ** 2).mean(), rtol=1e-5)
  with pytest.raises(ValueError, match="'l1' is not one of"):
    T.distill_loss(s, t, "l1")


def test_distill_trains_only_new_rows_and_lowers_the_loss(tiny):
  bpe = _bpe()
  start = T.transfer(tiny, bpe, "mean")
  plan = T.init_lib.build_plan(tiny.tokenizer, start.tokenizer)
  fresh = plan.fresh()
  assert len(fresh) > 0
  out, history = T.distill(start, tiny, TEXTS, trainable=fresh, steps=40, batch_size=8,
                           learning_rate=3e-2, lengths=(32, 64))
  assert np.mean(history[-5:]) < 0.7 * np.mean(history[:5])
  before, after = T.word_embeddings(start), T.word_embeddings(out)
  frozen = np.setdiff1d(np.arange(len(before)), fresh)
  np.testing.assert_array_equal(after[frozen], before[frozen])
  assert not np.allclose(after[fresh], before[fresh])
  # The encoder is frozen.
  p0 = nnx.state(start.module.encoder.layers, nnx.Param)
  p1 = nnx.state(out.module.encoder.layers, nnx.Param)
  for a, b in zip(nnx.to_flat_state(p0), nnx.to_flat_state(p1)):
    np.testing.assert_array_equal(np.asarray(a[1][...]), np.asarray(b[1][...]))
  # Distilled embeddings are closer to the source's than the starting point's.
  ref = jaxemb.encode(tiny, TEXTS)
  gap = lambda m: np.mean(1 - np.sum(jaxemb.encode(m, TEXTS) * ref, axis=1))
  assert gap(out) < gap(start)


def test_distill_buckets_cover_the_cut_at_two_characters_a_token():
  assert T.distill_buckets(300) == (32, 64, 96, 128)  # the default cut: as before
  assert T.distill_buckets(1000) == (32, 64, 96, 128, 192, 256, 384)
  assert T.distill_buckets(5000)[-1] == 512
  with pytest.raises(ValueError, match="got 0"):
    T.distill_buckets(0)


def test_token_alignment_by_hand():
  # "isinstance(abc": the source cuts is ##ins ##tance ( a ##bc, the new tokenizer
  # isinstance ( ab ##c; "ab" and "##c" straddle the source's a | ##bc boundary.
  teacher = ([(0, 0), (0, 2), (2, 5), (5, 10), (10, 11), (11, 12), (12, 14), (0, 0)],
             [1, 0, 0, 0, 0, 0, 0, 1])
  student = ([(0, 0), (0, 10), (10, 11), (11, 13), (13, 14), (0, 0)], [1, 0, 0, 0, 0, 1])
  a = T.token_alignment(student, teacher, (6, 8))
  expected = np.zeros((6, 8), np.float32)
  expected[0, 0] = expected[5, 7] = 1  # [CLS] and [SEP]
  expected[1, 1:4] = 1 / 3
  expected[2, 4] = 1
  np.testing.assert_allclose(a, expected)
  # Padded shapes: extra rows and columns stay zero; truncated tokens are left out.
  assert T.token_alignment(student, teacher, (7, 9))[:6, :8].tolist() == expected.tolist()
  # The source cut after "(": its tokens still align; one special against two pair with none.
  cut = T.token_alignment(student, teacher, (6, 5))
  np.testing.assert_allclose(cut[1:3], expected[1:3, :5])
  assert not cut[[0, 3, 4, 5]].any()


def test_token_distill_loss_matches_numpy():
  rng = np.random.default_rng(1)
  s, t = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 4, 5))
  a = np.zeros((2, 3, 4))
  a[0, 0, :2] = 0.5
  a[0, 1, 3] = 1
  a[1, 2, 1:] = 1 / 3  # rows [0, 2], [1, 0] and [1, 1] are not aligned
  terms = []
  for b, i in [(0, 0), (0, 1), (1, 2)]:
    target = a[b, i] @ t[b]
    terms.append(1 - s[b, i] @ target / np.linalg.norm(s[b, i]) / np.linalg.norm(target))
  np.testing.assert_allclose(T.token_distill_loss(s, t, a), np.mean(terms), rtol=1e-5)


def test_distill_with_the_token_term_trains_only_new_rows(tiny):
  start = T.transfer(tiny, _bpe(), "mean")
  fresh = T.init_lib.build_plan(tiny.tokenizer, start.tokenizer).fresh()
  kwargs = dict(trainable=fresh, steps=30, batch_size=8, learning_rate=3e-2, lengths=(32, 64))
  out, history = T.distill(start, tiny, TEXTS, token_weight=1.0, **kwargs)
  _, pooled_only = T.distill(start, tiny, TEXTS, **kwargs)
  assert history[0] > pooled_only[0]  # the token term is added
  assert np.mean(history[-5:]) < 0.7 * np.mean(history[:5])
  before, after = T.word_embeddings(start), T.word_embeddings(out)
  frozen = np.setdiff1d(np.arange(len(before)), fresh)
  np.testing.assert_array_equal(after[frozen], before[frozen])
  with pytest.raises(ValueError, match="token_weight >= 0"):
    T.distill(start, tiny, TEXTS, token_weight=-1.0)


def test_cli_writes_a_loadable_model(tiny, tmp_path):
  src = jaxemb.save_pretrained(tiny, tmp_path / "src")
  tok_file = tmp_path / "bpe.json"
  _bpe().save(str(tok_file))
  texts = tmp_path / "texts.txt"
  texts.write_text("\n".join(TEXTS))
  parser = argparse.ArgumentParser()
  T.add_transfer_parser(parser.add_subparsers())
  for method, extra in (("mean", []), ("focus", []),
                        ("distill", ["--steps", "2", "--token-weight", "0.5"])):
    args = parser.parse_args(["transfer", "--model", str(src), "--tokenizer", str(tok_file),
                              "--method", method, "--texts", str(texts),
                              "--out", str(tmp_path / method), *extra])
    args.func(args)
    again = jaxemb.load_pretrained(tmp_path / method)
    assert again.tokenizer.encode("hello").tokens[0] == "[CLS]"
    assert T.word_embeddings(again).shape[0] == again.tokenizer.get_vocab_size(True)


def test_minilm_to_its_own_tokenizer_reproduces_it():
  minilm = jaxemb.load_pretrained("all-MiniLM-L6-v2")
  new = T.transfer(minilm, minilm.tokenizer, "mean")
  texts = ["This is an example sentence", "Each sentence is converted", "def foo(): pass"]
  np.testing.assert_allclose(jaxemb.encode(new, texts), jaxemb.encode(minilm, texts), atol=1e-6)
  src, dst = T.word_embeddings(minilm), T.word_embeddings(new)
  same = [i for i, t in enumerate(T.init_lib._id_to_token(minilm.tokenizer))
          if not t.startswith("[unused")]
  # Only rows the normaliser folds onto another token (e.g. "##(" -> "(") may differ.
  assert np.mean(np.all(src[same] == dst[same], axis=1)) > 0.98


@pytest.mark.slow
def test_sentence_transformers_loads_a_bpe_transfer(tiny, tmp_path, reference_python):
  """The export of a BPE-tokenized model is read from its tokenizer.json by
  sentence-transformers (not re-tokenised as WordPiece) and embeds as jaxemb does."""
  import subprocess
  new = T.transfer(tiny, _bpe(), "mean")
  jaxemb.save_pretrained(new, tmp_path / "m")
  config = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
  assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
  assert not (tmp_path / "m" / "vocab.txt").exists()
  want = jaxemb.encode(jaxemb.load_pretrained(tmp_path / "m"), TEXTS)
  code = ("import sys, numpy as np; from sentence_transformers import SentenceTransformer; "
          "m = SentenceTransformer(sys.argv[1], device='cpu'); "
          "np.save(sys.argv[2], m.encode(sys.argv[3:], normalize_embeddings=True))")
  out = tmp_path / "st.npy"
  run = subprocess.run([reference_python, "-c", code, str(tmp_path / "m"), str(out), *TEXTS],
                       capture_output=True, text=True, timeout=1800)
  assert run.returncode == 0, run.stderr[-3000:]
  np.testing.assert_allclose(np.load(out), want, atol=1e-5)
