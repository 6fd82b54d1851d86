"""Long-context encoding of trained encoders without (or with little) training (LongEmbed).

    long = extend(model, max_seq_length=2048, position_scaling="pi")   # an EmbeddingModel
    emb = jaxemb.encode(model, texts, max_seq_length=2048, position_scaling="pcw")

Methods (`METHODS`), by the encoder's position type:
  absolute (BERT, MiniLM: a table of trained position rows, 512 for MiniLM):
    "pcw" parallel context windows: the token sequence is cut into chunks of the trained length
          (each wrapped in the model's special tokens), every chunk is embedded alone and the
          pooled chunk vectors are averaged weighted by their token counts (so under mean
          pooling it is the mean over all tokens of the chunk-local states), then normalised;
    "gp"  grouped positions pid // s, "rp" recurrent positions pid mod trained, "pi" position
          interpolation (`jaxemb.nn.long_context`), with s = ceil(max_seq_length / trained);
  rotary: "pi" (linear), "ntk" (NTK-aware base), "self_extend" (grouped attention outside a
          neighbour window; `self_extend_group` / `self_extend_window` default to LongEmbed's
          (3, trained/2) at s <= 2, (5, trained/4) at s <= 4, (9, trained/8) beyond).
  None    truncation at max_seq_length (at most the trained length for absolute positions).
Inputs within the trained length embed exactly as before under every method (tested).
`attention_scaling=True` adds LongEmbed's attention scaling (logits x log n / log trained for a
text of n > trained tokens) to gp, rp, pi, ntk and self_extend.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxemb import encoding
from jaxemb.model import EmbeddingModel
from jaxemb.nn import long_context as positions_lib
from jaxemb.nn.layers import check_int_range

METHODS: dict[str, tuple[str, ...]] = {
    "absolute": ("pcw", "gp", "rp", "pi"),
    "rotary": ("pi", "ntk", "self_extend"),
}


def trained_length(model: EmbeddingModel) -> int:
  """The positions the encoder was trained with (its position table rows; for rotary encoders
  the position limit of its config)."""
  return _encoder_config(model).max_position_embeddings


def _raw_config(model: EmbeddingModel):
  cfg = getattr(model.module.encoder, "cfg", None)
  if cfg is None or not hasattr(cfg, "position_embedding"):
    raise ValueError(f"long-context methods need a transformer encoder; {model.name!r} has "
                     f"{type(model.module.encoder).__name__}")
  return cfg


def _encoder_config(model: EmbeddingModel):
  cfg = _raw_config(model)
  if cfg.position_scaling or cfg.rope_scaling:
    raise ValueError(f"{model.name!r} is already extended (position_scaling="
                     f"{cfg.position_scaling!r}, rope_scaling={cfg.rope_scaling!r})")
  return cfg


def check_method(model: EmbeddingModel, max_seq_length: int | None,
                 position_scaling: str | None) -> None:
  """ValueError unless `position_scaling` applies to the model's positions at that length."""
  cfg = _encoder_config(model)
  trained = cfg.max_position_embeddings
  if max_seq_length is not None:
    check_int_range("max_seq_length", max_seq_length, 1, 1 << 20)
  if position_scaling is None:
    if cfg.position_embedding == "absolute" and (max_seq_length or 0) > trained:
      raise ValueError(f"max_seq_length={max_seq_length} exceeds the {trained} trained "
                       f"positions of {model.name!r}; pass position_scaling, one of "
                       f"{METHODS['absolute']}")
    return
  valid = METHODS[cfg.position_embedding]
  if position_scaling not in valid:
    known = sorted({m for ms in METHODS.values() for m in ms})
    what = ("unknown position_scaling" if position_scaling not in known else
            f"position_scaling does not apply to {cfg.position_embedding} positions:")
    raise ValueError(f"{what} {position_scaling!r}; {model.name!r} has "
                     f"{cfg.position_embedding} positions, valid: {valid}")
  if max_seq_length is None:
    raise ValueError(f"position_scaling={position_scaling!r} needs max_seq_length (the target "
                     f"length in tokens)")


