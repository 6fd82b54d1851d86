"""Model merging over parameter pytrees: average, task arithmetic, TIES, Self Positioning, aTLAS.

Every method works on pure dicts of arrays with one structure (e.g. the `params` of
`jaxemb.functional.split(model)`); a *task vector* is a fine-tuned model minus the base
(Ilharco et al. 2023). `merge_models` applies a method to `EmbeddingModel`s and returns one;
`jaxemb merge --base M --models A B --method ... --out DIR` writes it as a sentence-transformers
directory.

  average            mean of the models (Wortsman et al. 2022, "model soups"; no base needed)
  task_arithmetic    base + lam * sum_i tau_i
  ties               TIES-Merging (Yadav et al. 2023): trim each tau_i to its top `density`
                     fraction by magnitude, elect each entry's sign by the sign of the summed
                     trimmed values, average only the entries that agree with it, base + lam * that
  self_positioning   base + sum_i alpha_i tau_i with one coefficient per task, found by
                     optimising a probe loss on a small balanced sample (Li et al. 2024,
                     "Improving General Text Embedding Model: Tackling Task Conflict and Data
                     Imbalance through Model Merging")
  tsv                TSV-Merge (Gargiulo et al. 2025, "Task Singular Vectors: Reducing Task
                     Interference in Model Merging"): per weight matrix, each task vector's top
                     1/n singular vectors, decorrelated across tasks by replacing the stacked
                     left and right singular vectors with their nearest orthonormal matrices;
                     other tensors (biases, norms) averaged; base + lam * that
  atlas              aTLAS (Zhang et al. 2024, "Knowledge Composition using Task Vectors with
                     Learned Anisotropic Scaling"): base + sum_i Lambda_i(tensor) tau_i, one
                     coefficient per task per parameter tensor, zero-initialised, AdamW
                     (lr 1e-3, weight decay 0.1, as fredzzhang/atlas)

The two learned methods take `loss_fn(params, step) -> scalar` (or `(scalar, metrics)`): any
differentiable function of the merged parameters, `step` the optimisation step (an int32
array) for picking the step's batch. `probe_loss` builds the contrastive one for text pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
LossFn = Callable[[PyTree, jax.Array], Any]
METHODS = ("average", "task_arithmetic", "ties", "tsv", "self_positioning", "atlas")
_NEEDS_BASE = ("task_arithmetic", "ties", "tsv", "self_positioning", "atlas")


# ---------------------------------------------------------------------------------------------
# Checks and task vectors.


def _paths(tree: PyTree) -> list[tuple[str, Any]]:
  return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def check_compatible(reference: PyTree, others: Sequence[PyTree], names: Sequence[str] | None = None
                     ) -> None:
  """ValueError unless every tree in `others` has `reference`'s structure and leaf shapes."""
  ref = _paths(reference)
  if not ref:
    raise ValueError("the parameter tree has no array leaves")
  ref_shapes = {p: tuple(np.shape(x)) for p, x in ref}
  for i, other in enumerate(others):
    name = names[i] if names else f"models[{i}]"
    shapes = {p: tuple(np.shape(x)) for p, x in _paths(other)}
    missing = sorted(set(ref_shapes) - set(shapes))
    extra = sorted(set(shapes) - set(ref_shapes))
    if missing or extra:
      raise ValueError(f"{name} has different parameters: missing {missing[:3]}, extra "
                       f"{extra[:3]}; expected models of one architecture")
    for p, shape in ref_shapes.items():
      if shapes[p] != shape:
        raise ValueError(f"{name} parameter {p} has shape {shapes[p]}; expected {shape} "
                         "(models of different shapes cannot be merged)")


def _check_models(models: Sequence[PyTree]) -> list[PyTree]:
  models = list(models)
  if not models:
    raise ValueError("models is empty; expected at least one model to merge")
  return models


def _need_base(method: str, base: PyTree | None) -> None:
  if base is None:
    raise ValueError(f"method {method!r} needs a base model (task vectors are fine-tuned minus "
                     "base); pass base=... (--base)")


