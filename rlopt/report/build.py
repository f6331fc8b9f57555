"""``rlopt report OUT``: compare the arms of a sweep with IQM, bootstrap CIs and probability of improvement.

Reads the sweep contract (``OUT/manifest.json``, each finished run's ``summary.json`` and its
TensorBoard curve) and writes ``OUT/report/``: ``report.json`` (machine-readable, strict JSON:
``null`` where a number cannot be computed), ``report.md`` (one table sorted by IQM, warnings,
plots), ``curves.png``, ``final.png`` and ``poi.png``. Every file is written atomically
(:mod:`rlopt.files`).

Analysis layer above the runs, torch-free (``import rlopt.report.build`` loads no torch): this module
reads the sweep and computes the report dict; :mod:`rlopt.report.render` turns it into Markdown
and PNGs.

Counting: ``n`` = runs with status ``finished`` and a finite metric in summary.json; ``failed`` =
status ``failed``; ``missing`` = every other planned run (pending, running, or finished without
a readable finite metric, which is also warned about). ``n + failed + missing`` = planned runs.
Statistics are in :mod:`rlopt.stats` (Agarwal et al. 2021), curves in :mod:`rlopt.curves`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rlopt.curves import Curve, common_grid, read_scalar
from rlopt.errors import ConfigError, short_repr
from rlopt.report.defaults import DEFAULT_REPS, check_arguments
from rlopt.sweep.messages import listed
from rlopt.files import atomic_write_bytes, atomic_write_text
from rlopt.report.render import render_markdown, render_plots
from rlopt.report.tuning import add_tuning, write_tuning
from rlopt.stats import (
    BOOTSTRAP_METHOD,
    bootstrap_ci,
    bootstrap_ci_columns,
    iqm,
    iqm_along,
    poi_ci,
    probability_of_improvement,
)

MANIFEST = "manifest.json"
"""The sweep driver's manifest inside OUT (see the sweep directory contract)."""

MANIFEST_FORMAT_VERSION = 1
"""The manifest format this reader understands."""

SUMMARY = "summary.json"
"""A finished run's summary inside its run directory."""

REPORT_DIR = "report"
"""Sub-directory of OUT that the report owns."""

CURVE_POINTS = 100
"""Points on each arm's common learning-curve grid."""

MIN_RUNS_FOR_IQM = 4
"""Below this many scores ``trim_mean(x, 0.25)`` trims nothing: the IQM is the mean (warned)."""



# --------------------------------------------------------------------------------------------------
# Reading the sweep
# --------------------------------------------------------------------------------------------------


def load_manifest(out_dir: Path) -> dict[str, Any]:
    """``OUT/manifest.json``, checked for the keys the report needs; ConfigError otherwise."""
    path = out_dir / MANIFEST
    if not path.is_file():
        raise ConfigError(f"report: {path} not found; give a sweep directory written by rlopt sweep")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"report: {path} is not readable JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise ConfigError(f"report: {path} must hold a JSON object")
    version = manifest.get("format_version")
    if version != MANIFEST_FORMAT_VERSION:
        raise ConfigError(f"report: {path} format_version={version!r}, this rlopt reads {MANIFEST_FORMAT_VERSION}")
    for key, kind in (("metric", str), ("arms", dict), ("runs", list)):
        if not isinstance(manifest.get(key), kind):
            raise ConfigError(f"report: {path} key {key!r} is missing or not a {kind.__name__}")
    if not manifest["arms"]:
        raise ConfigError(f"report: {path} lists no arms")
    return manifest


def resolve_baseline(manifest: dict[str, Any], baseline: str | None) -> str:
    """``baseline`` if given, else the manifest's, else the first arm; an unknown arm is a ConfigError."""
    arms = list(manifest["arms"])
    chosen, source = (baseline, "--baseline") if baseline is not None else (manifest.get("baseline"), "manifest baseline")
    if chosen is None:
        return arms[0]
    if chosen not in manifest["arms"]:
        raise ConfigError(f"{source}: unknown arm {short_repr(chosen)}; arms: {listed(arms)}")
    return str(chosen)


