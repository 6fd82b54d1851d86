"""Pair classification (MTEB-style best-threshold metrics) and linear-probe classification.

`pair_classification_metrics` scores each pair by a similarity function and reports, as MTEB's
`AbsTaskPairClassification` does, the accuracy and F1 at their best thresholds (thresholds only
between distinct scores, so the order of tied rows cannot leak into the metric) and the average
precision of the scores (sklearn's `average_precision_score`, step-wise, ties grouped).

`linear_probe` trains an L2-regularised multinomial logistic regression in JAX by full-batch
L-BFGS (the objective of sklearn's `LogisticRegression(C=C)`: 0.5 |W|^2 + C * sum of cross
entropies, intercept not penalised) on train embeddings and reports test accuracy and F1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxemb.evaluate import registry

PAIR_SCORES = ("cosine", "dot", "euclidean", "manhattan")


def _check_pairs(emb_a, emb_b, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  a, b = np.asarray(emb_a, np.float64), np.asarray(emb_b, np.float64)
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(f"emb_a and emb_b must be 2-D of one shape [N, D], got {a.shape}, {b.shape}")
  labels = np.asarray(labels)
  if labels.shape != (a.shape[0],):
    raise ValueError(f"labels has shape {labels.shape}; expected [{a.shape[0]}], one per pair")
  bad = set(np.unique(labels).tolist()) - {0, 1}
  if bad:
    raise ValueError(f"labels must be 0 or 1, got values {sorted(bad)[:5]}")
  if labels.sum() == 0 or labels.sum() == len(labels):
    raise ValueError("labels need both classes (some 0 and some 1)")
  if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
    raise ValueError("embeddings contain NaN or inf values")
  return a, b, labels.astype(np.int64)


def pair_scores(a: np.ndarray, b: np.ndarray, fn: str) -> np.ndarray:
  """Row-wise scores, larger = more similar: cosine, dot, minus euclidean / manhattan distance."""
  if fn == "cosine":
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("nd,nd->n", a, b)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
  if fn == "dot":
    return np.einsum("nd,nd->n", a, b)
  if fn == "euclidean":
    return -np.linalg.norm(a - b, axis=1)
  if fn == "manhattan":
    return -np.sum(np.abs(a - b), axis=1)
  raise ValueError(f"unknown pair score {fn!r}; expected one of {list(PAIR_SCORES)}")


def best_threshold_metrics(scores, labels) -> dict[str, float]:
  """Best-threshold accuracy and F1 (predict 1 for score > threshold) and average precision.

  Thresholds are midpoints between consecutive distinct sorted scores; the first best one (from
  the top) is kept, as MTEB does.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels, np.int64)
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], labels[order]
  n, total_pos = len(s), int(y.sum())
  pos = np.cumsum(y)[:-1]  # positives among the top i+1 rows, for splits after row i
  neg_above = np.arange(1, n) - pos
  split = s[:-1] != s[1:]  # a threshold cannot split tied scores
  mids = (s[:-1] + s[1:]) / 2
  out = {}
  acc = np.where(split, (pos + (n - total_pos - neg_above)) / n, -1.0)
  i = int(np.argmax(acc))
  out["accuracy"], out["accuracy_threshold"] = (float(acc[i]), float(mids[i])) if acc[i] >= 0 \
      else (0.0, -1.0)
  precision = pos / np.arange(1, n)
  recall = pos / total_pos
  with np.errstate(invalid="ignore", divide="ignore"):
    f1 = np.where(split & (pos > 0), 2 * precision * recall / (precision + recall), -1.0)
  i = int(np.argmax(f1))
  if f1[i] > 0:
    out.update(f1=float(f1[i]), precision=float(precision[i]), recall=float(recall[i]),
               f1_threshold=float(mids[i]))
  else:
    out.update(f1=0.0, precision=0.0, recall=0.0, f1_threshold=0.0)
  out["ap"] = average_precision(scores, labels)
  return out


