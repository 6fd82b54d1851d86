"""Knowledge-graph losses, regulariser and on-device negative sampling (pure jnp, PyKEEN 1.11.1).

sLCWA losses take `pos` `[B]` (scores of true triples) and `neg` `[B, K]` (scores of each true
triple's K corruptions) and return `(loss, metrics)`; LCWA losses take 1-N scores `[B, E]` and
0/1 labels `[B, E]`. All reductions are PyKEEN's default "mean".

  margin_ranking   mean_{b,k} relu(neg_bk - pos_b + margin)                    (MarginRankingLoss)
  softplus         mean over all B + B*K scores of softplus(-y * s), y = +-1   (SoftplusLoss)
  bce              mean over all scores of BCE-with-logits                      (BCEWithLogitsLoss)
  cross_entropy    mean_b -log softmax([pos_b, neg_b])_0                       (CrossEntropyLoss)
  nssa             0.5 * (mean_b -log s(m + pos_b)
                          + mean_b sum_k w_bk * -log s(-neg_bk - m)),
                   w_b = softmax(alpha * neg_b) without gradient               (NSSALoss)

NSSA's `adversarial_temperature` alpha multiplies the scores inside the softmax, i.e. it is an
*inverse* temperature, as in PyKEEN and the RotatE paper's code.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Metrics = dict[str, jax.Array]
LossOutput = tuple[jax.Array, Metrics]

SLCWA_LOSSES = ("margin_ranking", "softplus", "bce", "cross_entropy", "nssa")


def _check(pos: jax.Array, neg: jax.Array) -> None:
  if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0]:
    raise ValueError(f"expected pos [B] and neg [B, K], got shapes {pos.shape} and {neg.shape}")


def _out(loss: jax.Array, pos: jax.Array, neg: jax.Array) -> LossOutput:
  return loss, {"loss": loss, "pos_score": jnp.mean(pos), "neg_score": jnp.mean(neg)}


def margin_ranking(pos: jax.Array, neg: jax.Array, margin: float = 1.0) -> LossOutput:
  """Pairwise hinge: mean over (b, k) of max(0, neg_bk - pos_b + margin)."""
  _check(pos, neg)
  pos, neg = pos.astype(jnp.float32), neg.astype(jnp.float32)
  return _out(jnp.mean(jax.nn.relu(neg - pos[:, None] + margin)), pos, neg)


def softplus(pos: jax.Array, neg: jax.Array) -> LossOutput:
  """Pointwise logistic loss: softplus(-s) for positives, softplus(s) for negatives, averaged
  over all B + B*K scores together."""
  _check(pos, neg)
  pos, neg = pos.astype(jnp.float32), neg.astype(jnp.float32)
  total = jnp.sum(jax.nn.softplus(-pos)) + jnp.sum(jax.nn.softplus(neg))
  return _out(total / (pos.size + neg.size), pos, neg)


def bce(pos: jax.Array, neg: jax.Array) -> LossOutput:
  """Binary cross-entropy with logits, label 1 for positives and 0 for negatives, averaged over
  all B + B*K scores (numerically equal to `softplus`, kept for PyKEEN's name)."""
  _check(pos, neg)
  pos, neg = pos.astype(jnp.float32), neg.astype(jnp.float32)
  total = -jnp.sum(jax.nn.log_sigmoid(pos)) - jnp.sum(jax.nn.log_sigmoid(-neg))
  return _out(total / (pos.size + neg.size), pos, neg)


def cross_entropy(pos: jax.Array, neg: jax.Array) -> LossOutput:
  """Softmax cross-entropy of each positive against its own negatives."""
  _check(pos, neg)
  pos, neg = pos.astype(jnp.float32), neg.astype(jnp.float32)
  logits = jnp.concatenate([pos[:, None], neg], axis=1)
  return _out(jnp.mean(jax.nn.logsumexp(logits, axis=1) - pos), pos, neg)


def nssa(pos: jax.Array, neg: jax.Array, margin: float = 9.0,
         adversarial_temperature: float = 1.0) -> LossOutput:
  """Self-adversarial negative sampling loss (Sun et al. 2019) as PyKEEN's NSSALoss."""
  _check(pos, neg)
  pos, neg = pos.astype(jnp.float32), neg.astype(jnp.float32)
  weights = jax.nn.softmax(jax.lax.stop_gradient(neg) * adversarial_temperature, axis=-1)
  pos_loss = -jnp.mean(jax.nn.log_sigmoid(margin + pos))
  neg_loss = jnp.mean(jnp.sum(weights * -jax.nn.log_sigmoid(-neg - margin), axis=-1))
  return _out(0.5 * (pos_loss + neg_loss), pos, neg)


def slcwa_loss(name: str, pos: jax.Array, neg: jax.Array, **options) -> LossOutput:
  """Dispatch by name: one of SLCWA_LOSSES with its options (margin, adversarial_temperature)."""
  table = {"margin_ranking": (margin_ranking, {"margin"}), "softplus": (softplus, set()),
           "bce": (bce, set()), "cross_entropy": (cross_entropy, set()),
           "nssa": (nssa, {"margin", "adversarial_temperature"})}
  if name not in table:
    raise ValueError(f"unknown loss {name!r}; expected one of {SLCWA_LOSSES}")
  fn, valid = table[name]
  bad = sorted(set(options) - valid)
  if bad:
    raise ValueError(f"loss {name!r} takes options {sorted(valid)}, got unknown {bad}")
  return fn(pos, neg, **options)


# ---------------------------------------------------------------------------------------------
# LCWA (1-N) losses: scores against every entity.


def lcwa_bce(scores: jax.Array, labels: jax.Array) -> LossOutput:
  """BCE with logits averaged over every (query, entity) cell, as PyKEEN's LCWA BCE."""
  scores, labels = scores.astype(jnp.float32), labels.astype(jnp.float32)
  loss = jnp.mean(-labels * jax.nn.log_sigmoid(scores) - (1 - labels) * jax.nn.log_sigmoid(-scores))
  return loss, {"loss": loss}


def lcwa_cross_entropy(scores: jax.Array, labels: jax.Array) -> LossOutput:
  """Softmax cross-entropy with the labels of each row normalised to sum 1 (PyKEEN's)."""
  scores, labels = scores.astype(jnp.float32), labels.astype(jnp.float32)
  target = labels / jnp.maximum(jnp.sum(labels, axis=-1, keepdims=True), 1e-12)
  loss = jnp.mean(-jnp.sum(target * jax.nn.log_softmax(scores, axis=-1), axis=-1))
  return loss, {"loss": loss}


LCWA_LOSSES = ("bce", "cross_entropy")


def multi_hot(answers: jax.Array, num_entities: int) -> jax.Array:
  """`[B, M]` answer ids padded with -1 -> `[B, num_entities]` float32 0/1 labels."""
  b = answers.shape[0]
  # Padding (-1) goes to an extra column that is dropped.
  cols = jnp.where(answers < 0, num_entities, answers)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], answers.shape)
  return jnp.zeros((b, num_entities + 1), jnp.float32).at[rows, cols].set(1.0)[:, :num_entities]


