"""Label-free representation-quality metrics, cheap enough to log during training.

- `alpha_req`: α-ReQ (Agrawal et al., 2022), the power-law exponent α of the covariance
  eigenspectrum, λ_i ∝ i^-α, fitted by least squares in log-log space.
- `tte_depth`: TTE statistical depth (Seegmiller & Preum, 2023) of texts with respect to a corpus,
  D(x, F) = 2 - mean_{y in F} (1 - cos(x, y)); `depth_rank_sum` compares two corpora by the
  Wilcoxon rank-sum test of their depths with respect to the first (as scipy.stats.ranksums:
  normal approximation, no tie correction).
- `isoscore`: IsoScore (Rudman et al., 2022), 0 when the embeddings use one direction, 1 when
  they use every direction equally; `partition_isotropy`: min_c Z(c) / max_c Z(c) over the
  principal directions ±c, Z(c) = sum_i exp(c . x_i) (Mu & Viswanath, 2018).
- `alignment` / `uniformity` (Wang & Isola, 2020) of L2-normalised embeddings.
- `relative_representation`: cosine to anchor embeddings (Moschella et al., 2023), invariant to
  rotations and rescaling of the space; `stitching_check` measures how well the relative
  representations of the same items in two spaces agree.
- `quality_metrics`: the ones that need only an [N, D] matrix (plus optional positive pairs), in
  one dict with RankMe, for logging as `<split>/<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
import math

import numpy as np

from jaxemb.evaluate import registry
from jaxemb.evaluate.rank import mean_cosine_similarity, rankme
from jaxemb.evaluate.sts import average_ranks


def _check_matrix(name: str, emb, min_rows: int = 1) -> np.ndarray:
  emb = np.asarray(emb)
  if emb.ndim != 2 or emb.shape[0] < min_rows or emb.shape[1] == 0:
    raise ValueError(f"{name} must be a 2-D array [N, D] with N >= {min_rows}, got shape "
                     f"{emb.shape}")
  emb = emb.astype(np.float64)
  if not np.all(np.isfinite(emb)):
    raise ValueError(f"{name} contains NaN or inf values")
  return emb


def _unit(x: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def covariance_spectrum(emb) -> np.ndarray:
  """Eigenvalues of the (centred, 1/N) covariance of `emb` [N, D], descending."""
  x = _check_matrix("emb", emb, 2)
  x = x - x.mean(0)
  s = np.linalg.svd(x, compute_uv=False)
  return s ** 2 / x.shape[0]


def alpha_req(emb, *, max_rank: int | None = None, rtol: float = 1e-10) -> float:
  """α-ReQ: slope α of the least-squares fit log λ_i = c - α log i.

  Args:
    emb: [N, D] embeddings (N >= 3).
    max_rank: fit only the first `max_rank` eigenvalues (default: all above rtol * λ_1).
    rtol: eigenvalues below rtol * λ_1 are numerically zero and left out of the fit.

  Returns:
    α (larger: faster-decaying spectrum, fewer effective dimensions).
  """
  lam = covariance_spectrum(emb)
  if lam[0] <= 0:
    raise ValueError("emb has zero variance; alpha_req needs a non-constant matrix")
  lam = lam[lam > rtol * lam[0]][:max_rank]
  if lam.size < 2:
    raise ValueError(f"alpha_req needs at least 2 non-zero eigenvalues, got {lam.size}")
  log_i = np.log(np.arange(1, lam.size + 1))
  slope = np.polyfit(log_i, np.log(lam), 1)[0]
  return float(-slope)


def tte_depth(emb, corpus=None) -> np.ndarray:
  """TTE depth of each row of `emb` with respect to `corpus` (default: `emb` itself, leaving
  each row out of its own reference set): 2 - mean cosine distance, in [0, 2]."""
  x = _unit(_check_matrix("emb", emb))
  if corpus is None:
    n = x.shape[0]
    if n < 2:
      raise ValueError(f"depth of a corpus w.r.t. itself needs >= 2 rows, got {n}")
    total = x.sum(0)
    # sum_{j != i} cos(x_i, x_j) = x_i . (sum_j x_j) - |x_i|^2: O(N D), not O(N^2 D).
    mean_cos = (x @ total - np.sum(x * x, 1)) / (n - 1)
  else:
    f = _unit(_check_matrix("corpus", corpus))
    if f.shape[1] != x.shape[1]:
      raise ValueError(f"corpus has dimension {f.shape[1]} but emb has {x.shape[1]}")
    mean_cos = x @ f.mean(0)
  return 2.0 - (1.0 - mean_cos)


def rank_sum_test(x, y) -> tuple[float, float]:
  """Wilcoxon rank-sum statistic z and two-sided p-value (scipy.stats.ranksums)."""
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if x.size == 0 or y.size == 0:
    raise ValueError(f"rank-sum test needs two non-empty samples, got {x.size} and {y.size}")
  ranks = average_ranks(np.concatenate([x, y]))
  n1, n2 = x.size, y.size
  s = ranks[:n1].sum()
  z = (s - n1 * (n1 + n2 + 1) / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
  return float(z), float(math.erfc(abs(z) / math.sqrt(2)))


def depth_rank_sum(corpus_f, corpus_g) -> dict[str, float]:
  """Compares corpus G with corpus F: TTE depths of F (leave-one-out) and of G, both w.r.t. F,
  then the rank-sum test. A large positive z: F's own texts are deeper (more central) than G's,
  i.e. G lies away from F's centre."""
  depth_f = tte_depth(corpus_f)
  depth_g = tte_depth(corpus_g, corpus_f)
  z, p = rank_sum_test(depth_f, depth_g)
  return {"z": z, "p_value": p, "mean_depth_f": float(depth_f.mean()),
          "mean_depth_g": float(depth_g.mean())}


