"""Tests and intervals the report adds to :mod:`rlopt.stats`: Mann-Whitney p-values with the
Holm-Bonferroni correction, paired comparisons by seed, Wilson intervals of a success rate, and the
sample efficiency of one learning curve (steps to a threshold, normalised area under the curve).

Pure functions of numbers (no files), each tested against hand values or a brute-force count.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import scipy.stats

from rlopt.stats import CONFIDENCE, bootstrap_ci

EXACT_WILCOXON_MAX = 50
"""Largest number of pairs whose Wilcoxon p-value uses the exact null distribution (scipy's own bound)."""

SMOOTH_WINDOW = 5
"""Points of the trailing moving average applied before looking for the first step at a threshold."""


def mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Two-sided Mann-Whitney U test p-value of ``x`` vs ``y`` (scipy's ``method="auto"``: exact for
    small samples without ties); None when either sample is empty or every score is identical."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size == 0 or ys.size == 0:
        return None
    both = np.concatenate([xs, ys])
    if np.all(both == both[0]):
        return 1.0  # no evidence of a difference at all (scipy returns NaN here)
    return float(scipy.stats.mannwhitneyu(xs, ys, alternative="two-sided").pvalue)


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-Bonferroni adjusted p-values (Holm 1979) over the non-None entries.

    Sorted ascending, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``, m = number of
    tests; rejecting ``adjusted < alpha`` controls the family-wise error rate at alpha. Ties keep
    the input order.
    """
    tested = [(p, i, name) for i, (name, p) in enumerate(pvalues.items()) if p is not None]
    tested.sort()
    m, running = len(tested), 0.0
    adjusted: dict[str, float | None] = {name: None for name in pvalues}
    for rank, (p, _, name) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return adjusted


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion k/n (Wilson 1927; Brown, Cai & DasGupta 2001);
    None for n = 0."""
    if n <= 0:
        return None
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def _mean_along(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def paired_comparison(
    arm: dict[int, float], base: dict[int, float], reps: int, seed: int
) -> dict[str, Any] | None:
    """Arm vs baseline on their common seeds: ``{n_pairs, wilcoxon_p, mean_diff, mean_diff_ci}`` with
    ``diff = arm - baseline``, a Wilcoxon signed-rank p (None when < 2 pairs or every difference is 0)
    and a bootstrap CI of the mean difference that resamples pairs (None below 2 pairs); None when
    no seed is shared."""
    common = sorted(set(arm) & set(base))
    if not common:
        return None
    diff = np.asarray([arm[s] - base[s] for s in common], dtype=np.float64)
    p: float | None = None
    if diff.size >= 2 and np.any(diff != 0):
        # Exact null distribution without zeros or tied |differences| (n <= 50), else the normal
        # approximation; scipy's "auto" would run a slow permutation test for small samples with ties.
        magnitudes = np.abs(diff)
        exact = diff.size <= EXACT_WILCOXON_MAX and np.all(diff != 0) and np.unique(magnitudes).size == diff.size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # scipy: "sample size too small for normal"
            p = float(scipy.stats.wilcoxon(diff, alternative="two-sided", method="exact" if exact else "approx").pvalue)
    ci = bootstrap_ci(diff, _mean_along, reps=reps, seed=seed) if diff.size >= 2 else None
    return {
        "n_pairs": int(diff.size),
        "wilcoxon_p": p,
        "mean_diff": float(diff.mean()),
        "mean_diff_ci": None if ci is None else [float(ci[0]), float(ci[1])],
    }


def smooth(values: np.ndarray, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """Trailing moving average over ``window`` points (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or window <= 1:
        return values.copy()
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, values.size + 1)
    start = np.maximum(0, index - window)
    return (cumulative[index] - cumulative[start]) / (index - start)


def steps_to_threshold(
    steps: np.ndarray, values: np.ndarray, threshold: float, mode: str = "max", window: int = SMOOTH_WINDOW
) -> float | None:
    """The first step at which the smoothed curve reaches ``threshold`` (>= for mode max, <= for min);
    None if it never does."""
    smoothed = smooth(values, window)
    reached = smoothed >= threshold if mode == "max" else smoothed <= threshold
    hits = np.flatnonzero(reached)
    return None if hits.size == 0 else float(np.asarray(steps)[hits[0]])


def normalized_auc(steps: np.ndarray, values: np.ndarray) -> float | None:
    """Area under the curve (trapezoids) divided by its step span: the curve's mean value over its
    steps, comparable across runs of different lengths. None for fewer than 2 points."""
    x, y = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.size < 2 or x[-1] <= x[0]:
        return None
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))