def average_precision(scores, labels) -> float:
  """Average precision: sum over distinct score thresholds of (R_k - R_{k-1}) P_k."""
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels, np.int64)
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], labels[order]
  # Tied scores form one threshold: evaluate precision/recall only at the last row of a run.
  last = np.r_[s[1:] != s[:-1], True]
  tp = np.cumsum(y)[last]
  seen = (np.arange(1, len(s) + 1))[last]
  precision, recall = tp / seen, tp / y.sum()
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pair_classification_metrics(emb_a, emb_b, labels,
                                score_fns=PAIR_SCORES) -> dict[str, float]:
  """MTEB pair-classification metrics of the pairs (emb_a[i], emb_b[i]) with 0/1 labels.

  Returns `{f"{fn}_{metric}"}` for each score function and metric of
  `best_threshold_metrics`, plus `max_accuracy`, `max_f1` and `max_ap` over score functions
  (MTEB's main score is `max_ap`).
  """
  a, b, labels = _check_pairs(emb_a, emb_b, labels)
  out = {}
  for fn in score_fns:
    for name, value in best_threshold_metrics(pair_scores(a, b, fn), labels).items():
      out[f"{fn}_{name}"] = value
  for metric in ("accuracy", "f1", "ap"):
    out[f"max_{metric}"] = max(out[f"{fn}_{metric}"] for fn in score_fns)
  return out


# --------------------------------------------------------------------------------------------
# Linear probe.
# --------------------------------------------------------------------------------------------


def _objective(params, x, y_onehot, c, mask):
  w, b = params
  # mask zeroes class 0 for two classes: one weight vector as sklearn's binary model, whose
  # penalty 0.5 |w|^2 differs from the symmetric two-class softmax's.
  w, b = w * mask, b * mask
  logits = x @ w + b
  ce = -jnp.sum(y_onehot * jax.nn.log_softmax(logits))
  return 0.5 * jnp.sum(w * w) + c * ce


def fit_logistic_regression(x, y, *, num_classes: int | None = None, c: float = 1.0,
                            max_iter: int = 500, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
  """Multinomial logistic regression with L2 penalty, trained with L-BFGS in JAX.

  Minimises 0.5 |W|^2 + c * sum_i CE(x_i W + b, y_i) (sklearn's `LogisticRegression(C=c)`
  objective with the multinomial loss; the intercept is not penalised).

  Args:
    x: [N, D] features; y: [N] int labels in [0, num_classes).
    num_classes: default max(y) + 1.
    c: inverse regularisation strength (> 0).
    max_iter: L-BFGS iterations at most; tol: stop when the gradient norm is below
      tol * (1 + |objective|).

  Returns:
    (W [D, K], b [K]) float32; for two classes column 0 is zero and column 1 is sklearn's
    binary `coef_` / `intercept_`.
  """
  x = np.asarray(x, np.float32)
  y = np.asarray(y)
  if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
    raise ValueError(f"x must be [N, D] and y [N] with N > 0, got {x.shape} and {y.shape}")
  if y.dtype.kind not in "iu" or y.min() < 0:
    raise ValueError(f"y must hold non-negative int class ids, got dtype {y.dtype}, min {y.min()}")
  k = int(num_classes or y.max() + 1)
  if y.max() >= k:
    raise ValueError(f"y has class {int(y.max())} >= num_classes={k}")
  if not c > 0:
    raise ValueError(f"c={c!r}; expected > 0")
  params = (jnp.zeros((x.shape[1], k), jnp.float32), jnp.zeros((k,), jnp.float32))
  mask = jnp.ones((k,), jnp.float32).at[0].set(0.0 if k == 2 else 1.0)
  # Rows padded to a power of two (all-zero one-hot rows add nothing to the loss), so probes of
  # similar sizes share one compiled solver.
  rows = max(64, 1 << (x.shape[0] - 1).bit_length())
  onehot = np.zeros((rows, k), np.float32)
  onehot[np.arange(len(y)), y] = 1.0
  x = np.pad(x, ((0, rows - x.shape[0]), (0, 0)))
  w, b = _lbfgs_jit(params, jnp.asarray(x), jnp.asarray(onehot), jnp.float32(c),
                    mask, int(max_iter), jnp.float32(tol))
  return np.asarray(w * mask), np.asarray(b * mask)


@jax.jit
def _lbfgs_jit(params, x, y_onehot, c, mask, max_iter, tol):
  fn = lambda p: _objective(p, x, y_onehot, c, mask)
  # Backtracking (Armijo) line search: compiles several times faster than the default zoom.
  opt = optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(
      max_backtracking_steps=30, store_grad=True))
  value_and_grad = optax.value_and_grad_from_state(fn)

  def step(carry):
    params, state, _, i = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fn)
    gnorm = optax.tree.norm(grad)
    return optax.apply_updates(params, updates), state, gnorm / (1 + jnp.abs(value)), i + 1

  def cont(carry):
    return (carry[2] > tol) & (carry[3] < max_iter)

  init = (params, opt.init(params), jnp.inf, 0)
  params, *_ = jax.lax.while_loop(cont, step, init)
  return params


