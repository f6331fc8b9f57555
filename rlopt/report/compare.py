"""Per-arm comparisons with the baseline and per-arm rates, filled into the report's arm entries:
probability of improvement with its CI, Mann-Whitney p with the Holm-Bonferroni correction over the
arms compared with the baseline, the paired comparison on shared seeds, the success rate at the
sweep's threshold with a Wilson interval, and the sample efficiency of the arm's runs.

``mode`` ``"min"`` (lower is better) negates the scores before P(X > Y), so P(improvement) stays "the
arm beats the baseline"; the Mann-Whitney test is two-sided and the paired difference is reported as
``arm - baseline`` in the metric's own units either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlopt.curves import Curve
from rlopt.report.stats import (
    holm,
    mann_whitney_p,
    normalized_auc,
    paired_comparison,
    steps_to_threshold,
    wilson_interval,
)
from rlopt.stats import bootstrap_ci, iqm, iqm_along, poi_ci, probability_of_improvement

MIN_RUNS_FOR_CI = 2
"""Below this many scores no interval is given (a single score resampled is a zero-width [v, v])."""


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def interval(values: list[float], reps: int, seed: int) -> list[float] | None:
    """Percentile-bootstrap CI of the IQM of ``values``; None below :data:`MIN_RUNS_FOR_CI` values."""
    if len(values) < MIN_RUNS_FOR_CI:
        return None
    low, high = bootstrap_ci(np.asarray(values, dtype=np.float64), iqm_along, reps=reps, seed=seed)
    return None if _finite(low) is None or _finite(high) is None else [float(low), float(high)]


def compare_with_baseline(
    arms: dict[str, dict[str, Any]], by_seed: dict[str, dict[int, float]], base: str, mode: str, reps: int, seed: int,
    warnings: list[str],
) -> None:
    """Fill ``poi_vs_baseline``, ``poi_ci``, ``mw_p``, ``holm_p`` and ``paired`` of every arm but the baseline."""
    sign = 1.0 if mode == "max" else -1.0
    y = sign * np.asarray(list(by_seed[base].values()), dtype=np.float64)
    pvalues: dict[str, float | None] = {}
    for arm, entry in arms.items():
        if arm == base or not by_seed[arm] or y.size == 0:
            continue
        x = sign * np.asarray(list(by_seed[arm].values()), dtype=np.float64)
        entry["poi_vs_baseline"] = _finite(probability_of_improvement(x, y))
        if x.size >= MIN_RUNS_FOR_CI and y.size >= MIN_RUNS_FOR_CI:
            low, high = poi_ci(x, y, reps=reps, seed=seed)
            entry["poi_ci"] = None if _finite(low) is None or _finite(high) is None else [float(low), float(high)]
        else:
            warnings.append(f"{arm}: no P(improvement) CI, fewer than {MIN_RUNS_FOR_CI} scores in it or the baseline")
        pvalues[arm] = mann_whitney_p(x, y)
        entry["mw_p"] = pvalues[arm]
        entry["paired"] = paired_comparison(by_seed[arm], by_seed[base], reps, seed)
    for arm, adjusted in holm(pvalues).items():
        arms[arm]["holm_p"] = adjusted


def success(scores: list[float], threshold: float | None, mode: str) -> tuple[float | None, list[float] | None]:
    """(fraction of scores at or beyond ``threshold``, its Wilson interval); (None, None) without a
    threshold or scores."""
    if threshold is None or not scores:
        return None, None
    x = np.asarray(scores, dtype=np.float64)
    k = int(np.sum(x >= threshold if mode == "max" else x <= threshold))
    low, high = wilson_interval(k, x.size)  # type: ignore[misc]
    return k / x.size, [low, high]


def sample_efficiency(
    curves: list[Curve], threshold: float | None, mode: str, reps: int, seed: int
) -> tuple[dict[str, Any] | None, dict[str, Any], list[float | None], list[float | None]]:
    """Per arm ``steps_to_threshold {iqm, ci, reached}`` (None without a threshold; over the runs that
    reach it) and ``auc {iqm, ci}`` (normalised area under each run's curve), plus the per-run values."""
    aucs = [normalized_auc(c.steps, c.values) for c in curves]
    known = [a for a in aucs if a is not None]
    auc = {"iqm": _finite(iqm(known)) if known else None, "ci": interval(known, reps, seed)}
    if threshold is None:
        return None, auc, [None] * len(curves), aucs
    steps = [steps_to_threshold(c.steps, c.values, threshold, mode) for c in curves]
    reached = [s for s in steps if s is not None]
    entry = {"iqm": _finite(iqm(reached)) if reached else None, "ci": interval(reached, reps, seed),
             "reached": len(reached)}
    return entry, auc, steps, aucs
