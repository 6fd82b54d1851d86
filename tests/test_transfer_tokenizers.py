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