def isoscore(emb) -> float:
  """IsoScore of `emb` [N, D] (N >= 2): (D φ - 1) / (D - 1), φ from the normalised variance
  vector of the PCA-reoriented points; k equally used directions give (k - 1) / (D - 1)."""
  lam = covariance_spectrum(emb)  # variances along the principal axes
  d = _check_matrix("emb", emb, 2).shape[1]
  if d < 2:
    raise ValueError(f"isoscore needs D >= 2 dimensions, got {d}")
  var = np.zeros(d)
  var[:lam.size] = lam  # N < D: the remaining principal directions have no variance
  norm = np.linalg.norm(var)
  if norm == 0:
    raise ValueError("emb has zero variance; isoscore is undefined")
  var_hat = math.sqrt(d) * var / norm
  delta2 = np.sum((var_hat - 1) ** 2) / (2 * (d - math.sqrt(d)))
  phi = (d - delta2 * (d - math.sqrt(d))) ** 2 / d ** 2
  return float((d * phi - 1) / (d - 1))


def partition_isotropy(emb) -> float:
  """min / max over principal directions ±c (unit eigenvectors of X^T X, both signs, since an
  eigenvector's sign is arbitrary) of Z(c) = sum_i exp(c . x_i); 1 for perfectly isotropic
  embeddings."""
  x = _check_matrix("emb", emb, 1)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  proj = x @ vt.T
  proj = np.concatenate([proj, -proj], axis=1)  # [N, 2r]
  # log-sum-exp for stability; the ratio is exp(min log Z - max log Z).
  m = proj.max(0)
  log_z = m + np.log(np.sum(np.exp(proj - m), 0))
  return float(np.exp(log_z.min() - log_z.max()))


def alignment(emb_x, emb_y, alpha: float = 2.0) -> float:
  """E ||f(x) - f(y)||^alpha over positive pairs (rows), of L2-normalised embeddings; lower is
  better aligned."""
  x, y = _unit(_check_matrix("emb_x", emb_x)), _unit(_check_matrix("emb_y", emb_y))
  if x.shape != y.shape:
    raise ValueError(f"emb_x has shape {x.shape} but emb_y has {y.shape}; expected pairs")
  return float(np.mean(np.linalg.norm(x - y, axis=1) ** alpha))