def task_vectors(base: PyTree, models: Sequence[PyTree]) -> list[PyTree]:
  """`[model_i - base]` in float32."""
  models = _check_models(models)
  check_compatible(base, models)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return [jax.tree.map(lambda m, b: f32(m) - f32(b), m, base) for m in models]


def _apply(base: PyTree, delta: PyTree) -> PyTree:
  """`base + delta`, each leaf in the base's dtype."""
  return jax.tree.map(lambda b, d: (jnp.asarray(b, jnp.float32) + d).astype(jnp.asarray(b).dtype),
                      base, delta)


def _coefficients(lam: float | Sequence[float], n: int) -> jax.Array:
  lam = np.atleast_1d(np.asarray(lam, np.float32))
  if lam.shape == (1,):
    lam = np.repeat(lam, n)
  if lam.shape != (n,):
    raise ValueError(f"lam has {lam.shape[0]} values; expected 1 or one per model ({n})")
  return jnp.asarray(lam)


# ---------------------------------------------------------------------------------------------
# Closed-form merges.


def average(models: Sequence[PyTree]) -> PyTree:
  """Element-wise mean of the models (in float32, cast back to the first model's dtypes)."""
  models = _check_models(models)
  check_compatible(models[0], models[1:], [f"models[{i}]" for i in range(1, len(models))])
  mean = jax.tree.map(lambda *xs: sum(jnp.asarray(x, jnp.float32) for x in xs) / len(xs), *models)
  return jax.tree.map(lambda m, x: m.astype(jnp.asarray(x).dtype), mean, models[0])


def task_arithmetic(base: PyTree, models: Sequence[PyTree], lam: float | Sequence[float] = 1.0
                    ) -> PyTree:
  """`base + sum_i lam_i * (model_i - base)`; `lam` one value or one per model."""
  _need_base("task_arithmetic", base)
  taus = task_vectors(base, models)
  lam = _coefficients(lam, len(taus))
  delta = jax.tree.map(lambda *ts: sum(lam[i] * t for i, t in enumerate(ts)), *taus)
  return _apply(base, delta)


def _flat(tree: PyTree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def trim(tau: PyTree, density: float, scope: str = "global") -> PyTree:
  """TIES step 1: keep the `density` fraction of largest-magnitude entries, zero the rest.

  `scope="global"` ranks over the whole task vector (the TIES paper's code); "tensor" ranks
  within each tensor (mergekit's behaviour). Entries tied with the k-th magnitude are kept.
  """
  if not 0 < density <= 1:
    raise ValueError(f"density={density}; expected a fraction in (0, 1]")
  if scope not in ("global", "tensor"):
    raise ValueError(f"scope={scope!r}; expected 'global' or 'tensor'")

  def threshold(flat):
    k = max(1, int(round(density * flat.size)))
    if isinstance(flat, jax.core.Tracer):
      return jnp.sort(jnp.abs(flat))[flat.size - k]
    # Concrete arrays (the usual, offline merge): a linear-time selection instead of a full
    # sort, which on CPU takes most of a TIES merge of a 22M-parameter model.
    return np.partition(np.abs(np.asarray(flat)), flat.size - k)[flat.size - k]

  if scope == "global":
    t = threshold(_flat(tau))
    return jax.tree.map(lambda x: jnp.where(jnp.abs(x) >= t, x, 0.0), tau)
  return jax.tree.map(lambda x: jnp.where(jnp.abs(x) >= threshold(jnp.ravel(x)), x, 0.0), tau)


def ties(base: PyTree, models: Sequence[PyTree], *, density: float = 0.2, lam: float = 1.0,
         scope: str = "global") -> PyTree:
  """TIES-Merging: trim, elect sign, disjoint mean; `base + lam * merged task vector`.

  Args:
    base: the pre-trained parameters.
    models: fine-tuned parameters of the same architecture.
    density: fraction of each task vector kept by magnitude (the paper: 0.2).
    lam: scale of the merged task vector (the paper tunes it; 1 is its common value).
    scope: "global" or "tensor" ranking for the trim (see `trim`).
  """
  _need_base("ties", base)
  trimmed = [trim(t, density, scope) for t in task_vectors(base, models)]

  def merge_leaf(*ts):
    stack = jnp.stack(ts)                       # [n, ...]
    sign = jnp.sign(jnp.sum(stack, axis=0))     # elected sign: the sign of the total mass
    agree = (jnp.sign(stack) == sign) & (stack != 0)
    count = jnp.sum(agree, axis=0)
    total = jnp.sum(jnp.where(agree, stack, 0.0), axis=0)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)

  merged = jax.tree.map(merge_leaf, *trimmed)
  return _apply(base, jax.tree.map(lambda m: lam * m, merged))


