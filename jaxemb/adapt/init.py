"""Heuristic initialisers of a new tokenizer's embedding matrix from a source model's.

    plan = build_plan(source_tokenizer, target_tokenizer)     # decompositions, copies
    E_new = initialize("mean", E_source, plan)                # [target vocab, D] float32

Every method copies special tokens (matched by content, else by role: [CLS]~<s>, ...) and
overlapping tokens (a target token whose normalised surface form is exactly one source token)
and differs only in the other rows:
  random        N(mean, std) per dimension of the source embeddings.
  multivariate  N(mean, scale * covariance) of the source embeddings (Hewitt 2021; Mundra et al.
                2024), scale 1e-5 by default.
  mean          FVT (Gee et al. 2022): mean of the source embeddings of the token's source pieces.
  focus         FOCUS (Dobler & de Melo 2023): sparsemax(cosine to the overlapping tokens in an
                auxiliary static space of the target vocabulary) mixes their source embeddings.
                The auxiliary space here is PPMI + truncated SVD of target-token co-occurrences in
                target-tokenised text (`static_vectors`), not fastText; tokens never seen in that
                text fall back to `mean`.
  ofa           OFA (Liu et al. 2024): source embeddings factorised E = U_r (S_r V_rᵀ); a new
                token's low-rank coordinates are a softmax(sim / T) mix of its top-k most similar
                source tokens, similarity measured in the low-rank coordinates from the mean of
                its pieces' coordinates; the row is coordinates @ S_r V_rᵀ.
Tokens with no source pieces (whitespace-only tokens, target specials with no source role)
get the source centroid in `mean`, `focus` and `ofa`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import tokenizers

from jaxemb.adapt.surface import Decomposer, spelling_of, surface_form

METHODS = ("random", "multivariate", "mean", "focus", "ofa")

# Special-token roles: tokens of one role are interchangeable between tokenizers.
_ROLES = {
    "cls": ("[CLS]", "<s>", "<cls>", "[BOS]", "<bos>", "<|startoftext|>"),
    "sep": ("[SEP]", "</s>", "<sep>", "[EOS]", "<eos>", "<|endoftext|>"),
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "unk": ("[UNK]", "<unk>", "<|unk|>"),
    "mask": ("[MASK]", "<mask>", "<|mask|>"),
}
_ROLE_OF = {tok: role for role, toks in _ROLES.items() for tok in toks}


def special_tokens(tokenizer: tokenizers.Tokenizer) -> dict[str, int]:
  """content -> id of the tokenizer's special added tokens."""
  return {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}


@dataclasses.dataclass
class TokenPlan:
  """What every initialiser needs to know about the two vocabularies.

  Attributes:
    target_size: rows of the new embedding matrix (target vocabulary with added tokens).
    source_size: rows of the source embedding matrix.
    copy: target id -> source id of rows copied verbatim (specials and overlapping tokens).
    special: target ids of special tokens (copied when they have a source counterpart).
    pieces: per target id, the source ids of its decomposition ([] when none).
    tokens: the target token strings by id.
    source_special: source ids of special tokens (left out of moments and OFA's candidates).
  """

  target_size: int
  source_size: int
  copy: dict[int, int]
  special: set[int]
  pieces: list[list[int]]
  tokens: list[str]
  source_special: list[int] = dataclasses.field(default_factory=list)

  @property
  def overlap(self) -> dict[int, int]:
    """Copied non-special target ids -> source id (FOCUS's anchors)."""
    return {t: s for t, s in self.copy.items() if t not in self.special}

  def fresh(self) -> np.ndarray:
    """Target ids that are not copied (the rows each method actually initialises)."""
    return np.array([t for t in range(self.target_size) if t not in self.copy], np.int64)


def _id_to_token(tokenizer: tokenizers.Tokenizer) -> list[str]:
  vocab = tokenizer.get_vocab(with_added_tokens=True)
  size = tokenizer.get_vocab_size(with_added_tokens=True)
  tokens = [""] * size
  for tok, i in vocab.items():
    if not 0 <= i < size:
      raise ValueError(f"token {tok!r} has id {i}, outside [0, {size}): ids must be contiguous")
    tokens[i] = tok
  return tokens


