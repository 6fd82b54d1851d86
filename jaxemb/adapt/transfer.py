"""Move an embedding model to a new tokenizer: `transfer(model, tokenizer, method)`.

    new = transfer(jaxemb.load_pretrained("all-MiniLM-L6-v2"), "code_bpe.json", "mean")
    jaxemb.save_pretrained(new, "minilm-code/")     # tokenizer.json is the new tokenizer

The encoder's weights are kept; only the token embedding matrix is rebuilt (see
`jaxemb.adapt.init` for the heuristic methods). `distill` then trains just the new rows so
that the frozen encoder's pooled embedding of a text under the new tokenizer matches the
source model's under its own.

The new tokenizer keeps the source's special-token template ([CLS] $A [SEP] for BERT) when it
has no post-processor of its own; template tokens it lacks are added to it. It must have a pad
token (its padding setting, or a special token such as [PAD] / <pad>), or be given one.
"""

from __future__ import annotations

import argparse
import copy as copy_lib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tokenizers
from flax import nnx

from jaxemb import functional
from jaxemb.adapt import init as init_lib
from jaxemb.encoding import encode, pad_to_bucket
from jaxemb.model import EmbeddingModel
from jaxemb.nn import layers
from jaxemb.nn.embedder import l2_normalize

METHODS = init_lib.METHODS + ("distill", "zett")
_PAD_NAMES = init_lib._ROLES["pad"]


def load_tokenizer(tokenizer: tokenizers.Tokenizer | str | os.PathLike) -> tokenizers.Tokenizer:
  """A `tokenizers.Tokenizer` from an object, a tokenizer.json file or a directory holding one.

  Raises ValueError for a file that is not a valid tokenizer.json and FileNotFoundError for a
  missing one.
  """
  if isinstance(tokenizer, tokenizers.Tokenizer):
    return tokenizers.Tokenizer.from_str(tokenizer.to_str())  # a copy: callers' stays as is
  path = Path(tokenizer)
  if path.is_dir():
    path = path / "tokenizer.json"
  if not path.is_file():
    raise FileNotFoundError(f"no tokenizer file at {path}")
  try:
    return tokenizers.Tokenizer.from_file(str(path))
  except Exception as e:  # the library raises a bare Exception with serde's message
    raise ValueError(f"{path} is not a valid Hugging Face tokenizer.json ({e})") from None


def _pad_token(tok: tokenizers.Tokenizer) -> str | None:
  if tok.padding and tok.padding.get("pad_token") in tok.get_vocab(True):
    return tok.padding["pad_token"]
  # Registered special tokens first; a bare "[PAD]" in the vocabulary also counts (BERT files).
  vocab = {**tok.get_vocab(True), **init_lib.special_tokens(tok)}
  return next((t for t in _PAD_NAMES if t in vocab), None)


def _template(source: tokenizers.Tokenizer) -> tuple[list[str], list[str]] | None:
  """(single, pair) template pieces of the source post-processor, e.g. ["[CLS]", "$A", "[SEP]"]."""
  spec = json.loads(source.to_str()).get("post_processor")
  if not spec:
    return None
  if spec["type"] == "TemplateProcessing":
    def pieces(items):
      out = []
      for item in items:
        if "SpecialToken" in item:
          out.append(item["SpecialToken"]["id"])
        else:
          seq = item["Sequence"]
          out.append(f"${seq['id']}" + (f":{seq['type_id']}" if seq["type_id"] else ""))
      return out
    return pieces(spec["single"]), pieces(spec["pair"])
  if spec["type"] == "BertProcessing":
    cls, sep = spec["cls"][0], spec["sep"][0]
    return [cls, "$A", sep], [cls, "$A", sep, "$B:1", sep]
  if spec["type"] == "RobertaProcessing":
    cls, sep = spec["cls"][0], spec["sep"][0]
    return [cls, "$A", sep], [cls, "$A", sep, sep, "$B:1", sep]
  raise ValueError(f"the source tokenizer's post-processor {spec['type']!r} is not supported; "
                   "expected TemplateProcessing, BertProcessing or RobertaProcessing")


