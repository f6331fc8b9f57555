"""Aggregate statistics for comparing arms of a sweep: IQM, bootstrap CIs, probability of improvement.

Follows Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (NeurIPS), with
``scipy.stats`` instead of rliable (heavy, breaks with pandas 3, ignores its ``random_state``):

* IQM: the mean of the middle 50% of the scores, ``trim_mean(x, 0.25)``. Fewer than 4 scores
  trim nothing (``int(0.25 * n) == 0``), so the IQM is then the plain mean.
* Confidence intervals: percentile bootstrap (Efron & Tibshirani 1993, §13.3). Not BCa: its
  acceleration is 0/0 when every score is equal (e.g. every CartPole seed at 500) and the interval
  becomes NaN; the percentile interval of identical scores is ``[v, v]``, returned explicitly here.
* Probability of improvement: ``P(X > Y) + ½ P(X = Y)`` = Mann-Whitney ``U / (n·m)``, with its CI
  from resampling both samples independently (``paired=False``).

Every function is deterministic: the same ``seed`` gives bit-identical numbers.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

import numpy as np
import scipy.stats

CONFIDENCE = 0.95
"""Default two-sided confidence level of every interval."""

IQM_TRIM = 0.25
"""Fraction cut from each end for the interquartile mean (Agarwal et al. 2021)."""

BOOTSTRAP_METHOD = "percentile"
"""The scipy bootstrap interval method (recorded in report.json)."""

_BATCH_ELEMENTS = 4_000_000
"""Upper bound on resampled elements held in memory at once (sets scipy's ``batch``)."""

# scipy >= 1.15 names the generator ``rng``; older releases only know ``random_state``.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"

Statistic = Callable[..., Any]
"""A vectorised statistic ``f(*samples, axis=-1)`` reducing the given axis."""


def _as_sample(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def iqm_along(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean along ``axis`` (vectorised form of :func:`iqm`)."""
    return scipy.stats.trim_mean(x, IQM_TRIM, axis=axis)


def iqm(x: Any) -> float:
    """Interquartile mean ``trim_mean(x, 0.25)``; the plain mean when ``len(x) < 4``; NaN when empty."""
    sample = _as_sample(x).ravel()
    if sample.size == 0:
        return float("nan")
    return float(iqm_along(sample))


def poi_along(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """``P(X > Y) + ½ P(X = Y)`` over all pairs, along ``axis`` of ``x`` and ``y`` (vectorised).

    Equals the Mann-Whitney ``U`` of ``x`` divided by ``n·m``.
    """
    x = np.moveaxis(x, axis, -1)[..., :, None]
    y = np.moveaxis(y, axis, -1)[..., None, :]
    wins = (x > y).mean(axis=(-2, -1))
    ties = (x == y).mean(axis=(-2, -1))
    return wins + 0.5 * ties


def probability_of_improvement(x: Any, y: Any) -> float:
    """``P(X > Y) + ½ P(X = Y)`` = Mann-Whitney ``U / (n·m)`` for scores ``x`` (arm) vs ``y`` (baseline).

    1 when every x beats every y, 0 when none does, 0.5 for identical samples; NaN if either is empty.
    """
    xs, ys = _as_sample(x).ravel(), _as_sample(y).ravel()
    if xs.size == 0 or ys.size == 0:
        return float("nan")
    u = scipy.stats.mannwhitneyu(xs, ys, alternative="two-sided", method="asymptotic").statistic
    return float(u / (xs.size * ys.size))


def _batch(resample_elements: int) -> int:
    return max(1, _BATCH_ELEMENTS // max(1, resample_elements))


def _bootstrap(samples: tuple[np.ndarray, ...], statistic: Statistic, reps: int, seed: int, confidence: float,
               batch: int) -> tuple[np.ndarray, np.ndarray]:
    """scipy's percentile bootstrap along the last axis; returns (low, high) arrays."""
    with warnings.catch_warnings():
        # scipy warns about a degenerate bootstrap distribution (all resamples equal); the
        # percentile interval is then [v, v], which is the right answer, not a problem.
        warnings.simplefilter("ignore", category=getattr(scipy.stats, "DegenerateDataWarning", RuntimeWarning))
        result = scipy.stats.bootstrap(
            samples, statistic, n_resamples=reps, batch=batch, vectorized=True, paired=False, axis=-1,
            confidence_level=confidence, method=BOOTSTRAP_METHOD, **{_RNG_KEYWORD: np.random.default_rng(seed)},
        )
    interval = result.confidence_interval
    return np.asarray(interval.low, dtype=np.float64), np.asarray(interval.high, dtype=np.float64)


def _check_reps(reps: int) -> None:
    if int(reps) < 1:
        raise ValueError(f"bootstrap reps must be >= 1, got {reps}")


def bootstrap_ci(
    x: Any, statistic: Statistic = iqm_along, reps: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile-bootstrap ``confidence`` interval of ``statistic`` over the scores ``x``.

    ``statistic(sample, axis=-1)`` must be vectorised. Identical scores (including a single score)
    give ``(v, v)`` with ``v = statistic(x)``; an empty sample gives ``(nan, nan)``.
    """
    _check_reps(reps)
    sample = _as_sample(x).ravel()
    if sample.size == 0:
        return float("nan"), float("nan")
    if np.all(sample == sample[0]):
        value = float(statistic(sample, axis=-1))
        return value, value
    low, high = _bootstrap((sample,), statistic, reps, seed, confidence, _batch(sample.size))
    return float(low), float(high)


def bootstrap_ci_columns(
    values: np.ndarray, statistic: Statistic = iqm_along, reps: int = 2000, seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap CIs of ``statistic`` for every column of ``values`` (runs × points), resampling runs.

    The same resampled set of runs is used for every column (a run's curve stays whole), so a
    learning-curve band is one bootstrap over runs. Columns whose values are all equal get
    ``[v, v]``. Returns ``(low, high)``, each of shape ``(points,)``.
    """
    _check_reps(reps)
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"values must be 2-D (runs x points), got shape {matrix.shape}")
    runs, points = matrix.shape
    if runs == 0 or points == 0:
        nan = np.full(points, np.nan)
        return nan, nan.copy()
    center = statistic(matrix.T, axis=-1)
    constant = np.all(matrix == matrix[:1], axis=0)
    if runs == 1 or np.all(constant):
        return center.copy(), center.copy()
    low, high = _bootstrap((matrix.T,), statistic, reps, seed, confidence, _batch(runs * points))
    low, high = np.where(constant, center, low), np.where(constant, center, high)
    return low, high


def poi_ci(
    x: Any, y: Any, reps: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile-bootstrap CI of :func:`probability_of_improvement`, resampling ``x`` and ``y`` independently.

    When every pair compares the same way (all wins, all losses or all ties) every resample does
    too, and the interval is the point estimate ``(p, p)``. Empty input gives ``(nan, nan)``.
    """
    _check_reps(reps)
    xs, ys = _as_sample(x).ravel(), _as_sample(y).ravel()
    if xs.size == 0 or ys.size == 0:
        return float("nan"), float("nan")
    point = probability_of_improvement(xs, ys)
    if xs.max() < ys.min() or xs.min() > ys.max() or (np.all(xs == xs[0]) and np.all(ys == xs[0])):
        return point, point
    # scipy needs >= 2 observations per sample; a single score resampled is always itself, and
    # [v, v] gives the same U / (n·m) as [v], so doubling it changes nothing.
    xs, ys = (np.repeat(xs, 2) if xs.size == 1 else xs), (np.repeat(ys, 2) if ys.size == 1 else ys)
    low, high = _bootstrap((xs, ys), poi_along, reps, seed, confidence, _batch(xs.size * ys.size))
    return float(low), float(high)
