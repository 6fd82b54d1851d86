"""A character-level BERT-style tokenizer for tests with tiny random models (no downloads)."""

import string

import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, processors


def tiny_tokenizer() -> tokenizers.Tokenizer:
  """WordPiece over single characters: a word of n letters is n tokens, wrapped in [CLS] [SEP]."""
  vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase)
           + list(string.digits) + list(".,!?'-") + ["##" + c for c in string.ascii_lowercase])
  tok = tokenizers.Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)},
                                              unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  return tok


def tiny_model(*, vocab_size: int | None = None, max_len: int = 32, seed: int = 0):
  """A randomly initialised (from `seed`) 2-layer, width-32 mean-pooling embedder with
  `tiny_tokenizer` (vocab_size defaults to the tokenizer's; max_len is both position table and
  max length)."""
  from flax import nnx

  from jaxemb.model import EmbeddingModel
  from jaxemb.nn.embedder import SentenceEmbedder
  from jaxemb.nn.pooling import Pooler
  from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder
  tok = tiny_tokenizer()
  cfg = TransformerConfig(vocab_size=vocab_size or tok.get_vocab_size(), hidden_size=32,
                          num_layers=2, num_heads=4, intermediate_size=64,
                          max_position_embeddings=max_len)
  rngs = nnx.Rngs(seed)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs), Pooler("mean", 32, rngs=rngs))
  return EmbeddingModel(module=module, tokenizer=tok, max_seq_length=max_len, name="tiny")