def prepare_tokenizer(source: tokenizers.Tokenizer, new: tokenizers.Tokenizer | str | os.PathLike,
                      *, pad_token: str | None = None) -> tokenizers.Tokenizer:
  """The new tokenizer ready for the transferred model (a copy; the argument is not changed).

  Checks it has a vocabulary and a pad token (adding `pad_token` when given), and gives it the
  source's special-token template when it has no post-processor, adding the template's
  special tokens it lacks.
  """
  tok = load_tokenizer(new)
  specials = init_lib.special_tokens(tok)
  if tok.get_vocab_size(with_added_tokens=True) <= len(specials):
    raise ValueError(f"the new tokenizer has an empty vocabulary "
                     f"({tok.get_vocab_size(with_added_tokens=True)} tokens, all special)")
  if pad_token is not None and pad_token not in tok.get_vocab(True):
    tok.add_special_tokens([pad_token])
  pad = pad_token or _pad_token(tok)
  if pad is None:
    raise ValueError(f"the new tokenizer has no pad token: none of {list(_PAD_NAMES)} is in its "
                     f"vocabulary and it sets no padding; special tokens: {sorted(specials)}. "
                     "Train it with a pad token or pass pad_token='[PAD]' (it is then added)")
  if tok.post_processor is None:
    template = _template(source)
    if template is not None:
      single, pair = template
      needed = [p for p in single + pair if not p.startswith("$")]
      missing = list(dict.fromkeys(p for p in needed if p not in tok.get_vocab(True)))
      if missing:
        tok.add_special_tokens(missing)
      ids = [(p, tok.token_to_id(p)) for p in dict.fromkeys(needed)]
      tok.post_processor = tokenizers.processors.TemplateProcessing(
          single=" ".join(single), pair=" ".join(pair), special_tokens=ids)
  # Truncation and padding are `encode`'s business; keep the file free of either.
  tok.no_padding()
  tok.no_truncation()
  return tok


def word_embeddings(model: EmbeddingModel) -> np.ndarray:
  """The model's token embedding matrix [V, D] as float32 numpy."""
  word = getattr(getattr(model.module.encoder, "embeddings", None), "word", None)
  if word is None:
    raise ValueError(f"{type(model.module.encoder).__name__} has no embeddings.word table; "
                     "tokenizer transfer supports TransformerEncoder models")
  return np.asarray(word.embedding.get_value(), np.float32)


def with_embeddings(model: EmbeddingModel, tokenizer: tokenizers.Tokenizer,
                    table: np.ndarray) -> EmbeddingModel:
  """A copy of `model` using `tokenizer` and token embeddings `table` [len(vocab), D]."""
  size = tokenizer.get_vocab_size(with_added_tokens=True)
  source = word_embeddings(model)
  if table.shape != (size, source.shape[1]):
    raise ValueError(f"embedding table has shape {table.shape}; expected ({size}, "
                     f"{source.shape[1]}) for the new vocabulary")
  pad = _pad_token(tokenizer)
  if pad is None:
    raise ValueError("the tokenizer has no pad token; pass it through prepare_tokenizer first")
  encoder = nnx.clone(model.module.encoder)
  cfg = dataclasses.replace(encoder.cfg, vocab_size=size, pad_token_id=tokenizer.token_to_id(pad))
  word = layers.token_embedding(size, cfg.hidden_size, dtype=cfg.compute_dtype,
                                param_dtype=cfg.params_dtype, rngs=nnx.Rngs(0))
  word.embedding.set_value(jnp.asarray(table, cfg.params_dtype))
  encoder.embeddings.word = word
  encoder.cfg = cfg
  module = nnx.clone(model.module)
  module.encoder = encoder
  hf = {**model.encoder_config, "vocab_size": size, "pad_token_id": cfg.pad_token_id}
  tok = tokenizers.Tokenizer.from_str(tokenizer.to_str())
  tok.no_padding()
  tok.enable_truncation(max_length=model.max_seq_length)
  return EmbeddingModel(module=module, tokenizer=tok, max_seq_length=model.max_seq_length,
                        name=f"{model.name}+{tokenizer.get_vocab_size(True)}tok",
                        encoder_config=hf)