def _read_score(run_dir: Path, metric: str) -> float | None:
    """The run's finite ``metric`` from summary.json, or None."""
    try:
        value = json.loads((run_dir / SUMMARY).read_text()).get(metric)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _finite(x: Any) -> float | None:
    """A float for strict JSON: None for NaN/inf/None."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _pair(low: float, high: float) -> list[float] | None:
    lo, hi = _finite(low), _finite(high)
    return None if lo is None or hi is None else [lo, hi]


def _seeds(runs: Sequence[dict[str, Any]]) -> str:
    return ", ".join(str(run.get("seed")) for run in runs)


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def _curve_summary(
    arm: str, curves: list[Curve], labels: list[str], reps: int, seed: int, warnings: list[str]
) -> dict[str, list[float | None]]:
    grid = common_grid(curves, CURVE_POINTS, names=labels)
    warnings.extend(f"{arm}: {note}" for note in grid.warnings)
    if grid.steps.size == 0:
        return {"steps": [], "iqm": [], "ci_low": [], "ci_high": []}
    center = iqm_along(grid.values.T, axis=-1)
    low, high = bootstrap_ci_columns(grid.values, iqm_along, reps=reps, seed=seed)
    return {
        "steps": [int(s) for s in grid.steps],
        "iqm": [_finite(v) for v in center],
        "ci_low": [_finite(v) for v in low],
        "ci_high": [_finite(v) for v in high],
    }


def build_report(out_dir: str | Path, baseline: str | None = None, reps: int = DEFAULT_REPS, seed: int = 0) -> dict[str, Any]:
    """Compute the report of sweep ``out_dir`` and write ``OUT/report/`` (JSON, Markdown, PNGs); return the dict."""
    out = Path(out_dir)
    check_arguments(reps, seed, out)
    manifest = load_manifest(out)
    if (out / REPORT_DIR).exists() and not (out / REPORT_DIR).is_dir():
        raise ConfigError(f"report: {out / REPORT_DIR} is a file; the report is written into that directory")
    base = resolve_baseline(manifest, baseline)
    metric, tag = manifest["metric"], manifest.get("curve")
    warnings: list[str] = []

    by_arm: dict[str, list[dict[str, Any]]] = {arm: [] for arm in manifest["arms"]}
    for run in manifest["runs"]:
        if run.get("arm") in by_arm:
            by_arm[run["arm"]].append(run)
        else:
            warnings.append(f"manifest run {run.get('run_dir')!r} names unknown arm {run.get('arm')!r}; ignored")

    arms: dict[str, dict[str, Any]] = {}
    scores: dict[str, list[float]] = {}
    for arm, runs in by_arm.items():
        finished, failed, missing, unreadable = [], [], [], []
        for run in runs:
            status = run.get("status")
            score = _read_score(out / str(run.get("run_dir", "")), metric) if status == "finished" else None
            if status == "failed":
                failed.append(run)
            elif score is None:
                (unreadable if status == "finished" else missing).append(run)
            else:
                finished.append((run, score))
        arm_scores = [score for _, score in finished]
        scores[arm] = arm_scores
        n = len(arm_scores)
        if failed:
            warnings.append(f"{arm}: {len(failed)} run(s) failed (seeds {_seeds(failed)})")
        if unreadable:
            warnings.append(f"{arm}: {len(unreadable)} finished run(s) without a finite {metric!r} in {SUMMARY} "
                            f"(seeds {_seeds(unreadable)}), counted as missing")
        if missing:
            warnings.append(f"{arm}: {len(missing)} run(s) missing, not finished (seeds {_seeds(missing)})")
        if n == 0:
            warnings.append(f"{arm}: no scores, no statistics")
        elif n < MIN_RUNS_FOR_IQM:
            warnings.append(f"{arm}: n={n} < {MIN_RUNS_FOR_IQM}, so the IQM is the plain mean and the CI is wide")
        x = np.asarray(arm_scores, dtype=np.float64)
        curves: list[Curve] = []
        labels: list[str] = []
        if tag:
            for run, _ in finished:
                curves.append(read_scalar(out / str(run["run_dir"]), tag))
                labels.append(f"seed {run.get('seed')}")
        arms[arm] = {
            "overrides": manifest["arms"][arm].get("overrides", {}) if isinstance(manifest["arms"][arm], dict) else {},
            "n": n,
            "failed": len(failed),
            "missing": len(missing) + len(unreadable),
            "scores": [float(s) for s in arm_scores],
            "mean": _finite(x.mean()) if n else None,
            "std": _finite(x.std(ddof=1)) if n > 1 else None,
            "median": _finite(np.median(x)) if n else None,
            "iqm": _finite(iqm(x)) if n else None,
            "iqm_ci": _pair(*bootstrap_ci(x, iqm_along, reps=reps, seed=seed)) if n else None,
            "poi_vs_baseline": None,
            "poi_ci": None,
            "curve": _curve_summary(arm, curves, labels, reps, seed, warnings)
            if tag
            else {"steps": [], "iqm": [], "ci_low": [], "ci_high": []},
        }
    if not scores[base]:
        warnings.append(f"baseline {base}: no scores, so no probability of improvement")
    for arm, entry in arms.items():
        if arm != base and scores[arm] and scores[base]:
            entry["poi_vs_baseline"] = _finite(probability_of_improvement(scores[arm], scores[base]))
            entry["poi_ci"] = _pair(*poi_ci(scores[arm], scores[base], reps=reps, seed=seed))

    report = {
        "metric": metric,
        "baseline": base,
        "bootstrap": {"method": BOOTSTRAP_METHOD, "reps": int(reps), "seed": int(seed)},
        "arms": arms,
        "warnings": warnings,
    }
    add_tuning(out, report, reps, seed)  # arms.<arm>.tuning of a sweep with a search: block
    try:
        write_report(out / REPORT_DIR, report, name=str(manifest.get("name", out.name)), tag=tag)
        write_tuning(out / REPORT_DIR, report)
    except OSError as err:  # OUT/report/report.md a directory, a read-only OUT, a full disk
        raise ConfigError(f"report: cannot write {out / REPORT_DIR} ({err.strerror or type(err).__name__})") from None
    return report


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def write_report(folder: Path, report: dict[str, Any], name: str, tag: str | None) -> None:
    """Write report.json (strict JSON), report.md and the three PNGs atomically into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    for filename, data in render_plots(report, tag).items():
        atomic_write_bytes(folder / filename, data)
    atomic_write_text(folder / "report.md", render_markdown(report, name))
    atomic_write_text(folder / "report.json", text)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
