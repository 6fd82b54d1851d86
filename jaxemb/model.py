"""`EmbeddingModel`: an NNX sentence embedder bundled with its tokenizer and limits."""

from __future__ import annotations

import dataclasses

import tokenizers

from jaxemb.nn.embedder import SentenceEmbedder


@dataclasses.dataclass
class EmbeddingModel:
  """What `jaxemb.load_pretrained` returns and `jaxemb.encode` takes.

  Attributes:
    module: the NNX embedder (`encoder` + `pooler`, normalises when `module.normalize`).
    tokenizer: a Hugging Face `tokenizers.Tokenizer`; truncation and padding are handled by
      `encode`, so its own settings are ignored.
    max_seq_length: tokens kept per text (special tokens included), as sentence-transformers'
      `max_seq_length`.
    name: where the model came from (a name or a directory).
    encoder_config: the encoder's config in Hugging Face `config.json` form, for export.
    prompts: named prompts prepended to texts (sentence-transformers'
      `config_sentence_transformers.json`), e.g. {"query": "query: "}.
    default_prompt_name: the prompt used when `encode` is given none.
    truncate_dim: the embedding size `encode` returns when given none (the first dims,
      re-normalised); None keeps all. Saved as sentence-transformers' `truncate_dim`.
  """

  module: SentenceEmbedder
  tokenizer: tokenizers.Tokenizer
  max_seq_length: int
  name: str = ""
  encoder_config: dict = dataclasses.field(default_factory=dict)
  prompts: dict[str, str] = dataclasses.field(default_factory=dict)
  default_prompt_name: str | None = None
  truncate_dim: int | None = None

  @property
  def dim(self) -> int:
    return self.module.dim

  @property
  def pad_token_id(self) -> int:
    return self.module.encoder.cfg.pad_token_id