def build_plan(source: tokenizers.Tokenizer, target: tokenizers.Tokenizer, *,
               bare: str = "shortest", ids: Sequence[int] | None = None,
               decomposer: Decomposer | None = None) -> TokenPlan:
  """Decomposes every target token into source pieces and decides which rows are copied.

  Args:
    source: the source model's tokenizer.
    target: the new tokenizer.
    bare: how to read a byte-level / Metaspace token without a space marker ("foo" in
      "self.foo" or in "barfoo"): "continuation" (literally mid-word, "##foo"), "word" (a word
      start, as after punctuation) or "shortest" (whichever needs fewer source pieces, no [UNK]
      first, continuation on ties). WordPiece targets spell continuations explicitly.
    ids: decompose only these target ids (the others get no pieces and no copy).
    decomposer: a `Decomposer(source)` to reuse across calls.
  """
  if bare not in ("shortest", "continuation", "word"):
    raise ValueError(f"bare={bare!r} is not one of ('shortest', 'continuation', 'word')")
  decompose = decomposer or Decomposer(source)
  spelling = spelling_of(target)
  source_vocab = decompose.vocab
  # Role names count as specials even when the source never registered them as added tokens.
  source_specials = {**{t: i for t, i in source_vocab.items() if t in _ROLE_OF},
                     **special_tokens(source)}
  source_by_role = {_ROLE_OF[t]: i for t, i in source_specials.items() if t in _ROLE_OF}
  tokens = _id_to_token(target)
  target_specials = {**{t: i for t, i in target.get_vocab(True).items() if t in _ROLE_OF},
                     **special_tokens(target)}
  ambiguous = spelling.kind in ("byte_level", "metaspace")

  copy, special, pieces = {}, set(), []
  wanted = None if ids is None else set(int(i) for i in ids)
  for tid, tok in enumerate(tokens):
    if wanted is not None and tid not in wanted:
      pieces.append([])
      continue
    if tok in target_specials:
      special.add(tid)
      pieces.append([])
      if tok in source_specials or tok in source_vocab:
        copy[tid] = source_vocab[tok]
      elif _ROLE_OF.get(tok) in source_by_role:
        copy[tid] = source_by_role[_ROLE_OF[tok]]
      continue
    text, starts_word = surface_form(tok, spelling)
    ids = decompose(text, starts_word)
    if ambiguous and not starts_word and bare != "continuation":
      as_word = decompose(text, True)
      if bare == "word":
        ids = as_word
      else:
        key = lambda x: (decompose.unk_id in x, len(x))
        ids = as_word if key(as_word) < key(ids) else ids
    pieces.append(ids)
    if len(ids) == 1 and ids[0] != decompose.unk_id and ids[0] not in source_specials.values():
      copy[tid] = ids[0]
  return TokenPlan(target_size=len(tokens), source_size=source.get_vocab_size(True), copy=copy,
                   special=special, pieces=pieces, tokens=tokens,
                   source_special=sorted(source_specials.values()))


def _check(source_emb: np.ndarray, plan: TokenPlan) -> np.ndarray:
  source_emb = np.asarray(source_emb)
  if source_emb.ndim != 2 or source_emb.shape[0] < plan.source_size:
    raise ValueError(f"source embeddings have shape {source_emb.shape}; expected "
                     f"[>= {plan.source_size} (source vocabulary), D]")
  return source_emb.astype(np.float64)


def _with_copies(rows: np.ndarray, source_emb: np.ndarray, plan: TokenPlan) -> np.ndarray:
  for t, s in plan.copy.items():
    rows[t] = source_emb[s]
  return rows.astype(np.float32)


def _regular(plan: TokenPlan) -> np.ndarray:
  """Source ids of real tokens (special rows such as [PAD] would skew the moments)."""
  return np.setdiff1d(np.arange(plan.source_size), plan.source_special)


def _regular_rows(source_emb: np.ndarray, plan: TokenPlan) -> np.ndarray:
  return source_emb[_regular(plan)]


def init_random(source_emb: np.ndarray, plan: TokenPlan, *, seed: int = 0) -> np.ndarray:
  """Fresh rows ~ N(mean, std) per dimension of the source embeddings."""
  e = _check(source_emb, plan)
  src = _regular_rows(e, plan)
  rng = np.random.default_rng(seed)
  rows = src.mean(0) + src.std(0) * rng.standard_normal((plan.target_size, e.shape[1]))
  return _with_copies(rows, e, plan)


def init_multivariate(source_emb: np.ndarray, plan: TokenPlan, *, seed: int = 0,
                      scale: float = 1e-5) -> np.ndarray:
  """Fresh rows ~ N(mean, scale * covariance) of the source embeddings (full covariance)."""
  if scale < 0:
    raise ValueError(f"scale must be >= 0, got {scale}")
  e = _check(source_emb, plan)
  src = _regular_rows(e, plan)
  mu, cov = src.mean(0), np.cov(src, rowvar=False)
  rng = np.random.default_rng(seed)
  # Eigen-decomposition rather than Cholesky: the covariance may be singular.
  w, v = np.linalg.eigh(cov * scale)
  factor = v * np.sqrt(np.clip(w, 0, None))
  rows = mu + rng.standard_normal((plan.target_size, e.shape[1])) @ factor.T
  return _with_copies(rows, e, plan)