def lcwa_loss(name: str, scores: jax.Array, labels: jax.Array) -> LossOutput:
  """Dispatch by name: one of LCWA_LOSSES on 1-N scores `[B, E]` and labels `[B, E]`."""
  table = {"bce": lcwa_bce, "cross_entropy": lcwa_cross_entropy}
  if name not in table:
    raise ValueError(f"unknown LCWA loss {name!r}; expected one of {LCWA_LOSSES}")
  if scores.shape != labels.shape or scores.ndim != 2:
    raise ValueError(f"expected scores and labels [B, E], got shapes {scores.shape} and "
                     f"{labels.shape}")
  return table[name](scores, labels)


# ---------------------------------------------------------------------------------------------
# Regulariser.


def expected_lp_norm(p: float, d: int) -> float:
  """E||x||_p for x ~ N(0, I_d) in PyKEEN's approximation (its LpRegularizer normalize=True)."""
  return (2.0 ** (p / 2) * math.gamma((p + 1) / 2) / math.sqrt(math.pi) * d) ** (1.0 / p)


def lp_regularizer(rows: Sequence[jax.Array], p: float = 2.0, dim: int | None = None,
                   normalize: bool = True) -> jax.Array:
  """Sum over the row arrays of mean_row ||row||_p (divided by the expected norm of `dim`).

  PyKEEN's LpRegularizer adds one such term per representation look-up (head, relation and
  tail of positives and of negatives, each a separate call), before its `weight`. `dim` is
  the vector dimension (complex dimensions for complex tables); default the row width.
  """
  total = jnp.zeros((), jnp.float32)
  for x in rows:
    x = x.astype(jnp.float32)
    norm = jnp.sum(jnp.abs(x) ** p, axis=-1) ** (1.0 / p)
    if normalize:
      norm = norm / expected_lp_norm(p, dim or x.shape[-1])
    total = total + jnp.mean(norm)
  return total


