"""sentence-transformers-style encode options over `jaxemb.encoding.encode`: prompts, query and
document encoding, `truncate_dim`, quantized `precision`, and `similarity`.

    emb = encode(model, texts, prompt_name="query", precision="int8", calibration_embeddings=cal)
    q, d = encode_query(model, queries), encode_document(model, docs)
    scores = similarity(q, d)                   # [Q, D] cosine

Prompts are texts prepended to every input, stored per model in `model.prompts` (name -> text)
with an optional `model.default_prompt_name`; `load_pretrained` / `save_pretrained` read and write
them in sentence-transformers' `config_sentence_transformers.json`, and the resolution rules are
sentence-transformers': an explicit `prompt` wins, then `prompt_name`, then the default prompt;
`encode_query` uses the "query" prompt and `encode_document` the first of "document", "passage",
"corpus" that the model has.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxemb import encoding
from jaxemb.model import EmbeddingModel
from jaxemb.quantization import check_precision, quantize_embeddings, similarity

__all__ = ["encode", "encode_document", "encode_query", "resolve_prompt", "similarity"]

DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


def prompts_of(model: EmbeddingModel) -> dict[str, str]:
  """The model's prompts (empty when it has none)."""
  return dict(getattr(model, "prompts", None) or {})


def resolve_prompt(model: EmbeddingModel, prompt: str | None = None,
                   prompt_name: str | None = None) -> str | None:
  """The text to prepend: `prompt`, else `model.prompts[prompt_name]`, else the default prompt."""
  if prompt is not None:
    if not isinstance(prompt, str):
      raise ValueError(f"prompt must be a string, got {type(prompt).__name__} {prompt!r:.50}")
    return prompt
  prompts = prompts_of(model)
  if prompt_name is not None:
    if prompt_name not in prompts:
      raise ValueError(f"unknown prompt_name {prompt_name!r}; the model's prompts are "
                       f"{sorted(prompts)}")
    return prompts[prompt_name]
  default = getattr(model, "default_prompt_name", None)
  return prompts.get(default) if default is not None else None


def encode(model: EmbeddingModel, texts: Sequence[str], *, prompt: str | None = None,
           prompt_name: str | None = None, precision: str = "float32",
           truncate_dim: int | None = None, ranges=None, calibration_embeddings=None,
           normalize: bool = True, max_seq_length: int | None = None,
           position_scaling: str | None = None, attention_scaling: bool = False,
           **kwargs) -> np.ndarray:
  """Embeds `texts` (see `jaxemb.encoding.encode`) with prompts, truncation and quantization.

  Args:
    model: an `EmbeddingModel`.
    texts: strings.
    prompt / prompt_name: text prepended to every input, given directly or by name (see
      `resolve_prompt`).
    precision: "float32", "int8", "uint8", "binary" or "ubinary" (`quantize_embeddings`).
    truncate_dim: keep the first `truncate_dim` dimensions (Matryoshka-style); with
      `normalize`, rows are re-normalised after truncation so cosine stays a dot product.
    ranges / calibration_embeddings: int8/uint8 calibration, as `quantize_embeddings`; both
      are in the (truncated) float space of the output.
    normalize: L2-normalise the embeddings.
    max_seq_length / position_scaling: tokens kept per text and, past the trained positions,
      the long-context method ("pcw", "gp", "rp", "pi"; rotary: "pi", "ntk", "self_extend"),
      see `jaxemb.long_context`; by default the model's own length.
    attention_scaling: LongEmbed's attention scaling for texts past the trained length under
      a long-context method other than "pcw" (`jaxemb.long_context.extend`).
    **kwargs: passed to `jaxemb.encoding.encode` (batch_size, show_progress, mesh, layer).

  Returns:
    [N, truncate_dim or D] in the dtype of `precision` (packed bits for binary precisions).
  """
  check_precision(precision)  # truncate_dim and layer are checked by encoding.encode
  text = resolve_prompt(model, prompt, prompt_name)
  texts = encoding._check_texts(texts)
  if text:
    texts = [text + t for t in texts]
  # encoding.encode truncates the pooled vector before normalising (Matryoshka-style).
  if max_seq_length is None and position_scaling is None:
    if attention_scaling:
      raise ValueError("attention_scaling needs a long-context position_scaling and "
                       "max_seq_length past the trained length")
    emb = encoding.encode(model, texts, normalize=normalize, truncate_dim=truncate_dim, **kwargs)
  else:
    from jaxemb import long_context
    emb = long_context.encode(model, texts, max_seq_length=max_seq_length,
                              position_scaling=position_scaling,
                              attention_scaling=attention_scaling, normalize=normalize,
                              truncate_dim=truncate_dim, **kwargs)
  if precision == "float32":
    return emb
  return quantize_embeddings(emb, precision, ranges=ranges,
                             calibration_embeddings=calibration_embeddings)


def encode_query(model: EmbeddingModel, texts: Sequence[str], **kwargs) -> np.ndarray:
  """`encode` with the model's "query" prompt (when it has one and none is given)."""
  if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None \
      and "query" in prompts_of(model):
    kwargs["prompt_name"] = "query"
  return encode(model, texts, **kwargs)


def encode_document(model: EmbeddingModel, texts: Sequence[str], **kwargs) -> np.ndarray:
  """`encode` with the model's "document" (or "passage", "corpus") prompt, if any."""
  if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
    for name in DOCUMENT_PROMPT_NAMES:
      if name in prompts_of(model):
        kwargs["prompt_name"] = name
        break
  return encode(model, texts, **kwargs)
