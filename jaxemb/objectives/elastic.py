"""Elastic embeddings: one model usable at several (layer, dimension) sizes.

Three objectives, each a pure function of embedding arrays returning `(loss, metrics)`:

  - `matryoshka`: the base loss on nested prefixes of the embedding, each prefix re-normalised
    (Kusupati et al. 2022; sentence-transformers `MatryoshkaLoss`). Works on any `[B, D]`
    embeddings, including GradCache's cached ones: pass it as the `loss_fn` of
    `chunked_contrastive_value_and_grad`.
  - `two_d_matryoshka`: 2DMSE as sentence-transformers' `Matryoshka2dLoss` (= `AdaptiveLayerLoss`
    around a `MatryoshkaLoss` with one dimension per step): the last layer plus sampled earlier
    layers, each at one sampled prefix size, and a KL term aligning each sampled layer's
    embedding to the last layer's over the embedding *dimensions* (temperature 0.3).
  - `starbucks`: fixed (layer, dim) pairs, all every step (Zhuang et al. 2024, ielab/Starbucks
    `retrieval/modeling.py`): cross-entropy on every sub-size plus KL from the full model's
    detached in-batch score distribution to the sub-size's.

The layer inputs are per-layer pooled embeddings `[num_layers, B, D]` of queries and documents
(index 0 is whatever the caller puts first, e.g. the embedding-layer output as in Hugging Face
`hidden_states`; the last index is the full model). They need not be normalised: every size is
L2-normalised here after truncation, as `jaxemb.encode(..., truncate_dim=D)` does at serving time.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxemb.objectives.contrastive import LossOutput
from jaxemb.objectives.contrastive import contrastive_logits
from jaxemb.objectives.contrastive import info_nce

PairLoss = Callable[..., LossOutput]  # loss_fn(q [B, d], d [B, d], **kw) -> (loss, metrics)

_EPS = 1e-12


def truncate_normalize(x: jax.Array, dim: int) -> jax.Array:
  """The first `dim` entries of the last axis, L2-normalised (in float32)."""
  x = x[..., :dim].astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, _EPS)


def _check_dims(dims: Sequence[int], full: int) -> tuple[int, ...]:
  dims = tuple(dims)
  if not dims:
    raise ValueError("dims is empty; expected at least one prefix size")
  for d in dims:
    if not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= full:
      raise ValueError(f"dims contains {d!r}; expected ints in [1, D={full}]")
  if len(set(dims)) != len(dims):
    raise ValueError(f"dims {dims} has repeated sizes; expected distinct sizes")
  return dims


def _check_weights(weights: Sequence[float] | None, n: int, name: str = "weights") -> tuple:
  if weights is None:
    return (1.0,) * n
  weights = tuple(float(w) for w in weights)
  if len(weights) != n:
    raise ValueError(f"{name} has {len(weights)} entries; expected {n} (one per size)")
  return weights


def _check_layers(name: str, x: jax.Array) -> None:
  if x.ndim != 3:
    raise ValueError(f"{name} must have shape [num_layers, B, D], got shape {x.shape}")


def _prefix_metrics(metrics: dict, tag: str) -> dict:
  return {f"{k}@{tag}": v for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------
# Matryoshka.


def matryoshka(
    loss_fn: PairLoss,
    q: jax.Array,
    d: jax.Array,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    *,
    hard_negatives: jax.Array | None = None,
    n_dims_per_step: int = -1,
    key: jax.Array | None = None,
) -> LossOutput:
  """Matryoshka loss: `sum_k w_k * loss_fn(norm(q[:, :d_k]), norm(d[:, :d_k]))`.

  Args:
    loss_fn: base pair loss, e.g. `functools.partial(info_nce, scale=20.0)`; it receives the
      truncated, re-normalised embeddings (and `hard_negatives=` truncated the same way when
      given).
    q: `[B, D]` query embeddings (any scale: each prefix is re-normalised).
    d: `[B, D]` document embeddings.
    dims: prefix sizes, each in `[1, D]` (include D to train the full size too).
    weights: one weight per size (default 1 each).
    hard_negatives: optional `[B, K, D]`, truncated like `d`.
    n_dims_per_step: -1 uses every size each step (the default, as sentence-transformers);
      `n > 0` uses a random subset of `n` sizes drawn from `key` (weights unchanged).
    key: PRNG key, required when `n_dims_per_step > 0`.

  Returns:
    `(loss, metrics)`: "loss" (the weighted sum) and every base metric of each size as
    `"<name>@d<size>"` (e.g. "loss@d64", "accuracy@d64"). Sizes not drawn this step report the
    loss they would have had; only drawn sizes enter "loss".
  """
  if q.ndim != 2:
    raise ValueError(f"q must have shape [B, D], got shape {q.shape}")
  dims = _check_dims(dims, q.shape[-1])
  weights = _check_weights(weights, len(dims))
  active = jnp.ones((len(dims),), jnp.float32)
  if n_dims_per_step != -1:
    if not isinstance(n_dims_per_step, int) or not 1 <= n_dims_per_step <= len(dims):
      raise ValueError(f"n_dims_per_step={n_dims_per_step!r}; expected -1 or an int in "
                       f"[1, {len(dims)}]")
    if key is None:
      raise ValueError("n_dims_per_step > 0 needs a PRNG key; got key=None")
    chosen = jax.random.permutation(key, len(dims))[:n_dims_per_step]
    active = jnp.zeros((len(dims),), jnp.float32).at[chosen].set(1.0)
  total = jnp.zeros((), jnp.float32)
  metrics = {}
  for i, (dim, w) in enumerate(zip(dims, weights)):
    kwargs = {}
    if hard_negatives is not None:
      kwargs["hard_negatives"] = truncate_normalize(hard_negatives, dim)
    loss, m = loss_fn(truncate_normalize(q, dim), truncate_normalize(d, dim), **kwargs)
    total = total + active[i] * w * loss
    metrics.update(_prefix_metrics(m, f"d{dim}"))
  return total, {"loss": total, **metrics}


# ---------------------------------------------------------------------------------------------
# 2D Matryoshka (2DMSE).


def layer_weight(index: int | jax.Array, weighting: str) -> jax.Array:
  """Weight of a prior layer's loss: sentence-transformers' `AdaptiveLayerLoss` schemes.

  "linear" is `1 / (1 + index)` (the "weight 1/layer" of the original 2DMSE code and of
  sentence-transformers before v5), "log" is `1 / (1 + ln(1 + index))` (ESE), "uniform" is 1.
  """
  index = jnp.asarray(index, jnp.float32)
  if weighting == "linear":
    return 1.0 / (1.0 + index)
  if weighting == "log":
    return 1.0 / (1.0 + jnp.log1p(index))
  if weighting == "uniform":
    return jnp.ones_like(index)
  raise ValueError(f"layer_weighting={weighting!r}; expected 'linear', 'log' or 'uniform'")


def _sampled_dim_loss(loss_fn, q, d, dims, weights, index):
  """`weights[index] * loss_fn` at `dims[index]` for a traced index: one `lax.switch` branch
  per size, so only the drawn size is computed and any `loss_fn` is exact (no masking)."""
  branches = [
      functools.partial(
          lambda dim, w, q, d: w * loss_fn(truncate_normalize(q, dim),
                                           truncate_normalize(d, dim))[0], dim, w)
      for dim, w in zip(dims, weights)
  ]
  return jax.lax.switch(index, branches, q, d)


def embedding_kl(student: jax.Array, teacher: jax.Array, temperature: float) -> jax.Array:
  """`T * KL(softmax(teacher/T) || softmax(student/T))` over the last axis, batch-mean.

  The 2DMSE alignment term: distributions over the embedding dimensions. The teacher is
  detached (the last layer is the self-distillation target, sentence-transformers #3757).
  """
  t = jax.nn.softmax(jax.lax.stop_gradient(teacher.astype(jnp.float32)) / temperature, axis=-1)
  log_t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher.astype(jnp.float32)) / temperature,
                             axis=-1)
  log_s = jax.nn.log_softmax(student.astype(jnp.float32) / temperature, axis=-1)
  rows = student.reshape(-1, student.shape[-1]).shape[0]
  return temperature * jnp.sum(t * (log_t - log_s)) / rows


def sample_2d(key: jax.Array, num_layers: int, num_dims: int, n_layers_per_step: int
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The draws `two_d_matryoshka` makes from `key` (exposed so tests can reproduce them).

  Returns `(prior_layers [n], last_dim_index [], prior_dim_indices [n])`: `n` distinct prior
  layers in `[0, num_layers - 1)` and one size index per evaluated layer.
  """
  k_layers, k_last, k_prior = jax.random.split(key, 3)
  layers = jax.random.permutation(k_layers, num_layers - 1)[:n_layers_per_step]
  last_dim = jax.random.randint(k_last, (), 0, num_dims)
  prior_dims = jax.random.randint(k_prior, (n_layers_per_step,), 0, num_dims)
  return layers, last_dim, prior_dims


def two_d_matryoshka(
    loss_fn: PairLoss,
    q_layers: jax.Array,
    d_layers: jax.Array,
    dims: Sequence[int],
    key: jax.Array,
    weights: Sequence[float] | None = None,
    *,
    n_layers_per_step: int = 1,
    last_layer_weight: float = 1.0,
    prior_layers_weight: float = 1.0,
    kl_weight: float = 1.0,
    kl_temperature: float = 0.3,
    layer_weighting: str = "linear",
) -> LossOutput:
  """2D Matryoshka loss (2DMSE), as sentence-transformers' `Matryoshka2dLoss`.

  With `M_l` = the base loss at layer `l` on one prefix size drawn from `dims` (re-normalised):

    loss = last_layer_weight * M_last
         + sum over n sampled prior layers l of
             prior_layers_weight * w(l) / n * M_l
           + kl_weight * T * KL(softmax(e_last / T) || softmax(e_l / T))

  where `e_l` are the full-dimension, L2-normalised embeddings of queries and documents
  together (the KL is over the embedding dimensions, batch-mean over the 2B rows, the last
  layer detached) and `w(l)` follows `layer_weighting`. Every evaluated layer draws its own
  size, as each `MatryoshkaLoss` call in sentence-transformers does.

  Args:
    loss_fn: base pair loss, e.g. `functools.partial(info_nce, scale=20.0)`.
    q_layers: `[L, B, D]` per-layer pooled query embeddings; `q_layers[-1]` is the full model.
    d_layers: `[L, B, D]` document embeddings, same layers.
    dims: prefix sizes in `[1, D]`.
    key: PRNG key for the draws (see `sample_2d`); fold the step into it.
    weights: one weight per size (default 1).
    n_layers_per_step: prior layers drawn per step (1 as in 2DMSE), at most L - 1; -1 = all.
    last_layer_weight, prior_layers_weight, kl_weight: term weights (sentence-transformers: 1).
    kl_temperature: T (0.3 in sentence-transformers); 0 turns the KL term off.
    layer_weighting: "linear" (`1 / (1 + l)`), "log" or "uniform"; see `layer_weight`.

  Returns:
    `(loss, metrics)` with "loss", "loss_last", "loss_prior", "kl", "layer" (the first drawn
    prior layer), "dim" (the last layer's drawn size) and "prior_dim" (the first prior
    layer's size).
  """
  _check_layers("q_layers", q_layers)
  if d_layers.shape != q_layers.shape:
    raise ValueError(f"d_layers must have the shape of q_layers {q_layers.shape}, got shape "
                     f"{d_layers.shape}")
  num_layers, _, full = q_layers.shape
  if num_layers < 2:
    raise ValueError(f"two_d_matryoshka needs at least 2 layers, got {num_layers}")
  dims = _check_dims(dims, full)
  weights = _check_weights(weights, len(dims))
  if n_layers_per_step == -1:
    n_layers_per_step = num_layers - 1
  if not isinstance(n_layers_per_step, int) or not 1 <= n_layers_per_step <= num_layers - 1:
    raise ValueError(f"n_layers_per_step={n_layers_per_step!r}; expected -1 or an int in "
                     f"[1, {num_layers - 1}]")
  if not kl_temperature >= 0:
    raise ValueError(f"kl_temperature must be >= 0, got {kl_temperature}")
  layer_weight(0, layer_weighting)  # validates the name

  layers, last_dim, prior_dims = sample_2d(key, num_layers, len(dims), n_layers_per_step)
  loss_last = _sampled_dim_loss(loss_fn, q_layers[-1], d_layers[-1], dims, weights, last_dim)
  loss_prior = jnp.zeros((), jnp.float32)
  kl = jnp.zeros((), jnp.float32)
  last_full = truncate_normalize(jnp.concatenate([q_layers[-1], d_layers[-1]]), full)
  for j in range(n_layers_per_step):
    q_l = jnp.take(q_layers, layers[j], axis=0)
    d_l = jnp.take(d_layers, layers[j], axis=0)
    m = _sampled_dim_loss(loss_fn, q_l, d_l, dims, weights, prior_dims[j])
    loss_prior = loss_prior + layer_weight(layers[j], layer_weighting) / n_layers_per_step * m
    if kl_temperature > 0:
      e_l = truncate_normalize(jnp.concatenate([q_l, d_l]), full)
      kl = kl + embedding_kl(e_l, last_full, kl_temperature)
  loss = last_layer_weight * loss_last + prior_layers_weight * loss_prior + kl_weight * kl
  metrics = {
      "loss": loss, "loss_last": loss_last, "loss_prior": loss_prior, "kl": kl,
      "layer": layers[0].astype(jnp.float32),
      "dim": jnp.asarray(dims, jnp.float32)[last_dim],
      "prior_dim": jnp.asarray(dims, jnp.float32)[prior_dims[0]],
  }
  return loss, metrics


# ---------------------------------------------------------------------------------------------
# Starbucks.

# The MiniLM pairs (hidden_states index: 0 = embedding output, 6 = last layer).
MINILM_PAIRS = ((1, 32), (2, 64), (3, 96), (4, 128), (5, 192), (6, 384))


def score_kl(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
  """`KL(softmax(teacher) || softmax(student))` per row, batch-mean; the teacher is detached."""
  t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
  log_t = jax.nn.log_softmax(t, axis=-1)
  log_s = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(log_t) * (log_t - log_s)) / student_logits.shape[0]


def starbucks(
    q_layers: jax.Array,
    d_layers: jax.Array,
    pairs: Sequence[tuple[int, int]],
    *,
    scale: float | jax.Array = 20.0,
    kl_weight: float = 1.0,
    full_weight: float = 1.0,
    hard_negatives: jax.Array | None = None,
    symmetric: bool = False,
    renormalize: bool = True,
) -> LossOutput:
  """Starbucks representation loss: every (layer, dim) pair every step.

    loss = full_weight * CE(s_full)
           + sum_{(l, d) in pairs, != full} [CE(s_{l,d}) + kl_weight * KL(p_full || p_{l,d})]

  `s_{l,d}` are the in-batch logits `scale * q_l[:d] . d_l[:d]`, CE is `info_nce` (query to
  document, plus document to query when `symmetric`), `p` the row softmax of the query-to-
  candidate logits, and `s_full` (last layer, all D dims) is detached inside the KL. A pair
  equal to the full size is skipped (it is already the CE(s_full) term), as in ielab/Starbucks.

  Args:
    q_layers: `[L, B, D]` per-layer pooled query embeddings; `q_layers[-1]` is the full model.
    d_layers: `[L, B, D]` document embeddings.
    pairs: `(layer, dim)` pairs, `layer` indexing the first axis (negative counts from the end),
      `dim` in `[1, D]`; e.g. `MINILM_PAIRS` for 7 hidden states of MiniLM.
    scale: inverse temperature of the logits (Starbucks: 1 / 0.05 = 20).
    kl_weight: weight of each KL term (Starbucks' `kl_divergence_weight`, 1 in its scripts).
    full_weight: weight of the full-size CE (1 in Starbucks). With AdamW only the loss terms'
      relative weights matter; a larger weight keeps the full size's share of the update when
      the budget is short (`configs/codesearch_elastic.py:starbucks` uses the pair count).
    hard_negatives: optional `[L, B, K, D]` per-layer hard negatives, truncated like docs.
    symmetric: passed to `info_nce` (Starbucks' CE is query-to-document only: False).
    renormalize: L2-normalise every truncated embedding (True: the sizes are scored as
      `jaxemb.encode(truncate_dim=d)` serves them). False takes prefixes of the normalised
      full-dimension embeddings, as ielab/Starbucks does.

  Returns:
    `(loss, metrics)`: "loss", "loss_full", "ce_sub" and "kl_sub" (sums over the pairs), and
    per pair "loss@L<l>_d<d>" and "kl@L<l>_d<d>".
  """
  _check_layers("q_layers", q_layers)
  if d_layers.shape != q_layers.shape:
    raise ValueError(f"d_layers must have the shape of q_layers {q_layers.shape}, got shape "
                     f"{d_layers.shape}")
  num_layers, _, full = q_layers.shape
  if hard_negatives is not None and (
      hard_negatives.ndim != 4 or hard_negatives.shape[0] != num_layers
      or hard_negatives.shape[1] != q_layers.shape[1] or hard_negatives.shape[3] != full):
    raise ValueError(f"hard_negatives must have shape [L={num_layers}, B={q_layers.shape[1]}, "
                     f"K, D={full}], got shape {hard_negatives.shape}")
  pairs = tuple(tuple(p) for p in pairs)
  if not pairs:
    raise ValueError("pairs is empty; expected (layer, dim) pairs")
  for layer, dim in pairs:
    if not -num_layers <= layer < num_layers:
      raise ValueError(f"pair ({layer}, {dim}): layer out of range; expected in "
                       f"[{-num_layers}, {num_layers})")
    if not 1 <= dim <= full:
      raise ValueError(f"pair ({layer}, {dim}): dim out of range; expected in [1, {full}]")

  def embed(x, layer, dim):
    if renormalize:
      return truncate_normalize(x[layer], dim)
    return truncate_normalize(x[layer], full)[..., :dim]

  def size(layer, dim):
    hn = None if hard_negatives is None else embed(hard_negatives, layer, dim)
    return embed(q_layers, layer, dim), embed(d_layers, layer, dim), hn

  q_full, d_full, hn_full = size(-1, full)
  loss_full, _ = info_nce(q_full, d_full, scale=scale, hard_negatives=hn_full,
                          symmetric=symmetric)
  full_logits = contrastive_logits(q_full, d_full, scale=scale, hard_negatives=hn_full)
  ce_sub = jnp.zeros((), jnp.float32)
  kl_sub = jnp.zeros((), jnp.float32)
  metrics = {}
  for layer, dim in pairs:
    if layer % num_layers == num_layers - 1 and dim == full:
      continue
    q, d, hn = size(layer, dim)
    ce, _ = info_nce(q, d, scale=scale, hard_negatives=hn, symmetric=symmetric)
    kl = score_kl(contrastive_logits(q, d, scale=scale, hard_negatives=hn), full_logits)
    ce_sub = ce_sub + ce
    kl_sub = kl_sub + kl
    tag = f"L{layer % num_layers}_d{dim}"
    metrics[f"loss@{tag}"] = ce
    metrics[f"kl@{tag}"] = kl
  loss = full_weight * loss_full + ce_sub + kl_weight * kl_sub
  return loss, {"loss": loss, "loss_full": loss_full, "ce_sub": ce_sub, "kl_sub": kl_sub,
                **metrics}