def transfer(model: EmbeddingModel, tokenizer: tokenizers.Tokenizer | str | os.PathLike,
             method: str = "mean", *, texts: Sequence[str] | None = None, seed: int = 0,
             pad_token: str | None = None, bare: str = "shortest",
             distill_options: dict | None = None, hypernet=None,
             **options) -> EmbeddingModel:
  """`model` moved to `tokenizer`, its new embedding rows initialised by `method`.

  Args:
    model: the source model (a `TransformerEncoder`-based `EmbeddingModel`).
    tokenizer: the new tokenizer (object, tokenizer.json path, or a directory holding one).
    method: one of METHODS. "focus" trains its auxiliary space on `texts`; "distill" starts
      from "mean" and trains the new rows on `texts` (see `distill`).
    texts: training texts for "focus" and "distill".
    pad_token: a pad token to add when the tokenizer has none.
    bare: how byte-level / Metaspace tokens without a space marker are read (see
      `init.build_plan`).
    distill_options: keyword arguments of `distill`.
    hypernet: for "zett", a `TokenHyperNetwork` or the directory `save_hypernet` wrote.
    options: method options of the initialiser (e.g. rank=, top_k= for "ofa").
  """
  if method not in METHODS:
    raise ValueError(f"unknown transfer method {method!r}; expected one of {METHODS}")
  if method in ("focus", "distill") and not texts:
    raise ValueError(f"method {method!r} needs training texts (texts=...)")
  if method == "zett" and hypernet is None:
    raise ValueError("method 'zett' needs a trained hypernetwork (hypernet=DIRECTORY, the "
                     "export of a configs/zett_minilm.py run)")
  tok = prepare_tokenizer(model.tokenizer, tokenizer, pad_token=pad_token)
  plan = init_lib.build_plan(model.tokenizer, tok, bare=bare)
  if method == "zett":
    hyper = load_hypernet(hypernet) if not isinstance(hypernet, nnx.Module) else hypernet
    return with_embeddings(model, tok, hyper_table(hyper, word_embeddings(model), plan))
  start = "mean" if method == "distill" else method
  table = init_lib.initialize(start, word_embeddings(model), plan, target=tok, texts=texts,
                              seed=seed, **options)
  new = with_embeddings(model, tok, table)
  if method == "distill":
    new, _ = distill(new, model, texts, trainable=plan.fresh(), seed=seed,
                     **(distill_options or {}))
  return new


# ---------------------------------------------------------------------------------------------
# Distillation: train the new embedding rows only, encoder frozen.
# ---------------------------------------------------------------------------------------------

_TABLE = ("encoder", "embeddings", "word", "embedding")


def set_word_table(params: dict, table: jax.Array) -> dict:
  """A copy of a SentenceEmbedder's pure param dict with the token embedding table replaced
  (any number of rows: the lookup only indexes it)."""
  out = dict(params)
  node = out
  for key in _TABLE[:-1]:
    node[key] = dict(node[key])
    node = node[key]
  node[_TABLE[-1]] = table
  return out


def get_word_table(params: dict) -> jax.Array:
  """The token embedding table in a SentenceEmbedder's pure param dict."""
  node = params
  for key in _TABLE:
    node = node[key]
  return node


def encoder_outputs(graph, params, ids, mask) -> tuple[jax.Array, jax.Array]:
  """Token states [B, L, D] and pooled (not normalised) embeddings [B, D] of a split
  SentenceEmbedder, float32."""
  module = functional.merge(graph, params)
  states = module.encoder(ids, mask, deterministic=True).last_hidden_state
  return states.astype(jnp.float32), module.pooler(states, mask, None).astype(jnp.float32)