def scale_factor(max_seq_length: int, trained: int) -> int:
  """s = ceil(max_seq_length / trained), at least 1."""
  return max(1, math.ceil(max_seq_length / trained))


def self_extend_defaults(factor: int, trained: int) -> tuple[int, int]:
  """LongEmbed's SelfExtend (group, window) for a length factor s over a 512-token model,
  scaled to `trained`: (3, 256) at 1k, (5, 128) at 2k, (9, 64) at 4k and beyond."""
  group, divisor = (3, 2) if factor <= 2 else (5, 4) if factor <= 4 else (9, 8)
  return group, max(1, trained // divisor)


def _with_config(module, cfg):
  """A copy of `module` whose transformer config (held by the encoder and its layers) is `cfg`."""
  module = nnx.clone(module)
  old = module.encoder.cfg
  for _, sub in nnx.iter_modules(module):
    if getattr(sub, "cfg", None) is old:
      sub.cfg = cfg
  return module


def check_attention_scaling(attention_scaling: bool, position_scaling: str | None) -> None:
  """ValueError when attention scaling is asked for where it cannot act (truncation, pcw)."""
  if attention_scaling and position_scaling in (None, "pcw"):
    raise ValueError(f"attention_scaling acts on texts past the trained length under gp, rp, "
                     f"pi, ntk or self_extend; position_scaling={position_scaling!r} never "
                     f"encodes one")


def extend(model: EmbeddingModel, max_seq_length: int, position_scaling: str | None, *,
           attention_scaling: bool = False, self_extend_group: int | None = None,
           self_extend_window: int | None = None) -> EmbeddingModel:
  """A copy of `model` that takes `max_seq_length` tokens under `position_scaling`.

  "pcw" needs no model change (it is a way of encoding, `encode`): the copy only keeps the
  trained length. None: truncation at `max_seq_length`. `attention_scaling` (LongEmbed's
  inference default, Su 2021): a text of n > trained tokens has its attention logits
  multiplied by log n / log trained; no effect under "pcw" or truncation, whose inputs never
  exceed the trained length.
  """
  check_attention_scaling(attention_scaling, position_scaling)
  extended = _extend(model, max_seq_length, position_scaling, self_extend_group,
                     self_extend_window)
  if not attention_scaling:
    return extended
  cfg = extended.module.encoder.cfg
  trained = cfg.max_position_embeddings // (
      cfg.position_scaling_factor if cfg.position_scaling == "pi" else 1)
  scaled = dataclasses.replace(cfg, attention_scale_length=trained)
  return dataclasses.replace(extended, module=_with_config(extended.module, scaled))


def _extend(model: EmbeddingModel, max_seq_length: int, position_scaling: str | None,
            self_extend_group: int | None, self_extend_window: int | None) -> EmbeddingModel:
  raw = _raw_config(model)
  if raw.position_embedding == "absolute" and raw.position_scaling:
    # Already extended (e.g. a PI-tuned export): usable up to its length with its own method.
    if position_scaling != raw.position_scaling or max_seq_length > raw.max_length:
      raise ValueError(f"{model.name!r} is already extended with position_scaling="
                       f"{raw.position_scaling!r} to {raw.max_length} tokens; got "
                       f"{position_scaling!r} at {max_seq_length}")
    return dataclasses.replace(model, max_seq_length=max_seq_length)
  check_method(model, max_seq_length, position_scaling)
  cfg = _encoder_config(model)
  trained = cfg.max_position_embeddings
  if position_scaling in (None, "pcw"):
    length = max_seq_length if position_scaling is None else trained
    return dataclasses.replace(model, max_seq_length=length)
  factor = scale_factor(max_seq_length, trained)
  if cfg.position_embedding == "rotary":
    if position_scaling == "self_extend":
      group, window = self_extend_defaults(factor, trained)
      new = dataclasses.replace(cfg, rope_scaling="self_extend",
                                self_extend_group=self_extend_group or group,
                                self_extend_window=self_extend_window or window)
    else:
      new = dataclasses.replace(cfg, rope_scaling="linear" if position_scaling == "pi" else "ntk",
                                rope_scaling_factor=max(1.0, max_seq_length / trained))
    return dataclasses.replace(model, module=_with_config(model.module, new),
                               max_seq_length=max_seq_length)
  rows = trained * factor if position_scaling == "pi" else trained
  new = dataclasses.replace(cfg, position_scaling=position_scaling,
                            position_scaling_factor=factor, max_position_embeddings=rows)
  module = _with_config(model.module, new)
  if position_scaling == "pi":
    position = module.encoder.embeddings.position
    position.embedding.set_value(jnp.asarray(
        positions_lib.interpolate_table(position.embedding[...], factor)))
    position.num_embeddings = rows
  return dataclasses.replace(model, module=module, max_seq_length=max_seq_length)