# ---------------------------------------------------------------------------------------------
# Negative sampling on device.


def _replace(key: jax.Array, original: jax.Array, num_entities: int) -> jax.Array:
  # Uniform over the other num_entities - 1 entities: draw from [0, n-1) and shift values at or
  # above the original up by one, as pykeen's random_replacement_ (never the original itself).
  draw = jax.random.randint(key, original.shape, 0, num_entities - 1, original.dtype)
  return draw + (draw >= original).astype(original.dtype)


def corrupt_basic(key: jax.Array, triples: jax.Array, num_negatives: int,
                  num_entities: int) -> jax.Array:
  """`[B, 3]` (h, r, t) -> `[B, K, 3]` corruptions: PyKEEN's BasicNegativeSampler.

  Each triple is repeated K times; of the B*K copies (in that order) the first ceil(B*K / 2)
  get a new head and the rest a new tail, uniform over the other entities.
  """
  if num_entities < 2 or num_negatives < 1:
    raise ValueError(f"need num_entities >= 2 and num_negatives >= 1, got {num_entities}, "
                     f"{num_negatives}")
  return _corrupt_halves(key, triples, num_negatives, num_entities)


def _corrupt_halves(key, triples, num_negatives, num_entities, replace=None):
  # The basic sampler's split: of the B*K copies, the first ceil(B*K / 2) get a new head.
  b = triples.shape[0]
  flat = jnp.repeat(triples, num_negatives, axis=0)
  n = flat.shape[0]
  corrupt_head = jnp.arange(n) < (n + 1) // 2
  return _apply(key, flat, corrupt_head, num_entities, replace).reshape(b, num_negatives, 3)


def corrupt_bernoulli(key: jax.Array, triples: jax.Array, num_negatives: int, num_entities: int,
                      head_probability: jax.Array) -> jax.Array:
  """`[B, 3]` -> `[B, K, 3]`: head corrupted with probability `head_probability[r]`, else the
  tail (PyKEEN's BernoulliNegativeSampler; see `bernoulli_head_probability`)."""
  if num_entities < 2 or num_negatives < 1:
    raise ValueError(f"need num_entities >= 2 and num_negatives >= 1, got {num_entities}, "
                     f"{num_negatives}")
  b = triples.shape[0]
  choose, replace = jax.random.split(key)
  prob = jnp.asarray(head_probability, jnp.float32)[triples[:, 1]]
  corrupt_head = jax.random.uniform(choose, (b, num_negatives)) < prob[:, None]
  flat = jnp.repeat(triples, num_negatives, axis=0)
  return _apply(replace, flat, corrupt_head.reshape(-1), num_entities).reshape(b, num_negatives, 3)


