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