_RANK_RTOL = 1e-10  # singular values below this fraction of the largest count as zero


def _nearest_orthonormal(x: np.ndarray) -> np.ndarray:
  """The matrix closest to `x` (Frobenius) whose columns are orthonormal on x's range.

  For full-rank `x` this is the polar factor P Q^T of x = P S Q^T. Directions with zero
  singular value are left out (a partial isometry) rather than filled with an arbitrary
  basis, so duplicated columns (identical task vectors) map onto one orthonormal set.
  """
  p, s, qt = np.linalg.svd(x, full_matrices=False)
  keep = s > _RANK_RTOL * s.max(initial=0.0)
  return p[:, keep] @ qt[keep]


def tsv(base: PyTree, models: Sequence[PyTree], *, lam: float = 1.0) -> PyTree:
  """TSV-Merge: low-rank, decorrelated task vectors per weight matrix.

  For every 2-D tensor, task vector i = U_i S_i V_i^T is cut to its top k = min(shape) // n
  singular triplets; the cut triplets of all tasks are stacked (U = [U_1k .. U_nk], S, V
  likewise) and U, V are replaced by their nearest orthonormal matrices, so one task's
  directions no longer overlap another's: merged = orth(U) diag(S) orth(V)^T. Other tensors
  take the mean of the task vectors (the paper's choice). SVDs run in float64 on the host.
  Triplets with zero singular value are dropped and rank-deficient stacks orthonormalised on
  their range only, so degenerate inputs (a zero task vector, identical models) are well
  defined; for generic fine-tuned models this changes nothing.

  Args:
    base: the pre-trained parameters.
    models: fine-tuned parameters of the same architecture.
    lam: scale of the merged task vector (the paper's default 1).
  """
  _need_base("tsv", base)
  taus = task_vectors(base, models)
  n = len(taus)

  def merge_leaf(*ts):
    if ts[0].ndim != 2:
      return sum(ts) / n
    k = max(1, min(ts[0].shape) // n)
    us, ss, vs = [], [], []
    for t in ts:
      u, sv, vt = np.linalg.svd(np.asarray(t, np.float64), full_matrices=False)
      # A zero singular value carries no update: its (arbitrary) vectors would only bend the
      # other tasks' directions in the orthogonalisation.
      keep = sv[:k] > _RANK_RTOL * sv.max(initial=0.0)
      us.append(u[:, :k][:, keep])
      ss.append(sv[:k][keep])
      vs.append(vt[:k][keep].T)
    sv = np.concatenate(ss)
    if not sv.size:
      return jnp.zeros(ts[0].shape, jnp.float32)
    u, v = np.concatenate(us, 1), np.concatenate(vs, 1)
    merged = (_nearest_orthonormal(u) * sv) @ _nearest_orthonormal(v).T
    return jnp.asarray(merged, jnp.float32)

  merged = jax.tree.map(merge_leaf, *taus)
  return _apply(base, jax.tree.map(lambda m: lam * m, merged))


# ---------------------------------------------------------------------------------------------
# Learned coefficients.


@dataclasses.dataclass
class LearnedMerge:
  """Result of a learned merge: the parameters, the coefficients and the loss per step."""

  params: PyTree
  coefficients: Any
  losses: np.ndarray


def _scalar_loss(out) -> jax.Array:
  return out[0] if isinstance(out, tuple) else out


def _learn(init: PyTree, compose: Callable[[PyTree], PyTree], loss_fn: LossFn,
           tx: optax.GradientTransformation, steps: int) -> tuple[PyTree, np.ndarray]:
  """Optimise coefficients `c` of `loss_fn(compose(c), step)` with `tx` for `steps` steps."""
  if not isinstance(steps, int) or steps < 0:
    raise ValueError(f"steps={steps!r}; expected an int >= 0")

  @jax.jit
  def step_fn(coeffs, opt_state, step):
    loss, grads = jax.value_and_grad(lambda c: _scalar_loss(loss_fn(compose(c), step)))(coeffs)
    updates, opt_state = tx.update(grads, opt_state, coeffs)
    return optax.apply_updates(coeffs, updates), opt_state, loss

  coeffs, opt_state, losses = init, tx.init(init), []
  for s in range(steps):
    coeffs, opt_state, loss = step_fn(coeffs, opt_state, jnp.int32(s))
    losses.append(float(loss))
  return coeffs, np.asarray(losses, np.float32)


def self_positioning(base: PyTree, models: Sequence[PyTree], loss_fn: LossFn, *,
                     steps: int = 50, tx: optax.GradientTransformation | None = None,
                     init: float | Sequence[float] | None = None) -> LearnedMerge:
  """Self Positioning: `base + sum_i alpha_i tau_i`, `alpha` fitted to a probe loss.

  Args:
    base: the pre-trained parameters.
    models: fine-tuned parameters.
    loss_fn: `loss_fn(params, step)` on the probe sample, balanced over the tasks (e.g.
      `probe_loss` over one pair set per task).
    steps: optimisation steps.
    tx: optimiser of the coefficients (default Adam, lr 0.01: scale-free, so the step size
      does not depend on the size of the task vectors; the paper's SGD is `optax.sgd(lr)`).
    init: starting coefficients, default `1 / n` each (the average of the models).

  Returns:
    `LearnedMerge(params, coefficients [n], losses [steps])`.
  """
  _need_base("self_positioning", base)
  taus = task_vectors(base, models)
  n = len(taus)
  alpha0 = _coefficients(1.0 / n if init is None else init, n)
  tx = optax.adam(0.01) if tx is None else tx

  def compose(alpha):
    return _apply(base, jax.tree.map(lambda *ts: sum(alpha[i] * t for i, t in enumerate(ts)),
                                     *taus))

  alpha, losses = _learn(alpha0, compose, loss_fn, tx, steps)
  return LearnedMerge(compose(alpha), np.asarray(alpha), losses)


def atlas_compose(base: PyTree, taus: Sequence[PyTree], coefficients: PyTree) -> PyTree:
  """`base + sum_i coefficients[leaf][i] * tau_i[leaf]`: one coefficient per task per tensor."""
  return _apply(base, jax.tree.map(lambda c, *ts: sum(c[i] * t for i, t in enumerate(ts)),
                                   coefficients, *taus))


def atlas(base: PyTree, models: Sequence[PyTree], loss_fn: LossFn, *, steps: int = 100,
          tx: optax.GradientTransformation | None = None, init: float = 0.0) -> LearnedMerge:
  """aTLAS: anisotropic task-vector scaling learned on `loss_fn`.

  Args:
    base: the pre-trained parameters.
    models: fine-tuned parameters.
    loss_fn: `loss_fn(params, step)`, e.g. the contrastive loss on a small sample.
    steps: optimisation steps (0 returns `init` everywhere: with init 0, the base).
    tx: default AdamW(lr 1e-3, weight decay 0.1), as fredzzhang/atlas.
    init: starting value of every coefficient (aTLAS: 0, i.e. the base model).

  Returns:
    `LearnedMerge(params, coefficients {tensor: [n]}, losses [steps])`.
  """
  _need_base("atlas", base)
  taus = task_vectors(base, models)
  n = len(taus)
  coeffs0 = jax.tree.map(lambda _: jnp.full((n,), init, jnp.float32), base)
  tx = optax.adamw(1e-3, weight_decay=0.1) if tx is None else tx
  coeffs, losses = _learn(coeffs0, lambda c: atlas_compose(base, taus, c), loss_fn, tx, steps)
  return LearnedMerge(atlas_compose(base, taus, coeffs), jax.tree.map(np.asarray, coeffs),
                      losses)


def merge_params(base: PyTree | None, models: Sequence[PyTree], method: str, *,
                 lam: float | Sequence[float] = 1.0, density: float = 0.2,
                 scope: str = "global", loss_fn: LossFn | None = None, steps: int | None = None,
                 tx: optax.GradientTransformation | None = None, info: dict | None = None
                 ) -> PyTree:
  """Dispatch on `method` (one of `METHODS`); returns the merged parameters.

  For the learned methods, a dict passed as `info` receives "coefficients" and "losses".
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r}; expected one of {METHODS}")
  models = _check_models(models)
  if method in _NEEDS_BASE:
    _need_base(method, base)
  if method == "average":
    if base is not None:
      check_compatible(base, models)
    return average(models)
  if method == "task_arithmetic":
    return task_arithmetic(base, models, lam)
  if method in ("ties", "tsv"):
    if np.asarray(lam).size != 1:
      raise ValueError(f"{method} takes one scale lam, got {lam!r}")
    scale = float(np.asarray(lam).ravel()[0])
    if method == "tsv":
      return tsv(base, models, lam=scale)
    return ties(base, models, density=density, lam=scale, scope=scope)
  if loss_fn is None:
    raise ValueError(f"method {method!r} learns its coefficients: pass loss_fn (for the CLI: "
                     "--probe-task)")
  fn = self_positioning if method == "self_positioning" else atlas
  kwargs = {} if steps is None else {"steps": steps}
  result = fn(base, models, loss_fn, tx=tx, **kwargs)
  if info is not None:
    info.update(coefficients=result.coefficients, losses=result.losses)
  return result.params


# ---------------------------------------------------------------------------------------------
# Embedding models.


def probe_loss(graph, pair_sets: Sequence[dict[str, np.ndarray]], *, batch_size: int,
               scale: float = 20.0, weights: Sequence[float] | None = None) -> LossFn:
  """Contrastive probe loss over one or more tokenised pair sets (one per task: balanced).

  Args:
    graph: the model's `Graph` from `jaxemb.functional.split`.
    pair_sets: each `{"query_ids", "query_mask", "doc_ids", "doc_mask"}` of `[N, L]` arrays;
      step s uses rows `s * batch_size ...` (cycling) of every set.
    batch_size: pairs per set per step (each set's in-batch negatives).
    scale: InfoNCE inverse temperature.
    weights: one non-negative weight per set, normalised to sum 1 (default equal: the
      balanced probe); more weight on a task asks the merge to keep more of it.

  Returns:
    `loss_fn(params, step)`: the weighted mean over the sets of symmetric InfoNCE.
  """
  from jaxemb.functional import apply
  from jaxemb.objectives.contrastive import info_nce
  if not pair_sets:
    raise ValueError("pair_sets is empty; expected one tokenised pair set per probe task")
  sets = [jax.tree.map(jnp.asarray, dict(s)) for s in pair_sets]
  weights = probe_weights(weights, len(sets))

  def loss_fn(params, step):
    total = 0.0
    for w, s in zip(weights, sets):
      n = s["query_ids"].shape[0]
      rows = (step * batch_size + jnp.arange(batch_size)) % n
      take = lambda x: jnp.take(x, rows, axis=0)
      q = apply(graph, params, {"input_ids": take(s["query_ids"]),
                                "attention_mask": take(s["query_mask"])}, normalize=True)
      d = apply(graph, params, {"input_ids": take(s["doc_ids"]),
                                "attention_mask": take(s["doc_mask"])}, normalize=True)
      total = total + w * info_nce(q, d, scale=scale)[0]
    return total

  return loss_fn


def probe_weights(weights: Sequence[float] | None, n: int) -> list[float]:
  """`weights` (one per probe task, default equal) normalised to sum 1; ValueError if there
  are not `n` of them or any is negative or all are zero."""
  if weights is None:
    return [1.0 / n] * n
  weights = [float(w) for w in weights]
  if len(weights) != n:
    raise ValueError(f"{len(weights)} probe weights {weights} for {n} probe tasks; expected "
                     "one per task")
  if min(weights) < 0 or sum(weights) <= 0:
    raise ValueError(f"probe weights {weights}; expected non-negative weights, not all zero")
  return [w / sum(weights) for w in weights]


def tokenize_pairs(model, queries: Sequence[str], docs: Sequence[str], max_length: int = 128
                   ) -> dict[str, np.ndarray]:
  """Pads (query, doc) text pairs with `model`'s tokenizer to fixed-length id/mask arrays."""
  from jaxemb.encoding import tokenize
  if len(queries) != len(docs) or not queries:
    raise ValueError(f"expected equal, non-zero numbers of queries and docs, got {len(queries)} "
                     f"and {len(docs)}")
  out = {}
  for side, texts in (("query", queries), ("doc", docs)):
    ids = [x[:max_length] for x in tokenize(model, texts)]
    length = max(len(x) for x in ids)
    arr = np.full((len(ids), length), model.pad_token_id, np.int32)
    mask = np.zeros((len(ids), length), np.int32)
    for i, x in enumerate(ids):
      arr[i, :len(x)] = x
      mask[i, :len(x)] = 1
    out[f"{side}_ids"], out[f"{side}_mask"] = arr, mask
  return out


def merge_models(base, models: Sequence, method: str, *,
                 loss_fn: LossFn | None = None, **options):
  """Merges `EmbeddingModel`s; returns a new `EmbeddingModel` (the base's tokenizer and
  config; for "average" without a base, the first model's).

  `loss_fn(params, step)` (for the learned methods) receives the module's pure parameter
  dict; build it with `probe_loss(jaxemb.functional.split(base.module)[0], ...)`. Other
  options go to `merge_params`.
  """
  from jaxemb.functional import split
  models = list(models)
  if not models:
    raise ValueError("models is empty; expected at least one model to merge")
  if method in _NEEDS_BASE:
    _need_base(method, base)
  template = base if base is not None else models[0]
  graph, template_params = split(template.module)
  params = [split(m.module)[1] for m in models]
  names = [getattr(m, "name", "") or f"models[{i}]" for i, m in enumerate(models)]
  check_compatible(template_params, params, names)
  for m, name in zip(models, names):
    if m.module.pooler.kind != template.module.pooler.kind:
      raise ValueError(f"{name} pools with {m.module.pooler.kind!r}, the base with "
                       f"{template.module.pooler.kind!r}; expected one architecture")
  base_params = template_params if base is not None else None
  merged = merge_params(base_params, params, method, loss_fn=loss_fn, **options)
  return dataclasses.replace(template, module=graph.merge(merged),
                             name=f"merge:{method}({', '.join(names)})")


# ---------------------------------------------------------------------------------------------
# Command line: `jaxemb merge`.


def add_merge_parser(subparsers) -> argparse.ArgumentParser:
  """Adds `jaxemb merge` to the CLI's subparsers."""
  p = subparsers.add_parser("merge", help="merge fine-tuned models of one architecture; writes "
                                           "a sentence-transformers directory")
  p.add_argument("--base", default=None, help="pre-trained model (name or directory)")
  p.add_argument("--models", nargs="+", required=True, help="fine-tuned model directories")
  p.add_argument("--method", choices=METHODS, required=True)
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--lam", type=float, nargs="+", default=[1.0],
                 help="task_arithmetic: one scale or one per model; ties, tsv: the scale")
  p.add_argument("--density", type=float, default=0.2, help="ties: fraction kept")
  p.add_argument("--scope", choices=("global", "tensor"), default="global", help="ties trim")
  p.add_argument("--probe-task", action="append", default=[],
                 help="TASK:SPLIT of (query, doc) pairs for self_positioning/atlas; repeat "
                      "once per task (each gives the same number of pairs: balanced)")
  p.add_argument("--probe-weight", type=float, action="append", default=None,
                 help="weight of each --probe-task in the probe loss, in the same order "
                      "(default equal: balanced)")
  p.add_argument("--probe-size", type=int, default=256, help="pairs per probe task")
  p.add_argument("--steps", type=int, default=None, help="coefficient optimisation steps")
  p.add_argument("--lr", type=float, default=None, help="coefficient learning rate")
  p.add_argument("--batch-size", type=int, default=32, help="probe pairs per task per step")
  p.add_argument("--seed", type=int, default=0, help="which probe pairs are drawn")
  p.set_defaults(func=merge_main)
  return p


def _probe_pairs(spec: str, size: int, seed: int) -> tuple[list[str], list[str]]:
  from jaxemb import tasks
  from jaxemb.evaluate.registry import require_fields
  task, split = tasks.parse(spec, default_split="validation")
  queries, corpus, relevant = require_fields("merge probe", task.load(split, None),
                                             ("queries", "corpus", "relevant"))
  rows = np.random.default_rng(seed).permutation(len(queries))[:size]
  pairs = [(queries[i], corpus[min(relevant[i])]) for i in rows if len(relevant[i])]
  return [q for q, _ in pairs], [d for _, d in pairs]


def merge_main(args: argparse.Namespace) -> None:
  """`jaxemb merge`: load, merge, save; prints a JSON summary last."""
  import jaxemb
  from jaxemb.functional import split
  learned = args.method in ("self_positioning", "atlas")
  if args.method in _NEEDS_BASE and args.base is None:
    raise ValueError(f"--method {args.method} needs --base (task vectors are fine-tuned minus "
                     "base)")
  if not learned and (args.probe_task or args.probe_weight):
    raise ValueError(f"--method {args.method} uses no probe; --probe-task/--probe-weight are "
                     "for self_positioning and atlas")
  if learned and not args.probe_task:
    raise ValueError(f"--method {args.method} learns coefficients on a probe sample: give "
                     "--probe-task TASK:SPLIT (once per task)")
  if learned:
    probe_weights(args.probe_weight, len(args.probe_task))  # before any model is loaded
  base = jaxemb.load_pretrained(args.base) if args.base is not None else None
  models = [jaxemb.load_pretrained(m) for m in args.models]
  options: dict[str, Any] = {"lam": args.lam if len(args.lam) > 1 else args.lam[0],
                             "density": args.density, "scope": args.scope}
  loss_fn = None
  if learned:
    sets = [tokenize_pairs(base, *_probe_pairs(spec, args.probe_size, args.seed))
            for spec in args.probe_task]
    loss_fn = probe_loss(split(base.module)[0], sets, batch_size=args.batch_size,
                         weights=args.probe_weight)
    if args.steps is not None:
      options["steps"] = args.steps
    if args.lr is not None:
      options["tx"] = (optax.adam(args.lr) if args.method == "self_positioning"
                       else optax.adamw(args.lr, weight_decay=0.1))
  info: dict[str, Any] = {}
  merged = merge_models(base, models, args.method, loss_fn=loss_fn, info=info, **options)
  out = jaxemb.save_pretrained(merged, args.out)
  summary = {"out": str(out), "method": args.method, "base": args.base,
             "models": list(args.models)}
  if "losses" in info:
    losses = info["losses"]
    summary["probe_loss"] = [float(losses[0]), float(losses[-1])] if len(losses) else []
    coeffs = np.stack([np.asarray(c) for c in jax.tree.leaves(info["coefficients"])]) \
        if args.method == "atlas" else np.asarray(info["coefficients"])[None]
    # Per model: its coefficient (self_positioning) or the mean over tensors (atlas).
    summary["coefficients"] = [round(float(c), 4) for c in coeffs.mean(axis=0)]
  print(json.dumps(summary))