def uniformity(emb, t: float = 2.0) -> float:
  """log E_{i<j} exp(-t ||f(x_i) - f(x_j)||^2) of L2-normalised embeddings; lower (more
  negative) is more uniform on the sphere."""
  x = _unit(_check_matrix("emb", emb, 2))
  n = x.shape[0]
  # ||a - b||^2 = 2 - 2 a.b for unit rows (zero rows: |a|^2 + |b|^2 - 2 a.b).
  sq = np.sum(x * x, 1)
  d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0.0)
  iu = np.triu_indices(n, 1)
  v = -t * d2[iu]
  m = v.max()
  return float(m + np.log(np.mean(np.exp(v - m))))


def relative_representation(emb, anchors) -> np.ndarray:
  """[N, A] cosine similarities of each row of `emb` to each anchor embedding."""
  x, a = _unit(_check_matrix("emb", emb)), _unit(_check_matrix("anchors", anchors))
  if x.shape[1] != a.shape[1]:
    raise ValueError(f"anchors have dimension {a.shape[1]} but emb has {x.shape[1]}")
  return x @ a.T


def stitching_check(emb_a, emb_b, anchor_ids) -> dict[str, float]:
  """How well two embedding spaces of the same N items agree through relative representations.

  Each space's rows are expressed by cosine to its own embeddings of the anchor items
  `anchor_ids`; then for each item, `rel_cosine` is the cosine between its two relative
  representations (mean over items) and `rel_top1` the fraction of items whose nearest relative
  representation in space B (by cosine) is the item itself. A rotated and rescaled copy scores
  1 and 1.
  """
  a, b = _check_matrix("emb_a", emb_a, 2), _check_matrix("emb_b", emb_b, 2)
  if a.shape[0] != b.shape[0]:
    raise ValueError(f"emb_a has {a.shape[0]} rows but emb_b has {b.shape[0]}; expected the "
                     "same items in both spaces")
  ids = np.asarray(anchor_ids)
  if ids.ndim != 1 or ids.size == 0 or ids.min() < 0 or ids.max() >= a.shape[0]:
    raise ValueError(f"anchor_ids must be a non-empty 1-D array of row ids in [0, {a.shape[0]})")
  ra = _unit(relative_representation(a, a[ids]))
  rb = _unit(relative_representation(b, b[ids]))
  cos = ra @ rb.T
  top1 = np.argmax(cos, axis=1) == np.arange(a.shape[0])
  return {"rel_cosine": float(np.mean(np.diag(cos))), "rel_top1": float(np.mean(top1))}


def quality_metrics(emb, *, positives: tuple | None = None,
                    max_pairs_rows: int = 4096) -> dict[str, float]:
  """Label-free quality of `emb` [N, D]: rankme, alpha_req, isoscore, uniformity (on at most
  `max_pairs_rows` rows, since it is quadratic), mean_cosine, tte_depth (mean leave-one-out
  depth), and alignment when `positives=(emb_x, emb_y)` is given."""
  x = _check_matrix("emb", emb, 3)
  out = {"rankme": rankme(x), "alpha_req": alpha_req(x), "isoscore": isoscore(x),
         "uniformity": uniformity(x[:max_pairs_rows]), "mean_cosine": mean_cosine_similarity(x),
         "tte_depth": float(tte_depth(x).mean())}
  if positives is not None:
    out["alignment"] = alignment(*positives)
  return out


def quality_evaluator(embed_fn: Callable[[list[str]], np.ndarray],
                      data: Mapping) -> Iterator[tuple[str, float]]:
  """Evaluator over `data = {"texts"}` (and optional paired `"texts_a"`, `"texts_b"` for
  alignment): yields `quality_metrics` (`rankme`, `alpha_req`, `uniformity`, ...)."""
  (texts,) = registry.require_fields("quality", data, ("texts",))
  positives = None
  if "texts_a" in data and "texts_b" in data:
    positives = (embed_fn(list(data["texts_a"])), embed_fn(list(data["texts_b"])))
  yield from quality_metrics(np.asarray(embed_fn(list(texts))), positives=positives).items()