def _mean_rows(e: np.ndarray, plan: TokenPlan) -> np.ndarray:
  centroid = _regular_rows(e, plan).mean(0)
  rows = np.empty((plan.target_size, e.shape[1]))
  for t, ids in enumerate(plan.pieces):
    rows[t] = e[ids].mean(0) if ids else centroid
  return rows


def init_mean(source_emb: np.ndarray, plan: TokenPlan) -> np.ndarray:
  """FVT: each fresh row is the mean of its source pieces' embeddings (centroid if none)."""
  e = _check(source_emb, plan)
  return _with_copies(_mean_rows(e, plan), e, plan)


def sparsemax(z: np.ndarray) -> np.ndarray:
  """Euclidean projection of each row of `z` onto the probability simplex (Martins 2016)."""
  z = np.atleast_2d(np.asarray(z, np.float64))
  s = -np.sort(-z, axis=-1)
  k = np.arange(1, z.shape[-1] + 1)
  cumsum = np.cumsum(s, axis=-1)
  support = 1 + k * s > cumsum
  k_z = support.sum(-1, keepdims=True)
  tau = (np.take_along_axis(cumsum, k_z - 1, axis=-1) - 1) / k_z
  return np.maximum(z - tau, 0)


def _unit(x: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.where(norm > 0, norm, 1)


def init_focus(source_emb: np.ndarray, plan: TokenPlan, aux: np.ndarray, *,
               temperature: float = 1.0) -> np.ndarray:
  """FOCUS: fresh rows = sparsemax(cos(aux_t, aux_anchors) / T) @ E_source[anchors].

  Args:
    aux: [target vocab, d] auxiliary vectors of the target tokens; an all-zero row marks a
      token without one, which falls back to `mean`.
    temperature: divides the similarities (FOCUS uses the raw cosine, T = 1).
  """
  e = _check(source_emb, plan)
  aux = np.asarray(aux, np.float64)
  if aux.ndim != 2 or aux.shape[0] != plan.target_size:
    raise ValueError(f"aux vectors have shape {aux.shape}; expected [{plan.target_size}, d]")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  rows = _mean_rows(e, plan)
  seen = np.linalg.norm(aux, axis=1) > 0
  anchors = np.array([t for t in plan.overlap if seen[t]], np.int64)
  fresh = np.array([t for t in plan.fresh() if seen[t] and t not in plan.special], np.int64)
  if len(anchors) and len(fresh):
    sims = _unit(aux[fresh]) @ _unit(aux[anchors]).T
    weights = sparsemax(sims / temperature)
    anchor_src = np.array([plan.copy[t] for t in anchors])
    rows[fresh] = weights @ e[anchor_src]
  return _with_copies(rows, e, plan)


def init_ofa(source_emb: np.ndarray, plan: TokenPlan, *, rank: int | None = None,
             top_k: int = 10, temperature: float = 0.1) -> np.ndarray:
  """OFA in the low-rank coordinates of the source embeddings (see the module docstring).

  `rank` defaults to min(128, D).
  """
  e = _check(source_emb, plan)
  rank = min(128, e.shape[1]) if rank is None else rank
  if not 1 <= rank <= e.shape[1]:
    raise ValueError(f"rank must be in [1, {e.shape[1]}], got {rank}")
  if top_k < 1 or temperature <= 0:
    raise ValueError(f"need top_k >= 1 and temperature > 0, got {top_k}, {temperature}")
  u, s, vt = np.linalg.svd(e[:plan.source_size], full_matrices=False)
  coords, primitive = u[:, :rank], s[:rank, None] * vt[:rank]
  candidates = _regular(plan)
  unit = _unit(coords[candidates])
  rows = _mean_rows(e, plan)
  fresh = np.array([t for t in plan.fresh() if plan.pieces[t]], np.int64)
  k = min(top_k, len(candidates))
  for start in range(0, len(fresh), 512):  # chunks: one [chunk, V] similarity block at a time
    chunk = fresh[start:start + 512]
    queries = _unit(np.stack([coords[plan.pieces[t]].mean(0) for t in chunk]))
    sims = queries @ unit.T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    w = np.exp((top_sims - top_sims.max(1, keepdims=True)) / temperature)
    w /= w.sum(1, keepdims=True)
    rows[chunk] = np.einsum("ck,ckr->cr", w, coords[candidates[top]]) @ primitive
  return _with_copies(rows, e, plan)


def ppmi_matrix(sequences: Sequence[Sequence[int]], vocab_size: int, *, window: int = 5,
                smoothing: float = 0.75) -> scipy.sparse.csr_matrix:
  """PPMI of windowed co-occurrence counts, [vocab_size, vocab_size] sparse.

  Counts pairs (a, b) at distance 1..window in each sequence (both directions); PPMI with
  context-distribution smoothing (Levy et al. 2015): max(0, log P(a,b) / (P(a) P_s(b))), where
  P(a,b) = n(a,b) / N, P(a) = sum_b n(a,b) / N and P_s(b) ∝ (sum_a n(a,b))^smoothing.
  """
  if window < 1:
    raise ValueError(f"need window >= 1, got window={window}")
  rows, cols = [], []
  for seq in sequences:
    seq = np.asarray(seq, np.int64)
    if len(seq) and (seq.min() < 0 or seq.max() >= vocab_size):
      raise ValueError(f"token ids must be in [0, {vocab_size}), got {seq.min()}..{seq.max()}")
    for d in range(1, window + 1):
      if len(seq) > d:
        rows += [seq[:-d], seq[d:]]
        cols += [seq[d:], seq[:-d]]
  if not rows:
    return scipy.sparse.csr_matrix((vocab_size, vocab_size))
  r, c = np.concatenate(rows), np.concatenate(cols)
  counts = scipy.sparse.coo_matrix((np.ones(len(r)), (r, c)),
                                   shape=(vocab_size, vocab_size)).tocsr()
  counts.sum_duplicates()
  total = counts.sum()
  p_word = np.asarray(counts.sum(1)).ravel() / total
  ctx = np.asarray(counts.sum(0)).ravel() ** smoothing
  p_ctx = ctx / ctx.sum()
  coo = counts.tocoo()
  pmi = np.log(coo.data / total / (p_word[coo.row] * p_ctx[coo.col]))
  keep = pmi > 0
  return scipy.sparse.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])),
                                 shape=counts.shape)


