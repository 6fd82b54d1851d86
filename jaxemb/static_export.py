"""Static embeddings distilled from an encoder (model2vec-style) and exported for
sentence-transformers' `StaticEmbedding`.

`distill_static` runs every vocabulary token through the encoder on its own (`[CLS] token [SEP]`,
the model's pooling, no normalisation), reduces the token vectors by PCA, and weights each row by
a Zipf-based SIF weight: assuming token ids are ordered by frequency, p(id) ∝ 1 / (id + 2) and
the weight is a / (a + p) (a = `sif_coefficient`), which shrinks frequent tokens as SIF does.
A sentence embedding is then the mean of its tokens' rows (no special tokens), L2-normalised:
no attention, so encoding is a table look-up.

`save_static` writes a sentence-transformers directory (modules StaticEmbedding + Normalize) that
`SentenceTransformer(dir)` loads; `encode_static` gives the same embeddings in numpy.

    weights, tokenizer = distill_static(jaxemb.load_pretrained("all-MiniLM-L6-v2"), dims=256)
    save_static(weights, tokenizer, "minilm-static/")
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
import tokenizers
from flax import nnx

from jaxemb.model import EmbeddingModel

_ST = "sentence_transformers.models."


@functools.partial(jax.jit, static_argnums=(0,))
def _token_vectors(graphdef, state, input_ids, attention_mask):
  module = nnx.merge(graphdef, state)
  out = module.encoder(input_ids, attention_mask, deterministic=True,
                       output_hidden_states=module.pooler.kind == "multi_layer")
  hidden = jnp.stack(out.hidden_states) if out.hidden_states is not None else None
  return module.pooler(out.last_hidden_state, attention_mask, hidden).astype(jnp.float32)


def _special_ids(tokenizer: tokenizers.Tokenizer) -> tuple[list[int], list[int]]:
  """Ids the post-processor puts before and after one token (e.g. [CLS] ... [SEP])."""
  probe = tokenizer.encode("a")
  plain = tokenizer.encode("a", add_special_tokens=False).ids
  ids = probe.ids
  start = next(i for i in range(len(ids)) if ids[i:i + len(plain)] == plain)
  return ids[:start], ids[start + len(plain):]


def token_embeddings(model: EmbeddingModel, *, batch_size: int = 1024) -> np.ndarray:
  """[V, D] pooled encoder output of each vocabulary token alone, between the special tokens
  the tokenizer adds (unnormalised)."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r}; expected >= 1")
  tok = tokenizers.Tokenizer.from_str(model.tokenizer.to_str())
  tok.no_truncation()
  tok.no_padding()
  vocab = tok.get_vocab_size()
  before, after = _special_ids(tok)
  graphdef, state = nnx.split(model.module)
  out = np.empty((vocab, model.dim), np.float32)
  length = len(before) + 1 + len(after)
  mask = np.ones((batch_size, length), np.int32)
  for start in range(0, vocab, batch_size):
    ids = np.arange(start, min(start + batch_size, vocab))
    batch = np.zeros((batch_size, length), np.int32)  # fixed shape: one compile
    batch[:, :len(before)] = before
    batch[:len(ids), len(before)] = ids
    batch[:, len(before) + 1:] = after
    vec = _token_vectors(graphdef, state, jnp.asarray(batch), jnp.asarray(mask))
    out[ids] = np.asarray(vec)[:len(ids)]
  return out


def zipf_sif_weights(vocab_size: int, sif_coefficient: float = 1e-4) -> np.ndarray:
  """a / (a + p_i) with p_i ∝ 1 / (i + 2), the Zipf estimate of token i's frequency."""
  if not sif_coefficient > 0:
    raise ValueError(f"sif_coefficient={sif_coefficient!r}; expected > 0")
  inv_rank = 1.0 / np.arange(2, vocab_size + 2, dtype=np.float64)
  p = inv_rank / inv_rank.sum()
  return sif_coefficient / (sif_coefficient + p)