def special_tokens(model: EmbeddingModel) -> tuple[list[int], list[int]]:
  """(prefix, suffix) special-token ids the tokenizer wraps a text in, e.g. ([CLS], [SEP])."""
  tok = model.tokenizer
  tok.no_truncation()
  full = tok.encode("a").ids
  bare = tok.encode("a", add_special_tokens=False).ids
  for i in range(len(full) - len(bare) + 1):
    if full[i:i + len(bare)] == bare:
      return full[:i], full[i + len(bare):]
  raise ValueError(f"cannot find the special tokens of {model.name!r}'s tokenizer")


def chunk_tokens(ids: Sequence[int], prefix: Sequence[int], suffix: Sequence[int],
                 length: int) -> list[list[int]]:
  """Cuts one text's ids (without special tokens) into chunks of `length` tokens with them."""
  room = length - len(prefix) - len(suffix)
  if room < 1:
    raise ValueError(f"chunk length {length} leaves no room beside the special tokens")
  pieces = [ids[i:i + room] for i in range(0, len(ids), room)] or [[]]
  return [list(prefix) + list(p) + list(suffix) for p in pieces]


def encode_pcw(model: EmbeddingModel, texts: Sequence[str], max_seq_length: int, *,
               normalize: bool = True, **kwargs) -> np.ndarray:
  """Parallel context windows: chunks of the trained length embedded alone, then averaged
  weighted by each chunk's tokens (special tokens included), then normalised."""
  texts = encoding._check_texts(texts)
  trained = trained_length(model)
  prefix, suffix = special_tokens(model)
  tok = model.tokenizer
  tok.no_padding()
  tok.enable_truncation(max_length=max(1, max_seq_length - len(prefix) - len(suffix)))
  bare = [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
  chunks, owner = [], []
  for i, ids in enumerate(bare):
    for chunk in chunk_tokens(ids, prefix, suffix, trained):
      chunks.append(chunk)
      owner.append(i)
  short = dataclasses.replace(model, max_seq_length=trained)
  pooled = encoding.encode_tokens(short, chunks, normalize=False, **kwargs)
  owner = np.asarray(owner)
  weights = np.array([len(c) for c in chunks], np.float64)
  out = np.zeros((len(texts), pooled.shape[1]), np.float64)
  np.add.at(out, owner, pooled * weights[:, None])
  out /= np.bincount(owner, weights, minlength=len(texts))[:, None]
  if normalize:
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
  return out.astype(np.float32)


def encode(model: EmbeddingModel, texts: Sequence[str], *, max_seq_length: int | None = None,
           position_scaling: str | None = None, attention_scaling: bool = False,
           **kwargs) -> np.ndarray:
  """`jaxemb.encoding.encode` at `max_seq_length` tokens under `position_scaling` (see the
  module docstring), with LongEmbed's `attention_scaling` if asked (`extend`); kwargs as
  `jaxemb.encoding.encode`."""
  if not _raw_config(model).position_scaling:  # an extended model: checked by `extend`
    check_method(model, max_seq_length, position_scaling)
  check_attention_scaling(attention_scaling, position_scaling)
  if position_scaling == "pcw":
    return encode_pcw(model, texts, max_seq_length, **kwargs)
  length = model.max_seq_length if max_seq_length is None else max_seq_length
  return encoding.encode(extend(model, length, position_scaling,
                                attention_scaling=attention_scaling), texts, **kwargs)
