"""Edits of a (pretrained) `SentenceEmbedder`: a new pooling head, fewer encoder layers.

Used by the text recipes to fine-tune a pretrained encoder with another head (the pooling
ablation) or to start a smaller student from the first layers of a teacher (distillation).
Both edit the module in place and return it; the encoder's weights are kept as they are.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from flax import nnx

from jaxemb.nn.layers import check_int_range
from jaxemb.nn.pooling import Pooler


def replace_pooler(module: nnx.Module, kind: str, options: Mapping[str, Any] | None = None, *,
                   rngs: nnx.Rngs) -> nnx.Module:
  """Gives `module` (a `SentenceEmbedder`) a freshly initialised `Pooler(kind, **options)`.

  "multi_layer" pools every hidden state the encoder returns (embeddings + each layer), so its
  `num_layers` defaults to `module.encoder.num_hidden_states`.
  """
  options = dict(options or {})
  if kind == "multi_layer":
    options.setdefault("num_layers", module.encoder.num_hidden_states)
  module.pooler = Pooler(kind, module.dim, rngs=rngs, **options)
  return module


def keep_first_layers(module: nnx.Module, num_layers: int) -> nnx.Module:
  """Drops all but the first `num_layers` transformer layers of `module.encoder`.

  The result is the network that `encoder(..., num_layers=n)` runs, as a model of its own:
  its config says `num_layers=n`, so export writes an `n`-layer BERT.
  """
  encoder = module.encoder
  if not hasattr(encoder, "layers") or not hasattr(encoder, "cfg"):
    raise ValueError(f"keep_first_layers needs a TransformerEncoder, got "
                     f"{type(encoder).__name__}")
  check_int_range("num_layers", num_layers, 1, encoder.cfg.num_layers)
  if encoder.cfg.norm_position == "pre" and num_layers < encoder.cfg.num_layers:
    # The final norm of a pre-LN model belongs to its last layer: a cut model would apply it to
    # an earlier layer's output, which `encoder(..., num_layers=n)` does not do.
    raise ValueError("keep_first_layers: pre-LN encoders are not supported (their final norm "
                     "belongs to the last layer)")
  encoder.layers = nnx.List(list(encoder.layers)[:num_layers])
  encoder.cfg = dataclasses.replace(encoder.cfg, num_layers=num_layers)
  return module


def adapt_pretrained(module: nnx.Module, model_config: Mapping[str, Any], rngs: nnx.Rngs
                     ) -> nnx.Module:
  """Applies a text recipe's `model.num_layers` (> 0: keep the first layers) and `model.pooling`
  / `model.pooling_options` (a kind other than the pretrained head's, or any options: a new
  head) to a pretrained `SentenceEmbedder`."""
  num_layers = model_config.get("num_layers") or 0
  if num_layers:
    keep_first_layers(module, num_layers)
  kind = model_config.get("pooling") or module.pooler.kind
  options = dict(model_config.get("pooling_options") or {})
  if kind != module.pooler.kind or options:
    replace_pooler(module, kind, options, rngs=rngs)
  return module