def _apply(key, flat, corrupt_head, num_entities, replace=None):
  # `replace(key, column) -> new ids` (default: uniform over the other entities).
  column = jnp.where(corrupt_head, flat[:, 0], flat[:, 2])
  new = (replace or functools.partial(_replace, num_entities=num_entities))(key, column)
  h = jnp.where(corrupt_head, new, flat[:, 0])
  t = jnp.where(corrupt_head, flat[:, 2], new)
  return jnp.stack([h, flat[:, 1], t], axis=1)


def cluster_tables(assignment: np.ndarray) -> dict[str, np.ndarray]:
  """Entity -> cluster ids `[E]` as the int32 look-up tables `corrupt_clustered` takes:
  "cluster" [E], "members" [E] (entity ids grouped by cluster), "start" / "size" [C] (each
  cluster's slice of members) and "position" [E] (each entity's index inside its slice)."""
  assignment = np.asarray(assignment)
  if assignment.ndim != 1 or not len(assignment) or assignment.min() < 0:
    raise ValueError(f"assignment must be a non-empty [E] array of cluster ids >= 0, got "
                     f"shape {assignment.shape}")
  members = np.argsort(assignment, kind="stable")
  size = np.bincount(assignment)
  start = np.concatenate([[0], np.cumsum(size)[:-1]])
  position = np.empty_like(members)
  position[members] = np.arange(len(members)) - start[assignment[members]]
  return {k: v.astype(np.int32) for k, v in (("cluster", assignment), ("members", members),
                                             ("start", start), ("size", size),
                                             ("position", position))}


def corrupt_clustered(key: jax.Array, triples: jax.Array, num_negatives: int, num_entities: int,
                      tables: dict[str, jax.Array], mix: float) -> jax.Array:
  """`[B, 3]` -> `[B, K, 3]`: LEMON-style negatives. Heads or tails are corrupted as
  `corrupt_basic` does (first half of the B*K copies heads); each replacement is, with
  probability `mix`, another member of the replaced entity's cluster (`cluster_tables`), else
  uniform over the other entities (also when the cluster has no other member)."""
  if num_entities < 2 or num_negatives < 1:
    raise ValueError(f"need num_entities >= 2 and num_negatives >= 1, got {num_entities}, "
                     f"{num_negatives}")
  if not 0.0 <= float(mix) <= 1.0:
    raise ValueError(f"mix must be in [0, 1], got {mix}")

  def replace(key, column):
    k_uniform, k_member, k_mix = jax.random.split(key, 3)
    uniform = _replace(k_uniform, column, num_entities)
    cluster = tables["cluster"][column]
    others = tables["size"][cluster] - 1
    # Uniform over the cluster's other members: index in [0, others), skipping the original.
    j = jnp.minimum((jax.random.uniform(k_member, column.shape) * others).astype(column.dtype),
                    jnp.maximum(others - 1, 0))
    j = j + (j >= tables["position"][column]).astype(column.dtype)
    same = tables["members"][tables["start"][cluster] + j]
    use = (jax.random.uniform(k_mix, column.shape) < mix) & (others > 0)
    return jnp.where(use, same, uniform)

  return _corrupt_halves(key, triples, num_negatives, num_entities, replace)


def bernoulli_head_probability(triples: np.ndarray, num_relations: int) -> np.ndarray:
  """Per relation tph / (tph + hpt) (Wang et al. 2014) from training triples `[N, 3]`.

  tph: mean number of distinct tails per (head, relation); hpt: mean number of distinct heads
  per (relation, tail). Relations without triples get 0.5.
  """
  triples = np.unique(np.asarray(triples, np.int64), axis=0)
  out = np.full(num_relations, 0.5, np.float32)
  for r in range(num_relations):
    rows = triples[triples[:, 1] == r]
    if not len(rows):
      continue
    _, tails_per_head = np.unique(rows[:, 0], return_counts=True)
    _, heads_per_tail = np.unique(rows[:, 2], return_counts=True)
    tph, hpt = tails_per_head.mean(), heads_per_tail.mean()
    out[r] = tph / (tph + hpt)
  return out
