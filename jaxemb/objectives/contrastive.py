"""Embedding losses as pure jnp functions of embedding arrays.

Every loss returns `(loss, metrics)`: a float32 scalar and a dict of float32 scalars (the dict
always holds "loss"). Similarities, logits and softmaxes are computed in float32 whatever the
embedding dtype, because bf16 logits lose the small differences a softmax over a large batch
depends on.

None of these functions normalise their inputs (except `cosent`, whose definition is a cosine):
pass L2-normalised embeddings for cosine similarity, as the callers in `jaxemb.train` do.

Cross-device negatives come for free: under `jax.jit` with the batch sharded over devices, the
loss sees the global `[B, D]` array, so every query competes with every document in the global
batch, whichever device holds it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]
LossOutput = tuple[jax.Array, Metrics]


# ---------------------------------------------------------------------------------------------
# Validation helpers.


def _check_pair(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
  if a.ndim != 2:
    raise ValueError(f"{name_a} must have shape [B, D], got shape {a.shape}")
  if b.shape != a.shape:
    raise ValueError(
        f"{name_b} must have the same shape as {name_a} {a.shape}, got shape {b.shape}"
    )


def _check_positive(name: str, value) -> None:
  # Only concrete Python numbers can be checked; traced scales are the caller's responsibility.
  if isinstance(value, (int, float)) and not value > 0:
    raise ValueError(f"{name} must be > 0, got {value}")


def _check_label_smoothing(label_smoothing: float) -> None:
  if isinstance(label_smoothing, (int, float)) and not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")


# ---------------------------------------------------------------------------------------------
# Shared pieces.


def scale_from_log(log_scale: jax.Array, max_scale: float = 100.0) -> jax.Array:
  """Learnable temperature: `exp(log_scale)` clipped at `max_scale` (CLIP: 100).

  Learning the log keeps the scale positive; the clip stops the logits from growing without
  bound, which destabilises training (Radford et al. 2021). Above the clip the gradient w.r.t.
  `log_scale` is zero, the same effect as CLIP's in-place clamp of the parameter.

  Args:
    log_scale: scalar parameter (usually initialised to `log(1 / 0.07)` or `log(20)`).
    max_scale: upper bound on the returned scale.

  Returns:
    The float32 scale to pass as `scale=` to `info_nce` / `sigmoid_loss`.
  """
  _check_positive("max_scale", max_scale)
  log_scale = jnp.asarray(log_scale, jnp.float32)
  return jnp.exp(jnp.minimum(log_scale, jnp.log(jnp.float32(max_scale))))


def _similarities(
    queries: jax.Array, docs: jax.Array, hard_negatives: jax.Array | None
) -> jax.Array:
  """Raw float32 `[B, B + B * K]` query-candidate dot products (validated shapes)."""
  _check_pair("queries", queries, "docs", docs)
  candidates = docs
  if hard_negatives is not None:
    b, d = docs.shape
    if hard_negatives.ndim != 3 or hard_negatives.shape[0] != b or hard_negatives.shape[2] != d:
      raise ValueError(
          f"hard_negatives must have shape [B={b}, K, D={d}], got shape {hard_negatives.shape}"
      )
    candidates = jnp.concatenate([docs, hard_negatives.reshape(-1, d)], axis=0)
  # HIGHEST: on TPU/GPU the default f32 matmul may run in bf16/tf32 passes; this matrix is
  # small next to the encoder and the softmax over a large batch needs its precision.
  return jnp.einsum(
      "bd,nd->bn",
      queries.astype(jnp.float32),
      candidates.astype(jnp.float32),
      precision=jax.lax.Precision.HIGHEST,
  )


def contrastive_logits(
    queries: jax.Array,
    docs: jax.Array,
    *,
    scale: float | jax.Array = 20.0,
    hard_negatives: jax.Array | None = None,
) -> jax.Array:
  """Query-to-document logits over the whole batch, in float32.

  Args:
    queries: `[B, D]` query embeddings (not normalised here).
    docs: `[B, D]` positive documents; `docs[i]` is the positive of `queries[i]`.
    scale: inverse temperature, a Python float or a (possibly traced) scalar array.
    hard_negatives: optional `[B, K, D]`; every query scores against all `B * K` of them, as
      in sentence-transformers' MultipleNegativesRankingLoss.

  Returns:
    `[B, B + B * K]` logits; column `i` of row `i` is the positive, columns `B:` are the
    flattened hard negatives (row-major over `[B, K]`).
  """
  _check_positive("scale", scale)
  return jnp.asarray(scale, jnp.float32) * _similarities(queries, docs, hard_negatives)


def _matvec(x: jax.Array, v: jax.Array) -> jax.Array:
  return jnp.dot(x, v, precision=jax.lax.Precision.HIGHEST)


def _smoothed_cross_entropy(
    logits: jax.Array, positive: jax.Array, mean_logit: jax.Array, axis: int, eps: float
) -> jax.Array:
  """Mean softmax cross-entropy along `axis`, given each row's positive and mean logit.

  With target `(1 - e) * onehot + e / C`, the loss is `lse - (1 - e) * positive - e * mean`.
  The positive and mean logits come in precomputed from the embeddings (O(B * D)) so the only
  `B x B` work is the log-sum-exp: no gathers, transposes or extra `B x B` buffers, which
  matters once the global batch is large.
  """
  lse = jax.nn.logsumexp(logits, axis=axis)
  return jnp.mean(lse - (1.0 - eps) * positive - eps * mean_logit)


def _similarity_metrics(sim: jax.Array) -> Metrics:
  """Top-1 accuracy and mean positive / negative similarity of a `[B, N>=B]` matrix."""
  b, n = sim.shape
  accuracy = jnp.mean((jnp.argmax(sim, axis=-1) == jnp.arange(b)).astype(jnp.float32))
  diag = jnp.diagonal(sim)
  negative = (jnp.sum(sim) - jnp.sum(diag)) / max(b * n - b, 1)
  positive = jnp.mean(diag)
  return {"accuracy": accuracy, "positive_sim": positive, "negative_sim": negative}


# ---------------------------------------------------------------------------------------------
# Losses.


def info_nce(
    queries: jax.Array,
    docs: jax.Array,
    *,
    scale: float | jax.Array = 20.0,
    hard_negatives: jax.Array | None = None,
    symmetric: bool = True,
    label_smoothing: float = 0.0,
) -> LossOutput:
  """InfoNCE / in-batch softmax loss (MultipleNegativesRankingLoss, CLIP).

  `logits = scale * queries @ candidates.T` over the whole (global) batch, the positive of
  query i is doc i, every other doc (and every hard negative) is a negative. With `symmetric`,
  the doc-to-query direction (docs against queries only, the CLIP form, no hard negatives) is
  added and the two directions are averaged.

  Embeddings are not normalised here: pass L2-normalised embeddings for cosine logits.

  Args:
    queries: `[B, D]` query embeddings, any float dtype.
    docs: `[B, D]` positive documents.
    scale: inverse temperature. May be a traced array for a learnable temperature: pass
      `scale_from_log(log_scale)`, i.e. `exp(log_scale)` clipped at 100 as in CLIP.
    hard_negatives: optional `[B, K, D]`; each query also scores against all `B * K`.
    symmetric: add the doc-to-query direction and average.
    label_smoothing: in `[0, 1)`; target `(1 - e) * onehot + e / num_columns`.

  Returns:
    `(loss, metrics)`; metrics "loss", "accuracy" (top-1 query-to-doc, hard negatives
    included), "positive_sim" and "negative_sim" (mean raw similarity, before `scale`, of
    positives and of all query-to-doc negatives).
  """
  _check_label_smoothing(label_smoothing)
  _check_positive("scale", scale)
  scale = jnp.asarray(scale, jnp.float32)
  sim = _similarities(queries, docs, hard_negatives)
  logits = scale * sim
  b, dim = queries.shape
  q = queries.astype(jnp.float32)
  d = docs.astype(jnp.float32)
  positive = scale * jnp.sum(q * d, axis=-1)
  # Mean over candidates of q . c  ==  q . mean(c): no B x B mean needed.
  mean_doc = jnp.mean(d, axis=0)
  if hard_negatives is not None:
    k = hard_negatives.shape[1]
    mean_hard = jnp.mean(hard_negatives.astype(jnp.float32).reshape(-1, dim), axis=0)
    mean_doc = (mean_doc + k * mean_hard) / (1 + k)
  loss = _smoothed_cross_entropy(logits, positive, scale * _matvec(q, mean_doc), 1, label_smoothing)
  if symmetric:
    # Doc-to-query over the in-batch block only (CLIP form); reduce over axis 0, no transpose.
    mean_query = scale * _matvec(d, jnp.mean(q, axis=0))
    loss_d2q = _smoothed_cross_entropy(logits[:, :b], positive, mean_query, 0, label_smoothing)
    loss = 0.5 * (loss + loss_d2q)
  return loss, {"loss": loss, **_similarity_metrics(jax.lax.stop_gradient(sim))}


def sigmoid_loss(
    queries: jax.Array,
    docs: jax.Array,
    *,
    scale: float | jax.Array = 10.0,
    bias: float | jax.Array = -10.0,
) -> LossOutput:
  """SigLIP pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image ...").

  Each (query i, doc j) pair is an independent binary problem with label +1 when `i == j`
  and -1 otherwise: `loss = -(1/B) sum_i sum_j log sigmoid(label_ij * (scale * q_i.d_j + bias))`.
  The defaults are the paper's initialisation (`t' = log 10`, `b = -10`); learn both by passing
  traced arrays (`scale_from_log(log_t)`, `bias`).

  Embeddings are not normalised here: pass L2-normalised embeddings.

  Args:
    queries: `[B, D]` query embeddings.
    docs: `[B, D]` positive documents.
    scale: inverse temperature, float or traced scalar.
    bias: logit bias, float or traced scalar; strongly negative at init because negatives
      outnumber positives B - 1 to 1.

  Returns:
    `(loss, metrics)` with "loss", "accuracy", "positive_sim", "negative_sim" as in `info_nce`.
  """
  _check_positive("scale", scale)
  sim = _similarities(queries, docs, None)
  logits = jnp.asarray(scale, jnp.float32) * sim + jnp.asarray(bias, jnp.float32)
  b = logits.shape[0]
  labels = 2.0 * jnp.eye(b, dtype=jnp.float32) - 1.0
  loss = -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / b
  return loss, {"loss": loss, **_similarity_metrics(jax.lax.stop_gradient(sim))}


def cosent(
    a: jax.Array,
    b: jax.Array,
    scores: jax.Array,
    *,
    scale: float = 20.0,
) -> LossOutput:
  """CoSENT ranking loss on pair cosines (Su 2022; sentence-transformers CoSENTLoss).

  `loss = log(1 + sum_{s_i > s_j} exp(scale * (cos_j - cos_i)))`: every pair of pairs whose
  gold scores are ordered contributes when their cosines are ordered the other way. Unlike the
  other losses this computes cosines itself (the definition is in terms of cosine), so the
  inputs need not be normalised.

  Args:
    a: `[B, D]` first sentence of each pair.
    b: `[B, D]` second sentence.
    scores: `[B]` gold similarity scores; only their order matters.
    scale: multiplier on cosine differences (sentence-transformers default 20).

  Returns:
    `(loss, metrics)` with "loss" and "pair_accuracy" (fraction of ordered gold pairs whose
    cosines are ordered the same way; 1.0 when no pair is ordered).
  """
  _check_pair("a", a, "b", b)
  _check_positive("scale", scale)
  if scores.shape != (a.shape[0],):
    raise ValueError(f"scores must have shape [B={a.shape[0]}], got shape {scores.shape}")
  a32 = a.astype(jnp.float32)
  b32 = b.astype(jnp.float32)
  dots = jnp.sum(a32 * b32, axis=-1)
  norms = jnp.linalg.norm(a32, axis=-1) * jnp.linalg.norm(b32, axis=-1)
  cos = dots / jnp.maximum(norms, 1e-12)
  s = scores.astype(jnp.float32)
  ordered = s[:, None] > s[None, :]  # [i, j]: gold says pair i is more similar than pair j
  diff = scale * (cos[None, :] - cos[:, None])  # [i, j] = scale * (cos_j - cos_i)
  # The leading 0 is the "1 +" inside the log; masked entries drop out of the log-sum-exp.
  masked = jnp.where(ordered, diff, -jnp.inf).ravel()
  terms = jnp.concatenate([jnp.zeros((1,), jnp.float32), masked])
  loss = jax.nn.logsumexp(terms)
  n_ordered = jnp.sum(ordered)
  agree = jnp.sum(ordered & (cos[:, None] > cos[None, :]))
  pair_accuracy = jnp.where(n_ordered > 0, agree / jnp.maximum(n_ordered, 1), 1.0)
  return loss, {"loss": loss, "pair_accuracy": pair_accuracy.astype(jnp.float32)}


def mse_distillation(student: jax.Array, teacher: jax.Array) -> LossOutput:
  """Mean squared error between student and teacher embeddings (sentence-transformers MSELoss).

  The mean is over all `B * D` elements. The teacher is treated as a constant
  (`stop_gradient`), since distillation never updates it.

  Args:
    student: `[B, D]` student embeddings.
    teacher: `[B, D]` teacher embeddings (same space; project first if the dims differ).

  Returns:
    `(loss, {"loss": loss})`.
  """
  _check_pair("student", student, "teacher", teacher)
  t = jax.lax.stop_gradient(teacher.astype(jnp.float32))
  loss = jnp.mean(jnp.square(student.astype(jnp.float32) - t))
  return loss, {"loss": loss}


# ---------------------------------------------------------------------------------------------
# Registry.

LOSSES: dict[str, Callable[..., LossOutput]] = {
    "info_nce": info_nce,
    "sigmoid": sigmoid_loss,
    "cosent": cosent,
    "mse_distillation": mse_distillation,
}


def get_loss(name: str) -> Callable[..., LossOutput]:
  """Looks a loss up by its registry name (configs refer to losses by string)."""
  try:
    return LOSSES[name]
  except KeyError:
    raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None
