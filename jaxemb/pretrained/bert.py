"""Hugging Face BERT checkpoints <-> `TransformerEncoder` parameters.

The table below is the whole mapping: HF name, path in the NNX module, and whether the matrix is
transposed (torch `nn.Linear` stores weights as (out, in); NNX kernels are (in, out)).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from flax import nnx

from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder

# Keys present in HF BERT checkpoints that the encoder does not use (the pooler is the NSP head,
# not part of sentence embedding; position_ids is a buffer).
IGNORED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")

_LAYER_TABLE = (
    # (HF suffix, module path inside layer, transpose)
    ("attention.self.query.weight", ("attention", "query", "kernel"), True),
    ("attention.self.query.bias", ("attention", "query", "bias"), False),
    ("attention.self.key.weight", ("attention", "key", "kernel"), True),
    ("attention.self.key.bias", ("attention", "key", "bias"), False),
    ("attention.self.value.weight", ("attention", "value", "kernel"), True),
    ("attention.self.value.bias", ("attention", "value", "bias"), False),
    ("attention.output.dense.weight", ("attention", "out", "kernel"), True),
    ("attention.output.dense.bias", ("attention", "out", "bias"), False),
    ("attention.output.LayerNorm.weight", ("attention_norm", "scale"), False),
    ("attention.output.LayerNorm.bias", ("attention_norm", "bias"), False),
    ("intermediate.dense.weight", ("ffn_in", "kernel"), True),
    ("intermediate.dense.bias", ("ffn_in", "bias"), False),
    ("output.dense.weight", ("ffn_out", "kernel"), True),
    ("output.dense.bias", ("ffn_out", "bias"), False),
    ("output.LayerNorm.weight", ("ffn_norm", "scale"), False),
    ("output.LayerNorm.bias", ("ffn_norm", "bias"), False),
)


# jaxemb's own keys in config.json for an encoder with long-context positions (absolute: "gp",
# "rp", "pi"): Hugging Face ignores them, so transformers/sentence-transformers read the table
# as plain positions (the same rows for inputs past the trained length; under "pi" shorter
# inputs read the interpolated rows there, where jaxemb reads the trained rows i * s).
POSITION_SCALING_KEY = "jaxemb_position_scaling"
# LongEmbed's attention scaling of an extended export (TransformerConfig.attention_scale_length).
ATTENTION_SCALE_KEY = "jaxemb_attention_scale_length"


def max_input_length(hf: dict) -> int:
  """The longest input an exported config takes: its rows, times s under grouped/recurrent
  positions."""
  rows = int(hf["max_position_embeddings"])
  if hf.get(POSITION_SCALING_KEY) in ("gp", "rp"):
    return rows * int(hf.get(POSITION_SCALING_KEY + "_factor", 1))
  return rows


def config_from_hf(hf: dict, **overrides) -> TransformerConfig:
  """`TransformerConfig` from a Hugging Face BERT `config.json` dict."""
  if hf.get("model_type", "bert") != "bert":
    raise ValueError(f"model_type={hf.get('model_type')!r} is not supported yet; expected 'bert'")
  pos = hf.get("position_embedding_type", "absolute")
  if pos != "absolute":
    raise ValueError(f"position_embedding_type={pos!r} is not supported; expected 'absolute'")
  cfg = dict(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      intermediate_size=hf["intermediate_size"],
      max_position_embeddings=hf["max_position_embeddings"],
      type_vocab_size=hf.get("type_vocab_size", 2),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12), hidden_act=hf.get("hidden_act", "gelu"),
      dropout_rate=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout_rate=hf.get("attention_probs_dropout_prob", 0.1),
      pad_token_id=hf.get("pad_token_id", 0) or 0)
  if hf.get(POSITION_SCALING_KEY):  # a long-context (e.g. PI-tuned) jaxemb export
    cfg.update(position_scaling=hf[POSITION_SCALING_KEY],
               position_scaling_factor=int(hf.get(POSITION_SCALING_KEY + "_factor", 1)))
  if hf.get(ATTENTION_SCALE_KEY):
    cfg.update(attention_scale_length=int(hf[ATTENTION_SCALE_KEY]))
  cfg.update(overrides)
  return TransformerConfig(**cfg)


def config_to_hf(cfg: TransformerConfig) -> dict:
  """Hugging Face `config.json` dict for a post-LN, absolute-position encoder."""
  if cfg.norm_position != "post" or cfg.position_embedding != "absolute":
    raise ValueError("only BERT-layout encoders (norm_position='post', "
                     "position_embedding='absolute') export to Hugging Face BERT; got "
                     f"norm_position={cfg.norm_position!r}, "
                     f"position_embedding={cfg.position_embedding!r}")
  return {
      "architectures": ["BertModel"], "model_type": "bert",
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "intermediate_size": cfg.intermediate_size,
      "max_position_embeddings": cfg.max_position_embeddings,
      "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.layer_norm_eps,
      "hidden_act": cfg.hidden_act, "hidden_dropout_prob": cfg.dropout_rate,
      "attention_probs_dropout_prob": cfg.attention_dropout_rate,
      "pad_token_id": cfg.pad_token_id, "position_embedding_type": "absolute",
      "initializer_range": 0.02,
      **({POSITION_SCALING_KEY: cfg.position_scaling,
          POSITION_SCALING_KEY + "_factor": cfg.position_scaling_factor}
         if cfg.position_scaling else {}),
      **({ATTENTION_SCALE_KEY: cfg.attention_scale_length} if cfg.attention_scale_length
         else {}),
  }


def weight_table(cfg: TransformerConfig) -> Iterator[tuple[str, tuple, bool]]:
  """Yields (HF key, NNX path, transpose) for every parameter of a BERT-layout encoder."""
  yield "embeddings.word_embeddings.weight", ("embeddings", "word", "embedding"), False
  yield "embeddings.position_embeddings.weight", ("embeddings", "position", "embedding"), False
  if cfg.type_vocab_size:
    yield ("embeddings.token_type_embeddings.weight", ("embeddings", "token_type", "embedding"),
           False)
  yield "embeddings.LayerNorm.weight", ("embeddings", "norm", "scale"), False
  yield "embeddings.LayerNorm.bias", ("embeddings", "norm", "bias"), False
  for i in range(cfg.num_layers):
    for suffix, path, transpose in _LAYER_TABLE:
      yield f"encoder.layer.{i}.{suffix}", ("layers", i) + path, transpose


def _variable(module: nnx.Module, path: tuple) -> nnx.Variable:
  node = module
  for part in path:
    node = node[part] if isinstance(part, int) else getattr(node, part)
  return node


def load_hf_weights(encoder: TransformerEncoder, weights: dict[str, np.ndarray],
                    *, prefix: str = "") -> None:
  """Copies HF BERT `weights` (name -> array) into `encoder` in place.

  Raises ValueError naming any missing key, unexpected key or shape mismatch.
  """
  cfg = encoder.cfg
  if prefix == "" and any(k.startswith("bert.") for k in weights):
    prefix = "bert."
  expected = set()
  for key, path, transpose in weight_table(cfg):
    full = prefix + key
    expected.add(full)
    if full not in weights:
      raise ValueError(f"checkpoint is missing weight {full!r}")
    value = np.asarray(weights[full])
    value = value.T if transpose else value
    var = _variable(encoder, path)
    current = var.get_value()
    if value.shape != current.shape:
      raise ValueError(f"weight {full!r} has shape {value.shape}, expected {current.shape}")
    var.set_value(value.astype(current.dtype))
  unexpected = sorted(k for k in weights if k not in expected
                      and k.removeprefix(prefix) not in IGNORED_KEYS
                      and not k.startswith("cls."))  # masked-LM head of pre-training checkpoints
  if unexpected:
    raise ValueError(f"checkpoint has weights the encoder does not know: {unexpected[:10]}")


def hf_weights(encoder: TransformerEncoder) -> dict[str, np.ndarray]:
  """The encoder's parameters as an HF BERT state dict (float32, torch layouts)."""
  out = {}
  for key, path, transpose in weight_table(encoder.cfg):
    value = np.asarray(_variable(encoder, path).get_value(), dtype=np.float32)
    out[key] = np.ascontiguousarray(value.T if transpose else value)
  return out
