"""Build a `SentenceEmbedder` from a config: encoders are looked up by name."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from flax import nnx

from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.ssm import SSMConfig, SSMEncoder
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder

# name -> (config class, encoder class).
ENCODERS: dict[str, tuple[type, Callable[..., nnx.Module]]] = {
    "transformer": (TransformerConfig, TransformerEncoder),
    "ssm": (SSMConfig, SSMEncoder),
}


def register_encoder(name: str, config_cls: type, encoder_cls: Callable[..., nnx.Module]) -> None:
  """Makes `build_embedder` accept `encoder=name`."""
  ENCODERS[name] = (config_cls, encoder_cls)


def encoder_config(name: str, options: Mapping[str, Any]):
  """The encoder's config dataclass; unknown options raise ValueError naming them."""
  if name not in ENCODERS:
    raise ValueError(f"unknown encoder {name!r}; available: {sorted(ENCODERS)}")
  config_cls, _ = ENCODERS[name]
  known = {f.name for f in dataclasses.fields(config_cls)}
  unknown = sorted(set(options) - known)
  if unknown:
    raise ValueError(f"unknown {name} encoder option(s) {unknown}; valid: {sorted(known)}")
  return config_cls(**options)


def build_embedder(encoder: str, encoder_options: Mapping[str, Any], *, pooling: str = "mean",
                   pooling_options: Mapping[str, Any] | None = None, normalize: bool = True,
                   rngs: nnx.Rngs) -> SentenceEmbedder:
  """A randomly initialised `SentenceEmbedder` with the named encoder and pooling head."""
  cfg = encoder_config(encoder, encoder_options)
  module = ENCODERS[encoder][1](cfg, rngs=rngs)
  pooling_options = dict(pooling_options or {})
  if pooling == "multi_layer":
    pooling_options.setdefault("num_layers", module.num_hidden_states)
  pooler = Pooler(pooling, module.hidden_size, rngs=rngs, **pooling_options)
  return SentenceEmbedder(module, pooler, normalize=normalize)
