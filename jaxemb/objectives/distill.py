"""Distillation objectives beyond embedding MSE (`contrastive.mse_distillation`).

  - `score_kl`: the student's in-batch score distribution matched to a teacher's
    (sentence-transformers `DistillKLDivLoss`, applied to the whole in-batch score matrix):
    teacher scores come in as an array, e.g. `teacher_q @ teacher_d.T` from teacher embeddings
    computed once and cached, so the teacher never runs in the training step.
  - `trg_loss`: token-level relationship graph distillation (Zhang et al. 2023, "Knowledge
    Distillation via Token-level Relationship Graph"): tokens are graph nodes, token-to-token
    similarities the edges. The node term asks each student token to pick out its own teacher
    token among the sequence's tokens (a token-level contrastive loss); the edge term matches
    each token's similarity distribution over the other tokens of its sequence to the teacher's
    (KL). The edge term compares similarity *structure* only, so student and teacher widths
    may differ; the node term needs the student projected to the teacher's width (the caller's
    trainable projection, e.g. a dense layer).

The paper's exact weights are not pinned down in the notes we have; the defaults chosen here are
node weight 1, edge weight 1, node temperature 0.1 and edge temperature 0.1 (cosine
similarities, so 0.1 gives the softmaxes a usable dynamic range). All computations in float32;
the teacher is always `stop_gradient`-ed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxemb.objectives.contrastive import LossOutput
from jaxemb.objectives.contrastive import contrastive_logits

_EPS = 1e-12


def _kl_rows(student_logits: jax.Array, teacher_logits: jax.Array, valid: jax.Array
             ) -> jax.Array:
  """Per-row `KL(softmax(teacher) || softmax(student))`, columns where `valid` is False
  excluded from both softmaxes (rows with no valid column give 0)."""
  neg = jnp.float32(-1e30)  # finite: -inf would give 0 * inf = nan in the masked terms
  s = jnp.where(valid, student_logits, neg)
  t = jnp.where(valid, teacher_logits, neg)
  log_s = jax.nn.log_softmax(s, axis=-1)
  log_t = jax.nn.log_softmax(t, axis=-1)
  p_t = jnp.where(valid, jnp.exp(log_t), 0.0)
  return jnp.sum(jnp.where(valid, p_t * (log_t - log_s), 0.0), axis=-1)


def score_kl(
    student_q: jax.Array,
    student_d: jax.Array,
    teacher_scores: jax.Array,
    *,
    temperature: float = 0.05,
    teacher_temperature: float | None = None,
    hard_negatives: jax.Array | None = None,
) -> LossOutput:
  """In-batch score distillation: `T^2 * KL(softmax(S_t / T_t) || softmax(S_s / T))`.

  `S_s = student_q @ candidates.T` (candidates = docs, then the flattened hard negatives, as in
  `contrastive_logits`), the KL is per query row over all candidates, batch-mean; the `T^2`
  factor keeps the gradient scale independent of the temperature (Hinton et al. 2015;
  sentence-transformers does the same).

  Args:
    student_q: `[B, D]` student query embeddings (normalised for cosine scores).
    student_d: `[B, D]` student document embeddings.
    teacher_scores: `[B, B + B*K]` teacher similarities of the same pairs, e.g.
      `teacher_q @ teacher_d.T` of cached teacher embeddings (any width).
    temperature: student temperature T (0.05 = scale 20).
    teacher_temperature: T_t; defaults to `temperature`.
    hard_negatives: optional `[B, K, D]` student hard negatives.

  Returns:
    `(loss, metrics)`: "loss" and "teacher_agreement" (fraction of queries whose top-scored
    candidate is the same for student and teacher).
  """
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
  if not teacher_temperature > 0:
    raise ValueError(f"teacher_temperature must be > 0, got {teacher_temperature}")
  logits = contrastive_logits(student_q, student_d, scale=1.0 / temperature,
                              hard_negatives=hard_negatives)
  if teacher_scores.shape != logits.shape:
    raise ValueError(f"teacher_scores must have shape {logits.shape} (queries x candidates), "
                     f"got shape {teacher_scores.shape}")
  teacher = jax.lax.stop_gradient(teacher_scores.astype(jnp.float32)) / teacher_temperature
  valid = jnp.ones(logits.shape, bool)
  loss = temperature**2 * jnp.mean(_kl_rows(logits, teacher, valid))
  agree = jnp.mean((jnp.argmax(logits, -1) == jnp.argmax(teacher, -1)).astype(jnp.float32))
  return loss, {"loss": loss, "teacher_agreement": agree}


def _normalize(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def _token_sims(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.einsum("btd,bsd->bts", _normalize(a), _normalize(b),
                    precision=jax.lax.Precision.HIGHEST)


def trg_loss(
    student_tokens: jax.Array,
    teacher_tokens: jax.Array,
    mask: jax.Array,
    *,
    node_weight: float = 1.0,
    edge_weight: float = 1.0,
    node_temperature: float = 0.1,
    edge_temperature: float = 0.1,
) -> LossOutput:
  """Token relationship graph distillation: `node_weight * L_node + edge_weight * L_edge`.

  Per sequence b, over its valid tokens (mask True), with cosine similarities:

    L_node = mean_i CE(softmax_j(cos(s_i, t_j) / tau_n), label i)    (j over valid tokens)
    L_edge = mean_i KL(softmax_{j != i}(cos(t_i, t_j) / tau_e) || softmax_{j != i}(cos(s_i, s_j)
             / tau_e))                                                  (j over other valid tokens)

  each averaged over all valid tokens of the batch (edge: tokens with at least one other valid
  token). The self-similarity is left out of the edge term because it is 1 for both and would
  dominate the softmax.

  Args:
    student_tokens: `[B, T, Ds]` student token states.
    teacher_tokens: `[B, T, Dt]` teacher token states (same tokenisation); `Ds` must equal `Dt`
      when `node_weight > 0` (project the student first).
    mask: `[B, T]` True (or 1) at real tokens.
    node_weight, edge_weight: term weights (1, 1).
    node_temperature, edge_temperature: softmax temperatures over cosines (0.1, 0.1).

  Returns:
    `(loss, metrics)` with "loss", "node", "edge" and "node_accuracy" (fraction of tokens
    whose nearest teacher token is their own).
  """
  if student_tokens.ndim != 3 or teacher_tokens.ndim != 3:
    raise ValueError(f"student_tokens and teacher_tokens must have shape [B, T, D], got shapes "
                     f"{student_tokens.shape} and {teacher_tokens.shape}")
  if student_tokens.shape[:2] != teacher_tokens.shape[:2]:
    raise ValueError(f"student_tokens {student_tokens.shape} and teacher_tokens "
                     f"{teacher_tokens.shape} must agree on [B, T]")
  if mask.shape != student_tokens.shape[:2]:
    raise ValueError(f"mask must have shape {student_tokens.shape[:2]}, got shape {mask.shape}")
  if node_weight and student_tokens.shape[2] != teacher_tokens.shape[2]:
    raise ValueError(f"the node term needs equal widths, got student {student_tokens.shape[2]} "
                     f"and teacher {teacher_tokens.shape[2]}; project the student to the "
                     "teacher's width or set node_weight=0")
  for name, t in (("node_temperature", node_temperature), ("edge_temperature", edge_temperature)):
    if not t > 0:
      raise ValueError(f"{name} must be > 0, got {t}")
  mask = mask.astype(bool)
  teacher = jax.lax.stop_gradient(teacher_tokens)
  pair = mask[:, :, None] & mask[:, None, :]  # [B, T, T] both tokens real
  t_len = mask.shape[1]
  eye = jnp.eye(t_len, dtype=bool)[None]

  node = jnp.zeros((), jnp.float32)
  node_accuracy = jnp.zeros((), jnp.float32)
  n_tokens = jnp.maximum(jnp.sum(mask), 1)
  if node_weight:
    logits = jnp.where(pair, _token_sims(student_tokens, teacher) / node_temperature, -1e30)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    own = jnp.sum(jnp.where(eye, log_p, 0.0), axis=-1)  # log p(own token)
    node = -jnp.sum(jnp.where(mask, own, 0.0)) / n_tokens
    hit = jnp.argmax(logits, axis=-1) == jnp.arange(t_len)[None]
    node_accuracy = jnp.sum(hit & mask) / n_tokens

  others = pair & ~eye
  rows = mask & jnp.any(others, axis=-1)
  s_edges = _token_sims(student_tokens, student_tokens) / edge_temperature
  t_edges = _token_sims(teacher, teacher) / edge_temperature
  edge_rows = _kl_rows(s_edges, t_edges, others)
  edge = jnp.sum(jnp.where(rows, edge_rows, 0.0)) / jnp.maximum(jnp.sum(rows), 1)
  loss = node_weight * node + edge_weight * edge
  return loss, {"loss": loss, "node": node, "edge": edge,
                "node_accuracy": node_accuracy.astype(jnp.float32)}