def macro_f1(y_true, y_pred, num_classes: int) -> float:
  """Unweighted mean over classes of F1 (a class never true nor predicted counts F1 = 0, as
  sklearn's default zero_division)."""
  f1s = []
  for k in range(num_classes):
    tp = np.sum((y_pred == k) & (y_true == k))
    denom = np.sum(y_pred == k) + np.sum(y_true == k)
    f1s.append(2 * tp / denom if denom else 0.0)
  return float(np.mean(f1s))


def linear_probe(train_x, train_y, test_x, test_y, *, c: float = 1.0,
                 max_iter: int = 500) -> dict[str, float]:
  """Train a logistic-regression probe on (train_x, train_y); accuracy and macro F1 on test."""
  train_y, test_y = np.asarray(train_y), np.asarray(test_y)
  k = int(max(train_y.max(), test_y.max()) + 1)
  w, b = fit_logistic_regression(train_x, train_y, num_classes=k, c=c, max_iter=max_iter)
  test_x = np.asarray(test_x, np.float32)
  if test_x.ndim != 2 or test_x.shape[1] != w.shape[0] or len(test_x) != len(test_y):
    raise ValueError(f"test_x has shape {test_x.shape}, expected [{len(test_y)}, {w.shape[0]}]")
  pred = np.argmax(test_x @ w + b, axis=1)
  return {"accuracy": float(np.mean(pred == test_y)), "f1": macro_f1(test_y, pred, k)}


def pair_classification_evaluator(embed_fn: Callable[[list[str]], np.ndarray],
                                  data: Mapping) -> Iterator[tuple[str, float]]:
  """Evaluator over `data = {"texts_a", "texts_b", "labels"}`: MTEB pair-classification
  metrics (`cosine_ap`, `max_ap`, ...)."""
  a, b, labels = registry.require_fields("pair_classification", data,
                                         ("texts_a", "texts_b", "labels"))
  yield from pair_classification_metrics(embed_fn(list(a)), embed_fn(list(b)), labels).items()


def classification_evaluator(embed_fn: Callable[[list[str]], np.ndarray],
                             data: Mapping) -> Iterator[tuple[str, float]]:
  """Evaluator over `data = {"train_texts", "train_labels", "test_texts", "test_labels"}`
  (int labels): linear-probe `accuracy` and `f1`."""
  tr, try_, te, tey = registry.require_fields(
      "classification", data, ("train_texts", "train_labels", "test_texts", "test_labels"))
  yield from linear_probe(embed_fn(list(tr)), try_, embed_fn(list(te)), tey,
                          c=data.get("c", 1.0)).items()