def pooled_embeddings(graph, params, ids, mask):
  """Pooled (not normalised) embeddings of a split SentenceEmbedder, float32 [B, D]."""
  return encoder_outputs(graph, params, ids, mask)[1]


def token_alignment(student: tuple[Sequence[tuple[int, int]], Sequence[int]],
                    teacher: tuple[Sequence[tuple[int, int]], Sequence[int]],
                    shape: tuple[int, int]) -> np.ndarray:
  """Which teacher tokens each student token stands for, as averaging weights [Ls, Lt].

  `student` and `teacher` are one text's (character offsets, special-tokens mask) under each
  tokenizer. Row i averages the teacher tokens whose spans exactly tile student token i's span
  (a merged token such as "isinstance" = is ##ins ##tance); the k-th special token of each side
  pair up ([CLS] with [CLS]); a student token that no teacher tokens tile (the boundaries
  differ) has a zero row. Tokens past `shape` (truncated away) are left out.
  """
  (s_offsets, s_special), (t_offsets, t_special) = student, teacher
  ls, lt = min(shape[0], len(s_offsets)), min(shape[1], len(t_offsets))
  out = np.zeros(shape, np.float32)
  starts, ends = {}, {}
  for j in range(lt):
    if not t_special[j]:
      starts.setdefault(t_offsets[j][0], j)
      ends[t_offsets[j][1]] = j
  for i in range(ls):
    if s_special[i]:
      continue
    a, b = s_offsets[i]
    j0, j1 = starts.get(a), ends.get(b)
    if j0 is not None and j1 is not None and j0 <= j1 and not any(t_special[j0:j1 + 1]):
      out[i, j0:j1 + 1] = 1.0 / (j1 - j0 + 1)
  s_specials = [i for i in range(ls) if s_special[i]]
  t_specials = [j for j in range(lt) if t_special[j]]
  if len(s_specials) == len(t_specials):
    out[s_specials, t_specials] = 1.0
  return out


def token_distill_loss(student: jax.Array, teacher: jax.Array, alignment: jax.Array) -> jax.Array:
  """Mean over aligned student tokens of 1 - cos(student state, the average of the teacher
  states it stands for): `student` [B, Ls, D], `teacher` [B, Lt, D], `alignment` [B, Ls, Lt]
  (rows of `token_alignment`; zero rows are left out)."""
  target = jnp.einsum("bst,btd->bsd", alignment, teacher)
  s, t = l2_normalize(student), l2_normalize(target)
  aligned = (jnp.sum(alignment, axis=-1) > 0).astype(jnp.float32)
  return jnp.sum((1.0 - jnp.sum(s * t, axis=-1)) * aligned) / jnp.maximum(jnp.sum(aligned), 1.0)


def distill_loss(student: jax.Array, teacher: jax.Array, kind: str = "cosine") -> jax.Array:
  """Mean over rows of 1 - cos(student, teacher) ("cosine") or of ||s - t||² / D ("mse")."""
  if kind == "cosine":
    s, t = l2_normalize(student), l2_normalize(teacher)
    return jnp.mean(1.0 - jnp.sum(s * t, axis=-1))
  if kind == "mse":
    return jnp.mean(jnp.square(student - teacher))
  raise ValueError(f"distillation loss {kind!r} is not one of ('cosine', 'mse')")


# Padded lengths of distillation batches: coarse, since every shape compiles a backward pass.
_DISTILL_LADDER = (32, 64, 96, 128, 192, 256, 384, 512)


