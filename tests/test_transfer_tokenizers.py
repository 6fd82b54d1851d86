"""Code tokenizers for transfer and their token statistics (hand-counted references)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxemb.adapt import tokenizers_train as TT
from jaxemb.adapt import transfer as T
from tiny_tokenizer import tiny_tokenizer

CODE = ["def add(a, b):\n    return a + b", "class Foo:\n    def bar(self):\n        pass",
        "Return the sum of two numbers.", "for i in range(10):\n    print(i)"] * 4


def test_token_stats_hand_counted():
  tok = tiny_tokenizer()  # one token per character, plus [CLS] and [SEP]
  texts = ["ab", "abcd", "a$", "abcdefgh"]  # "$" is not in the vocabulary -> [UNK]
  stats = TT.token_stats(tok, texts, max_length=6)
  lengths = np.array([4, 6, 4, 10])
  assert stats["mean"] == pytest.approx(lengths.mean())
  assert stats["p95"] == pytest.approx(np.percentile(lengths, 95))
  assert stats["truncated_pct"] == pytest.approx(25.0)  # only the 10-token text exceeds 6
  assert stats["unk_pct"] == pytest.approx(100 * 1 / (2 + 4 + 2 + 8))


def test_code_bpe_spells_everything():
  tok = TT.train_code_bpe(CODE, vocab_size=300, min_frequency=1)
  assert tok.token_to_id("[PAD]") == 0 and tok.token_to_id("[UNK]") == 1
  text = "def new(x):\n\treturn 'é' # ünïcode"
  assert tok.decode(tok.encode(text).ids) == text  # byte-level: lossless, no [UNK]
  assert TT.token_stats(tok, [text])["unk_pct"] == 0
  with pytest.raises(ValueError, match="vocab_size=100"):
    TT.train_code_bpe(CODE, vocab_size=100)


def test_unigram_collapses_whitespace_and_has_unk():
  tok = TT.train_unigram(CODE, vocab_size=60)
  assert tok.get_vocab_size() <= 60 and tok.token_to_id("[UNK]") is not None
  a = tok.encode("def  add(a,\n        b)").tokens
  b = tok.encode("def add(a, b)").tokens
  assert a == b
  assert TT.token_stats(tok, ["def 中"])["unk_pct"] > 0


@pytest.mark.parametrize("train", [TT.train_code_bpe, TT.train_unigram])
def test_trained_tokenizers_transfer(train):
  from test_transfer import _tiny
  model = _tiny()
  tok = train(CODE, 300) if train is TT.train_code_bpe else train(CODE, 60)
  new = T.transfer(model, tok, "mean")
  enc = new.tokenizer.encode("def add(a, b)")
  assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
  assert T.word_embeddings(new).shape[0] == new.tokenizer.get_vocab_size(True)


def test_table_formats_rows():
  row = {"tokenizer": "bpe", "method": "mean", "mrr@10": 0.51234, "recall@10": 0.7,
         "query_tokens_mean": 12.34, "query_tokens_p95": 30, "code_tokens_mean": 100.0,
         "code_tokens_p95": 250, "code_truncated_pct": 1.5, "unk_pct": 0.0,
         "parameters": 22_700_000}
  text = TT.table([row])
  assert "| bpe | mean | 0.512 | 0.700 | 12.3 / 30 | 100.0 / 250 | 1.5 | 0.00 | 22.7M |" in text


def test_finetune_runs_the_job_on_the_transferred_model(tmp_path):
  import jaxemb
  from jaxemb.data import code_search
  from jaxemb.train.metrics import read_metrics
  from test_transfer import _tiny
  model = T.transfer(_tiny(), TT.train_code_bpe(CODE, vocab_size=300, min_frequency=1), "mean")
  split = "validation[:32]"
  got = TT.finetune(model, tmp_path, split=split, config=f"{TT.DEFAULT_JOB}:runlocal")
  assert got["steps"] == 6  # the job's runlocal length
  # The job read the saved model with the new tokenizer: its step-0 figure is the transferred
  # model's own evaluation, computed here apart.
  direct = code_search.evaluate_model(lambda t: jaxemb.encode(model, t, show_progress=False),
                                      split)
  assert got["zero_shot_mrr@10"] == pytest.approx(direct["mrr@10"], abs=1e-5)
  saved = jaxemb.load_pretrained(tmp_path / "model")
  assert saved.tokenizer.get_vocab(True) == model.tokenizer.get_vocab(True)
  losses = [r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r]
  assert losses and all(np.isfinite(losses))
  with pytest.raises(ValueError, match="finished run"):
    TT.finetune(model, tmp_path, split=split, config=f"{TT.DEFAULT_JOB}:runlocal")


def test_table_marks_missing_token_statistics():
  text = TT.table([{"tokenizer": "bpe", "method": "distill + fine-tune", "mrr@10": 0.5,
                    "recall@10": 0.75}])
  assert "| bpe | distill + fine-tune | 0.500 | 0.750 | – | – | – | – | – |" in text


def test_experiment_refuses_zett_without_a_hypernetwork_and_unknown_tokenizers(tmp_path):
  with pytest.raises(ValueError, match="needs hypernet="):
    TT.experiment(tmp_path, methods=["mean", "zett"])
  with pytest.raises(ValueError, match="'bpe_9k'"):
    TT.experiment(tmp_path, methods=["mean"], tokenizer_names=["code_bpe_16k", "bpe_9k"])


def test_uncased_code_bpe_reads_text_as_the_uncased_source():
  tok = TT.train_code_bpe(CODE, vocab_size=300, min_frequency=1, lowercase=True,
                          collapse_whitespace=True)
  assert tok.encode("Def  ADD(a,\n    b)").tokens == tok.encode("def add(a, b)").tokens
  assert tok.decode(tok.encode("Return X").ids) == "return x"
  # GPT-2's split keeps words apart; without it frequent phrases become single tokens.
  spans = TT.train_code_bpe(CODE, vocab_size=500, min_frequency=1, split="spans")
  words = TT.train_code_bpe(CODE, vocab_size=500, min_frequency=1)
  count = lambda tok: sum(len(e.ids) for e in tok.encode_batch(CODE))
  assert count(spans) < count(words)
  phrase = "def bar(self):"
  assert all("Ġ" not in t[1:] for t in words.encode(phrase).tokens)
  assert any("Ġ" in t[1:] for t in spans.encode(phrase).tokens)
  # "identifiers": a token is a run of letters, digits and "_" or a run of other characters.
  ident = TT.train_code_bpe(CODE + ["add_one(a_b)"] * 8, vocab_size=500, min_frequency=1,
                            split="identifiers")
  tokens = [t.removeprefix("Ġ") for t in ident.encode("def add_one(a_b):").tokens]
  assert "add_one" in tokens
  assert all(t.replace("_", "a").isalnum() or not any(ch.isalnum() for ch in t) for t in tokens)
  with pytest.raises(ValueError, match="split='words'"):
    TT.train_code_bpe(CODE, vocab_size=300, split="words")


def test_expand_wordpiece_adds_the_biggest_savings_and_keeps_the_source():
  src = tiny_tokenizer()  # a word of n letters is n tokens; "_" is [UNK]
  texts = ["hello hello hello world!! is_ok"] * 2 + ["once"]
  # Savings = frequency x (source tokens - 1), by hand: hello 6 x 4 = 24, is_ok ("is" "_" "ok",
  # 5 tokens) 2 x 4 = 8, world 2 x 4 = 8, "!!" 2 x 1 = 2; "once" is seen once (below
  # min_frequency). Ties go alphabetically.
  tok = TT.expand_wordpiece(src, texts, 3)
  n = src.get_vocab_size()
  assert tok.get_vocab_size() == n + 3
  assert [tok.token_to_id(t) for t in ("hello", "is_ok", "world")] == [n, n + 1, n + 2]
  assert tok.token_to_id("!!") is None and tok.token_to_id("once") is None
  assert all(tok.token_to_id(t) == i for t, i in src.get_vocab().items())
  assert tok.encode("hello world!! is_ok").tokens == [
      "[CLS]", "hello", "world", "!", "!", "is_ok", "[SEP]"]
  # Text without added pieces tokenises as the source does; a name is only taken whole.
  for text in ("a b. c, d!", "is_okay", "once upon a time"):
    assert tok.encode(text).ids == src.encode(text).ids, text
  runs = TT.expand_wordpiece(src, texts, 4)
  assert runs.encode("world!!!").tokens == ["[CLS]", "world", "!!", "!", "[SEP]"]
  only = TT.expand_wordpiece(src, texts, kinds=("punctuation", "names"))
  assert sorted(set(only.get_vocab()) - set(src.get_vocab())) == ["!!", "is_ok"]
  padded = tiny_tokenizer()
  padded.enable_padding(length=16)  # as a tokenizer.json with fixed padding is read
  assert TT.expand_wordpiece(padded, texts, 3).get_vocab() == tok.get_vocab()


def test_expanded_wordpiece_transfer_copies_every_source_row():
  from tiny_tokenizer import tiny_model
  model = tiny_model()
  tok = TT.expand_wordpiece(model.tokenizer, ["hello hello"], 1)
  new = T.transfer(model, tok, "mean")
  old, rows = np.asarray(T.word_embeddings(model)), np.asarray(T.word_embeddings(new))
  n = model.tokenizer.get_vocab_size()
  np.testing.assert_array_equal(rows[:n], old)
  pieces = [model.tokenizer.token_to_id(t) for t in ("h", "##e", "##l", "##l", "##o")]
  np.testing.assert_allclose(rows[n], old[pieces].mean(0), rtol=1e-6, atol=1e-7)


def test_expand_wordpiece_refuses_bad_input():
  with pytest.raises(ValueError, match="WordPiece source.*'BPE'"):
    TT.expand_wordpiece(TT.train_code_bpe(CODE, vocab_size=300), CODE)
  with pytest.raises(ValueError, match="num_new=0"):
    TT.expand_wordpiece(tiny_tokenizer(), CODE, 0)
  with pytest.raises(ValueError, match="kinds=\\('verbs',\\)"):
    TT.expand_wordpiece(tiny_tokenizer(), CODE, kinds=("verbs",))
  from tokenizers import pre_tokenizers
  whitespace = tiny_tokenizer()
  whitespace.pre_tokenizer = pre_tokenizers.Whitespace()
  with pytest.raises(ValueError, match="pre-tokenizer is 'Whitespace'"):
    TT.expand_wordpiece(whitespace, CODE)


def test_every_named_tokenizer_builds_and_spells_code():
  src = tiny_tokenizer()
  for name, build in TT.TOKENIZERS.items():
    tok = build(CODE, src)
    assert tok.get_vocab_size(True) > 0, name
    assert tok.encode("def add(a, b):").ids, name
  # Words and runs seen once are added, names are not.
  once = TT.TOKENIZERS["wordpiece_expanded_16k_words_punctuation_once"](["hello is_ok!!"], src)
  added = set(once.get_vocab()) - set(src.get_vocab())
  assert added == {"hello", "!!"}