def static_vectors(sequences: Sequence[Sequence[int]], vocab_size: int, *, dim: int = 100,
                   window: int = 5, smoothing: float = 0.75) -> np.ndarray:
  """Auxiliary static token vectors: U_d sqrt(S_d) of the truncated SVD of `ppmi_matrix`.

  Tokens that never co-occur with anything get all-zero rows.
  """
  if dim < 1:
    raise ValueError(f"need dim >= 1, got dim={dim}")
  ppmi = ppmi_matrix(sequences, vocab_size, window=window, smoothing=smoothing)
  out = np.zeros((vocab_size, dim), np.float32)
  k = min(dim, min(ppmi.shape) - 1)
  if ppmi.nnz == 0 or k < 1:
    return out
  u, s, _ = scipy.sparse.linalg.svds(ppmi, k=k, random_state=0)
  order = np.argsort(-s)
  out[:, :k] = (u[:, order] * np.sqrt(s[order])).astype(np.float32)
  return out


def tokenized_texts(tokenizer: tokenizers.Tokenizer, texts: Sequence[str]) -> list[list[int]]:
  """Target ids of `texts` without special tokens or truncation (for `static_vectors`)."""
  tokenizer = tokenizers.Tokenizer.from_str(tokenizer.to_str())
  tokenizer.no_truncation()
  tokenizer.no_padding()
  return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def initialize(method: str, source_emb: np.ndarray, plan: TokenPlan, *,
               target: tokenizers.Tokenizer | None = None, texts: Sequence[str] | None = None,
               aux: np.ndarray | None = None, seed: int = 0, **options) -> np.ndarray:
  """The new embedding matrix [plan.target_size, D] (float32) by `method` (see METHODS).

  `focus` needs `aux` vectors, or `target` and `texts` to train them with `static_vectors`.
  """
  if method == "random":
    return init_random(source_emb, plan, seed=seed, **options)
  if method == "multivariate":
    return init_multivariate(source_emb, plan, seed=seed, **options)
  if method == "mean":
    return init_mean(source_emb, plan, **options)
  if method == "ofa":
    return init_ofa(source_emb, plan, **options)
  if method == "focus":
    if aux is None:
      if target is None or texts is None:
        raise ValueError("method 'focus' needs aux vectors, or the target tokenizer and texts "
                         "to train them on")
      aux = static_vectors(tokenized_texts(target, texts), plan.target_size)
    return init_focus(source_emb, plan, aux, **options)
  raise ValueError(f"unknown initialisation method {method!r}; expected one of {METHODS}")