def distill_buckets(chars: int) -> tuple[int, ...]:
  """Padded lengths for distilling on texts cut to `chars` characters: up to one token per two
  characters (code's density under WordPiece), at least 128 so a 300-character cut rarely
  truncates."""
  if chars < 1:
    raise ValueError(f"distillation texts need at least 1 character; got {chars}")
  return tuple(b for b in _DISTILL_LADDER if b <= max(128, chars // 2))


def distill(model: EmbeddingModel, source: EmbeddingModel, texts: Sequence[str], *,
            trainable: np.ndarray | None = None, steps: int = 200, batch_size: int = 32,
            learning_rate: float = 1e-3, loss: str = "cosine", max_chars: int | None = 400,
            lengths: tuple[int, ...] = (32, 64, 96, 128), seed: int = 0,
            teacher: np.ndarray | None = None, token_weight: float = 0.0,
            log_every: int = 0) -> tuple[EmbeddingModel, list[float]]:
  """Trains `model`'s token embedding rows `trainable` so its pooled embeddings match `source`'s.

  Both models embed the same texts (cut to `max_chars` characters so that neither truncates
  and both see the same text); the encoder and all other rows stay fixed. Adam, constant
  `learning_rate`, batches drawn with replacement from a seeded generator.

  Args:
    trainable: target ids to train (default: every row).
    teacher: the source's pooled (unnormalised) embeddings of the cut texts, if already known.
    lengths: padded lengths of the student's batches (the last one truncates).
    token_weight: weight of a second, token-level term (`token_distill_loss`): each student
      token's last hidden state against the average of the source's states over the source
      tokens it stands for (`token_alignment`), the source run on each batch. 0 = pooled only.

  Returns:
    (the distilled model, the loss of each step).
  """
  if steps < 0 or batch_size < 1 or learning_rate <= 0 or token_weight < 0:
    raise ValueError(f"need steps >= 0, batch_size >= 1, learning_rate > 0, token_weight >= 0; "
                     f"got {steps}, {batch_size}, {learning_rate}, {token_weight}")
  distill_loss(jnp.zeros((1, 1)), jnp.zeros((1, 1)), loss)  # validates `loss`
  texts = [t[:max_chars] if max_chars else t for t in texts]
  if not texts:
    raise ValueError("distill needs at least one text")
  if teacher is None:
    teacher = encode(source, texts, normalize=False, show_progress=False)
  teacher = np.asarray(teacher, np.float32)
  if teacher.shape[0] != len(texts):
    raise ValueError(f"teacher has {teacher.shape[0]} rows for {len(texts)} texts")

  def encodings(m, max_length):
    tok = tokenizers.Tokenizer.from_str(m.tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok.encode_batch(list(texts))

  student_enc = encodings(model, min(lengths[-1], model.max_seq_length))
  ids = [e.ids for e in student_enc]
  source_params = None  # the source runs on each batch only for the token-level term
  if token_weight:
    source_graph, source_params = functional.split(source.module)
    source_lengths = tuple(b for b in _DISTILL_LADDER
                           if b < source.max_seq_length) + (source.max_seq_length,)
    source_enc = encodings(source, source.max_seq_length)

  graph, params = functional.split(model.module)
  table = get_word_table(params)
  mask = np.zeros((table.shape[0], 1), np.float32)
  mask[np.arange(table.shape[0]) if trainable is None else np.asarray(trainable, np.int64)] = 1
  mask = jnp.asarray(mask)
  tx = optax.adam(learning_rate)
  opt_state = tx.init(table)

  @jax.jit
  def step(params, table, opt_state, batch_ids, batch_mask, target, source_params, token_batch):
    if token_batch is not None:
      source_ids, source_mask, alignment = token_batch
      source_states, _ = encoder_outputs(source_graph, source_params, source_ids, source_mask)

    def f(t):
      states, pooled = encoder_outputs(graph, set_word_table(params, t), batch_ids, batch_mask)
      value = distill_loss(pooled, target, loss)
      if token_batch is not None:
        value = value + token_weight * token_distill_loss(states, source_states, alignment)
      return value
    value, grad = jax.value_and_grad(f)(table)
    updates, opt_state = tx.update(grad * mask, opt_state, table)
    return optax.apply_updates(table, updates * mask), opt_state, value

  rng = np.random.default_rng(seed)
  pad_id = model.pad_token_id
  history = []
  started = time.time()
  for i in range(steps):
    rows = rng.integers(0, len(texts), size=batch_size)
    batch_ids, batch_mask = pad_to_bucket([ids[r] for r in rows], lengths, pad_id)
    token_batch = None
    if token_weight:
      source_ids, source_mask = pad_to_bucket([source_enc[r].ids for r in rows], source_lengths,
                                              source.pad_token_id)
      shape = (batch_ids.shape[1], source_ids.shape[1])
      alignment = np.stack([token_alignment(
          (student_enc[r].offsets, student_enc[r].special_tokens_mask),
          (source_enc[r].offsets, source_enc[r].special_tokens_mask), shape) for r in rows])
      token_batch = (source_ids, source_mask, alignment)
    table, opt_state, value = step(params, table, opt_state, batch_ids, batch_mask,
                                   teacher[rows], source_params, token_batch)
    history.append(float(value))
    if log_every and (i + 1) % log_every == 0:
      print(f"distill step {i + 1}/{steps} loss {np.mean(history[-log_every:]):.4f} "
            f"({time.time() - started:.0f}s)", flush=True)
  out = copy_lib.copy(model)
  out.module = functional.merge(graph, set_word_table(params, table))
  return out, history


# ---------------------------------------------------------------------------------------------
# ZeTT: embeddings predicted by a hypernetwork (trained by recipes/zett.py).
# ---------------------------------------------------------------------------------------------

def piece_arrays(plan: init_lib.TokenPlan, token_ids: Sequence[int], k: int,
                 pad_source_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(pieces [N, k], piece mask [N, k], copy ids [N]) of target tokens for the hypernetwork.

  Decompositions longer than k keep their first k pieces (ZeTT's surface max length); tokens
  without pieces read the source pad row; specials with a source counterpart are copied.
  """
  n = len(token_ids)
  pieces = np.full((n, k), pad_source_id, np.int32)
  mask = np.zeros((n, k), np.int32)
  copy_ids = np.full((n,), -1, np.int32)
  for row, t in enumerate(token_ids):
    t = int(t)
    if t in plan.special:
      copy_ids[row] = plan.copy.get(t, pad_source_id)
      mask[row, 0] = 1
      continue
    ids = plan.pieces[t][:k] or [pad_source_id]
    pieces[row, :len(ids)] = ids
    mask[row, :len(ids)] = 1
  return pieces, mask, copy_ids


def hyper_table(hyper: nnx.Module, source_table: np.ndarray, plan: init_lib.TokenPlan, *,
                chunk: int = 4096) -> np.ndarray:
  """The embedding matrix of the plan's target vocabulary predicted by `hyper`."""
  from jaxemb.nn.hyper import predict_embeddings
  k = hyper.cfg.max_pieces
  pad = plan.source_special[0] if plan.source_special else 0
  graph, params = functional.split(hyper)
  table = jnp.asarray(source_table)

  @jax.jit
  def run(params, pieces, mask, copy_ids):
    return predict_embeddings(functional.merge(graph, params), table, pieces, mask, copy_ids)

  out = []
  for start in range(0, plan.target_size, chunk):
    ids = range(start, min(start + chunk, plan.target_size))
    pieces, mask, copy_ids = piece_arrays(plan, ids, k, pad)
    rows = len(ids)
    pad_rows = chunk - rows  # one compiled shape
    pieces, mask, copy_ids = (np.concatenate([a, np.repeat(a[-1:], pad_rows, 0)])
                              for a in (pieces, mask, copy_ids))
    out.append(np.asarray(run(params, pieces, mask, copy_ids))[:rows])
  return np.concatenate(out).astype(np.float32)


def save_hypernet(hyper: nnx.Module, directory: str | os.PathLike) -> Path:
  """Writes `hyper`'s config (hyper_config.json) and parameters (hyper.safetensors)."""
  import safetensors.numpy
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  flat = {".".join(map(str, path)): np.asarray(v[...], np.float32)
          for path, v in nnx.to_flat_state(nnx.state(hyper, nnx.Param))}
  safetensors.numpy.save_file(flat, str(directory / "hyper.safetensors"))
  (directory / "hyper_config.json").write_text(json.dumps(dataclasses.asdict(hyper.cfg),
                                                          indent=2))
  return directory


def load_hypernet(directory: str | os.PathLike) -> nnx.Module:
  """The `TokenHyperNetwork` that `save_hypernet` wrote to `directory`."""
  import safetensors.numpy
  from jaxemb.nn.hyper import HyperConfig, TokenHyperNetwork
  directory = Path(directory)
  for name in ("hyper_config.json", "hyper.safetensors"):
    if not (directory / name).is_file():
      raise FileNotFoundError(f"hypernetwork directory {directory} is missing {name}")
  cfg = HyperConfig(**json.loads((directory / "hyper_config.json").read_text()))
  hyper = TokenHyperNetwork(cfg, rngs=nnx.Rngs(0))
  flat = safetensors.numpy.load_file(str(directory / "hyper.safetensors"))
  state = nnx.state(hyper, nnx.Param)
  pure = state.to_pure_dict()
  for path, var in nnx.to_flat_state(state):
    key = ".".join(map(str, path))
    if key not in flat or flat[key].shape != tuple(var[...].shape):
      raise ValueError(f"{directory / 'hyper.safetensors'}: parameter {key} missing or of the "
                       f"wrong shape (expected {tuple(var[...].shape)})")
    node = pure
    for p in path[:-1]:
      node = node[p]
    node[path[-1]] = jnp.asarray(flat[key])
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(hyper, state)
  return hyper


# ---------------------------------------------------------------------------------------------
# CLI: `jaxemb transfer ...`
# ---------------------------------------------------------------------------------------------

def add_transfer_parser(subparsers) -> argparse.ArgumentParser:
  """Adds the `transfer` sub-command to `jaxemb`'s argument parser."""
  p = subparsers.add_parser("transfer", help="move a model to a new tokenizer and write it as a "
                                             "sentence-transformers directory")
  p.add_argument("--model", default="all-MiniLM-L6-v2", help="source model name or directory")
  p.add_argument("--tokenizer", required=True, help="the new tokenizer.json (or its directory)")
  p.add_argument("--method", default="mean", choices=METHODS)
  p.add_argument("--out", required=True, help="output model directory")
  p.add_argument("--pad-token", default=None, help="pad token to add if the tokenizer has none")
  p.add_argument("--texts", default="stdlib_code_search:train",
                 help="training texts for focus/distill: a UTF-8 file, one text per line, or "
                      "TASK:SPLIT of the code-search corpus (queries and code)")
  p.add_argument("--steps", type=int, default=200, help="distill: optimisation steps")
  p.add_argument("--token-weight", type=float, default=0.0,
                 help="distill: weight of the token-level term (0 = pooled embeddings only)")
  p.add_argument("--hypernet", default=None,
                 help="zett: the hypernetwork directory a zett run exported (WORKDIR/export)")
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=transfer_main)
  return p


def _read_texts(spec: str) -> list[str]:
  if Path(spec).is_file():
    return [line for line in Path(spec).read_text(encoding="utf-8").splitlines() if line]
  from jaxemb.data import code_search
  name, split = code_search.parse_task(spec)
  queries, codes = code_search.load_split(split)
  return list(queries) + list(codes)


def transfer_main(args: argparse.Namespace) -> None:
  """Runs `jaxemb transfer`: load, transfer, save; prints the output directory."""
  from jaxemb.pretrained.sentence_transformers import load_pretrained, save_pretrained
  model = load_pretrained(args.model)
  texts = _read_texts(args.texts) if args.method in ("focus", "distill") else None
  new = transfer(model, args.tokenizer, args.method, texts=texts, seed=args.seed,
                 pad_token=args.pad_token, hypernet=args.hypernet,
                 distill_options={"steps": args.steps, "token_weight": args.token_weight})
  print(save_pretrained(new, args.out))
