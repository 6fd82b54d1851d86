"""Is model B really better than model A on this test split? Paired tests over per-query scores.

Both models answer the same queries, so the question is about the per-query differences
d_i = b_i - a_i (e.g. reciprocal ranks from `retrieval.per_query_metrics`):

- `bootstrap_ci`: the percentile bootstrap interval of mean(d) (queries resampled with
  replacement; Efron & Tibshirani 1993, as Sakai 2006 uses it for IR).
- `randomization_test`: the two-sided p-value of Fisher's paired randomization test (under the
  null hypothesis each d_i is as likely to have the other sign), which Smucker, Allan & Carterette
  (CIKM 2007) recommend for IR metrics over the t-test and the sign test.

`compare` returns both for one metric; `jaxemb compare --models A B --task T:SPLIT` prints them
for every retrieval metric of a task.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Resamples drawn at a time: bounds memory at CHUNK x queries indices.
CHUNK = 1024


def _paired(a, b) -> np.ndarray:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 1 or a.shape != b.shape or a.size == 0:
    raise ValueError(f"expected two 1-D arrays of per-query scores of one non-zero length, got "
                     f"shapes {a.shape} and {b.shape}")
  if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
    raise ValueError("per-query scores contain NaN or inf")
  return b - a


def _check_resamples(resamples: int) -> None:
  if not isinstance(resamples, (int, np.integer)) or isinstance(resamples, bool) or resamples < 1:
    raise ValueError(f"resamples={resamples!r}; expected a positive int")


def _chunks(resamples: int) -> Iterator[int]:
  for start in range(0, resamples, CHUNK):
    yield min(CHUNK, resamples - start)


def bootstrap_ci(a, b, *, confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
  """The percentile bootstrap interval of mean(b - a) at `confidence` (paired: one resample
  of the queries serves both models)."""
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence={confidence!r}; expected a number in (0, 1)")
  _check_resamples(resamples)
  diff = _paired(a, b)
  rng = np.random.default_rng(seed)
  means = np.concatenate([diff[rng.integers(0, diff.size, (n, diff.size))].mean(axis=1)
                          for n in _chunks(resamples)])
  tail = (1.0 - confidence) / 2.0
  low, high = np.quantile(means, [tail, 1.0 - tail])
  return float(low), float(high)


def randomization_test(a, b, *, resamples: int = 10_000, seed: int = 0) -> float:
  """Two-sided p-value of the paired randomization (sign-flip) test of mean(b - a) = 0.

  Monte Carlo over `resamples` random sign vectors, counted as (1 + hits) / (1 + resamples) so
  that the estimate is never 0 (Phipson & Smyth 2010). A tie (|flipped mean| equal to the
  observed one up to rounding) counts as a hit."""
  _check_resamples(resamples)
  diff = _paired(a, b)
  observed = abs(diff.mean())
  # Sums of the same numbers in another order differ by rounding: compare with a tolerance.
  tolerance = 1e-12 * max(1.0, float(np.abs(diff).max()))
  rng = np.random.default_rng(seed)
  hits = 0
  for n in _chunks(resamples):
    signs = rng.integers(0, 2, (n, diff.size)) * 2 - 1
    hits += int(np.sum(np.abs((signs * diff).mean(axis=1)) >= observed - tolerance))
  return (1 + hits) / (1 + resamples)


def compare(a, b, *, confidence: float = 0.95, resamples: int = 10_000,
            seed: int = 0) -> dict[str, float]:
  """Means of a and b, their difference b - a, its bootstrap interval (`ci_low`, `ci_high`)
  and the randomization test's `p_value`, for per-query scores `a` and `b` of two models."""
  diff = _paired(a, b)
  low, high = bootstrap_ci(a, b, confidence=confidence, resamples=resamples, seed=seed)
  return {"mean_a": float(np.mean(a)), "mean_b": float(np.mean(b)), "diff": float(diff.mean()),
          "ci_low": low, "ci_high": high,
          "p_value": randomization_test(a, b, resamples=resamples, seed=seed),
          "queries": int(diff.size)}