def pca(x: np.ndarray, dims: int) -> np.ndarray:
  """`x` centred and projected on its first `dims` principal axes (signs fixed so that each
  axis' largest-magnitude loading is positive, for reproducible output)."""
  x = np.asarray(x, np.float64)
  if not 1 <= dims <= min(x.shape):
    raise ValueError(f"dims={dims!r}; expected an int in [1, {min(x.shape)}]")
  centred = x - x.mean(0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  vt = vt[:dims]
  signs = np.sign(vt[np.arange(dims), np.argmax(np.abs(vt), axis=1)])
  return centred @ (vt * signs[:, None]).T


def distill_static(model: EmbeddingModel, *, dims: int | None = 256,
                   sif_coefficient: float | None = 1e-4,
                   batch_size: int = 1024) -> tuple[np.ndarray, tokenizers.Tokenizer]:
  """Static token table [V, dims] (float32) from `model`, and the tokenizer to use with it.

  Args:
    model: the encoder to distil.
    dims: PCA output dimension (None, or >= the model dimension: no PCA).
    sif_coefficient: SIF weighting constant (None: no weighting).
    batch_size: tokens per forward pass.
  """
  vectors = token_embeddings(model, batch_size=batch_size)
  if dims is not None and dims < vectors.shape[1]:
    vectors = pca(vectors, dims)
  if sif_coefficient is not None:
    vectors = vectors * zipf_sif_weights(vectors.shape[0], sif_coefficient)[:, None]
  tok = tokenizers.Tokenizer.from_str(model.tokenizer.to_str())
  tok.no_truncation()
  tok.no_padding()
  return vectors.astype(np.float32), tok


def encode_static(weights: np.ndarray, tokenizer: tokenizers.Tokenizer, texts: Sequence[str],
                  *, normalize: bool = True) -> np.ndarray:
  """Mean of the token rows of each text (no special tokens); an empty text gives zeros."""
  if isinstance(texts, str):
    raise ValueError("texts must be a sequence of strings; wrap a single string in a list")
  encs = tokenizer.encode_batch(list(texts), add_special_tokens=False)
  out = np.zeros((len(encs), weights.shape[1]), np.float32)
  for i, e in enumerate(encs):
    if e.ids:
      out[i] = weights[e.ids].mean(0)
  if normalize:
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
  return out


def save_static(weights: np.ndarray, tokenizer: tokenizers.Tokenizer,
                directory: str | os.PathLike) -> Path:
  """Writes a sentence-transformers directory: 0_StaticEmbedding (embedding.weight + tokenizer)
  then Normalize. Replaces `directory` if it exists."""
  weights = np.ascontiguousarray(weights, np.float32)
  if weights.ndim != 2 or weights.shape[0] != tokenizer.get_vocab_size():
    raise ValueError(f"weights have shape {weights.shape}; expected [{tokenizer.get_vocab_size()}"
                     ", dims] (one row per token of the tokenizer)")
  directory = Path(directory)
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
  try:
    (tmp / "0_StaticEmbedding").mkdir()
    safetensors.numpy.save_file({"embedding.weight": weights},
                                str(tmp / "0_StaticEmbedding" / "model.safetensors"))
    tokenizer.save(str(tmp / "0_StaticEmbedding" / "tokenizer.json"))
    (tmp / "1_Normalize").mkdir()
    modules = [{"idx": 0, "name": "0", "path": "0_StaticEmbedding", "type": _ST + "StaticEmbedding"},
               {"idx": 1, "name": "1", "path": "1_Normalize", "type": _ST + "Normalize"}]
    (tmp / "modules.json").write_text(json.dumps(modules, indent=2))
    (tmp / "config_sentence_transformers.json").write_text(json.dumps(
        {"__version__": {"jaxemb": "0.1.0"}, "similarity_fn_name": "cosine", "prompts": {},
         "default_prompt_name": None}, indent=2))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    if directory.exists():
      shutil.rmtree(directory)
    tmp.rename(directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return directory


def load_static(directory: str | os.PathLike) -> tuple[np.ndarray, tokenizers.Tokenizer]:
  """(weights, tokenizer) of a directory written by `save_static` (or sentence-transformers)."""
  sub = Path(directory) / "0_StaticEmbedding"
  if not (sub / "model.safetensors").is_file():
    raise ValueError(f"{str(directory)!r} has no 0_StaticEmbedding/model.safetensors")
  weights = safetensors.numpy.load_file(str(sub / "model.safetensors"))["embedding.weight"]
  tok = tokenizers.Tokenizer.from_file(str(sub / "tokenizer.json"))
  tok.no_padding()
  return weights, tok


def add_distill_parser(sub) -> None:
  """`jaxemb distill-static --model M --out DIR [--dims 256] [--sif 1e-4]`."""
  p = sub.add_parser("distill-static", help="distil a model into static token embeddings "
                                             "(a sentence-transformers StaticEmbedding dir)")
  p.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or directory")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--dims", type=int, default=256, help="PCA dimension (0: keep all)")
  p.add_argument("--sif", type=float, default=1e-4, help="SIF coefficient (0: no weighting)")
  p.set_defaults(func=_distill_cli)


def _distill_cli(args) -> None:
  import jaxemb
  model = jaxemb.load_pretrained(args.model)
  weights, tok = distill_static(model, dims=args.dims or None, sif_coefficient=args.sif or None)
  out = save_static(weights, tok, args.out)
  print(f"wrote {weights.shape[0]} static token embeddings of dimension {weights.shape[1]} "
        f"to {out}")
