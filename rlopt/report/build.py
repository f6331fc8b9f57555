"""``rlopt report OUT``: compare the arms of a sweep with IQM, bootstrap CIs and probability of improvement.

Reads the sweep contract (``OUT/manifest.json``, each finished run's ``summary.json`` and its curve:
the compact curve file ``OUT/curves/<arm>/seed_<k>.csv``, else the TensorBoard event files) and writes
``OUT/report/``: ``report.json`` (machine-readable, strict JSON: ``null`` where a number cannot be
computed), ``report.md`` (one table sorted by IQM, warnings, plots), ``scores.csv`` and ``curves.csv``
(:mod:`~rlopt.report.export`) and the PNG plots (:mod:`~rlopt.report.plots`). Every file is written
atomically (:mod:`rlopt.files`). Comparisons with the baseline, success rates and sample efficiency
are in :mod:`~rlopt.report.compare`.

Analysis layer above the runs, torch-free (``import rlopt.report.build`` loads no torch): this module
reads the sweep and computes the report dict; :mod:`rlopt.report.render` turns it into Markdown.

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

from rlopt.curves import Curve, common_grid
from rlopt.report.curve_file import EVAL_SUFFIX, EVAL_TAG, load_curve
from rlopt.errors import ConfigError, short_repr
from rlopt.report.compare import MIN_RUNS_FOR_CI, compare_with_baseline, interval, sample_efficiency, success
from rlopt.report.defaults import DEFAULT_CURVE_REPS, DEFAULT_REPS, check_arguments, report_settings
from rlopt.report.export import curves_csv, scores_csv
from rlopt.report.grid import add_grid
from rlopt.report.panels import resolve_panels
from rlopt.sweep.messages import listed
from rlopt.files import atomic_write_bytes, atomic_write_text
from rlopt.report.plots import render_plots
from rlopt.report.render import render_markdown
from rlopt.report.tuning import add_tuning, write_tuning
from rlopt.stats import (
    BOOTSTRAP_METHOD,
    bootstrap_ci_columns,
    iqm,
    iqm_along,
)

MANIFEST = "manifest.json"
"""The sweep driver's manifest inside OUT (see the sweep directory contract)."""

MANIFEST_FORMAT_VERSION = 1
"""The manifest format this reader understands."""

SWEEP_FILE = "sweep.yaml"
"""The sweep file frozen into OUT by the driver (grid, variants, panels, normalize)."""

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


def read_sweep_file(out_dir: Path) -> dict[str, Any]:
    """``OUT/sweep.yaml`` as a mapping (safe YAML), {} when absent; unreadable YAML is a ConfigError."""
    import yaml

    path = out_dir / SWEEP_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"report: {path} is not readable YAML ({type(err).__name__})") from None
    return data if isinstance(data, dict) else {}


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


def _entry(listing: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """The ``runs`` entry of manifest run ``run``."""
    return next(e for e in listing if e["seed"] == run.get("seed") and e["run_dir"] == run.get("run_dir"))


def _seeds(runs: Sequence[dict[str, Any]]) -> str:
    return ", ".join(str(run.get("seed")) for run in runs)


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def _empty_curve() -> dict[str, list[Any]]:
    """An arm's ``curve`` / ``eval_curve`` without points."""
    return {"steps": [], "iqm": [], "ci_low": [], "ci_high": []}


def _curve_summary(
    arm: str, curves: list[Curve], labels: list[str], reps: int, seed: int, warnings: list[str]
) -> dict[str, list[float | None]]:
    grid = common_grid(curves, CURVE_POINTS, names=labels)
    warnings.extend(f"{arm}: {note}" for note in grid.warnings)
    if grid.steps.size == 0:
        return _empty_curve()
    center = iqm_along(grid.values.T, axis=-1)
    if grid.values.shape[0] < MIN_RUNS_FOR_CI:  # one run: a band of zero width would look certain
        low = high = np.full(center.shape, np.nan)
    else:
        low, high = bootstrap_ci_columns(grid.values, iqm_along, reps=reps, seed=seed)
    return {
        "steps": [int(s) for s in grid.steps],
        "iqm": [_finite(v) for v in center],
        "ci_low": [_finite(v) for v in low],
        "ci_high": [_finite(v) for v in high],
    }


def _settings(manifest: dict[str, Any], mode: str | None, threshold: float | None) -> tuple[str, float | None]:
    """``metric_mode`` and ``threshold``: the arguments, else the manifest's (the sweep file's), else max/None."""
    recorded = {"metric_mode": manifest.get("metric_mode", "max"), "threshold": manifest.get("threshold")}
    chosen = {**recorded, **({} if mode is None else {"metric_mode": mode}),
              **({} if threshold is None else {"threshold": threshold})}
    return report_settings(chosen, lambda message: ConfigError(f"report: {message}"))


def build_report(
    out_dir: str | Path, baseline: str | None = None, reps: int = DEFAULT_REPS, seed: int = 0,
    curve_reps: int = DEFAULT_CURVE_REPS, mode: str | None = None, threshold: float | None = None,
    select: str | None = None,
) -> dict[str, Any]:
    """Compute the report of sweep ``out_dir`` and write ``OUT/report/`` (JSON, Markdown, CSV, PNGs); return the dict.

    ``reps`` resamples per final-score interval, ``curve_reps`` per learning-curve band; ``mode`` and
    ``threshold`` override the sweep file's ``metric_mode`` and ``threshold``; ``select`` is a grid key
    chosen per variant on half of the seeds and reported on the other half (:mod:`~rlopt.report.grid`).
    """
    out = Path(out_dir)
    check_arguments(reps, seed, out, curve_reps, mode)
    manifest = load_manifest(out)
    sweep_file = read_sweep_file(out)
    if (out / REPORT_DIR).exists() and not (out / REPORT_DIR).is_dir():
        raise ConfigError(f"report: {out / REPORT_DIR} is a file; the report is written into that directory")
    base = resolve_baseline(manifest, baseline)
    mode, threshold = _settings(manifest, mode, threshold)
    metric, tag = manifest["metric"], manifest.get("curve")
    warnings: list[str] = []

    by_arm: dict[str, list[dict[str, Any]]] = {arm: [] for arm in manifest["arms"]}
    for run in manifest["runs"]:
        if run.get("arm") in by_arm:
            by_arm[run["arm"]].append(run)
        else:
            warnings.append(f"manifest run {run.get('run_dir')!r} names unknown arm {run.get('arm')!r}; ignored")

    arms: dict[str, dict[str, Any]] = {}
    by_seed: dict[str, dict[int, float]] = {}
    for arm, runs in by_arm.items():
        finished, failed, missing, unreadable = [], [], [], []
        listing: list[dict[str, Any]] = []
        for run in runs:
            status = run.get("status")
            score = _read_score(out / str(run.get("run_dir", "")), metric) if status == "finished" else None
            listing.append({"seed": run.get("seed"), "run_dir": run.get("run_dir"), "score": score, "status": status,
                            "steps_to_threshold": None, "auc": None, "eval_steps_to_threshold": None, "eval_auc": None})
            if status == "failed":
                failed.append(run)
            elif score is None:
                (unreadable if status == "finished" else missing).append(run)
            else:
                finished.append((run, score))
        arm_scores = [score for _, score in finished]
        by_seed[arm] = {run.get("seed"): score for run, score in finished}
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
        elif n < MIN_RUNS_FOR_CI:
            warnings.append(f"{arm}: n={n} < {MIN_RUNS_FOR_CI}, no confidence intervals")
        elif n < MIN_RUNS_FOR_IQM:
            warnings.append(f"{arm}: n={n} < {MIN_RUNS_FOR_IQM}, so the IQM is the plain mean and the CI is wide")
        x = np.asarray(arm_scores, dtype=np.float64)
        curves = [load_curve(out, run, tag) for run, _ in finished] if tag else []
        labels = [f"seed {run.get('seed')}" for run, _ in finished]
        evaluated = [(run, curve, label) for (run, _), label in zip(finished, labels)
                     if tag != EVAL_TAG and len(curve := load_curve(out, run, EVAL_TAG, EVAL_SUFFIX))]
        rate, rate_ci = success(arm_scores, threshold, mode)
        to_threshold, auc, run_steps, run_aucs = sample_efficiency(curves, threshold, mode, reps, seed)
        eval_to_threshold, eval_auc, eval_steps, eval_aucs = sample_efficiency(
            [curve for _, curve, _ in evaluated], threshold, mode, reps, seed)
        for (run, _), steps, area in zip(finished, run_steps, run_aucs):
            _entry(listing, run).update(steps_to_threshold=steps, auc=area)
        for (run, _, _), steps, area in zip(evaluated, eval_steps, eval_aucs):
            _entry(listing, run).update(eval_steps_to_threshold=steps, eval_auc=area)
        arms[arm] = {
            "overrides": manifest["arms"][arm].get("overrides", {}) if isinstance(manifest["arms"][arm], dict) else {},
            "n": n,
            "failed": len(failed),
            "missing": len(missing) + len(unreadable),
            "scores": [float(s) for s in arm_scores],
            "runs": listing,
            "mean": _finite(x.mean()) if n else None,
            "std": _finite(x.std(ddof=1)) if n > 1 else None,
            "median": _finite(np.median(x)) if n else None,
            "iqm": _finite(iqm(x)) if n else None,
            "iqm_ci": interval(arm_scores, reps, seed),
            "poi_vs_baseline": None,
            "poi_ci": None,
            "mw_p": None,
            "holm_p": None,
            "paired": None,
            "success_rate": rate,
            "success_wilson_ci": rate_ci,
            "steps_to_threshold": to_threshold if tag else None,
            "auc": auc if tag else None,
            "curve": _curve_summary(arm, curves, labels, curve_reps, seed, warnings) if tag else _empty_curve(),
            "eval_steps_to_threshold": eval_to_threshold if evaluated else None,
            "eval_auc": eval_auc if evaluated else None,
            "eval_curve": _curve_summary(f"{arm} ({EVAL_TAG})", [c for _, c, _ in evaluated], [lb for _, _, lb in evaluated],
                                         curve_reps, seed, warnings) if evaluated else _empty_curve(),
        }
    if not by_seed[base]:
        warnings.append(f"baseline {base}: no scores, so no probability of improvement")
    compare_with_baseline(arms, by_seed, base, mode, reps, seed, warnings)

    report = {
        "metric": metric,
        "metric_mode": mode,
        "threshold": threshold,
        "baseline": base,
        "bootstrap": {"method": BOOTSTRAP_METHOD, "reps": int(reps), "curve_reps": int(curve_reps), "seed": int(seed)},
        "eval_tag": EVAL_TAG if any(entry["eval_curve"]["steps"] for entry in arms.values()) else None,
        "arms": arms,
    }
    seeds = [run.get("seed") for run in manifest["runs"] if isinstance(run.get("seed"), int)]
    add_grid(report, sweep_file, by_seed, seeds, select, reps, seed, warnings)  # grid, select
    report["panels"] = resolve_panels(sweep_file.get("panels"), list(arms), base)
    report["warnings"] = warnings
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
    """Write report.json (strict JSON), report.md, scores.csv, curves.csv and the PNGs atomically into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    atomic_write_text(folder / "scores.csv", scores_csv(report))
    atomic_write_text(folder / "curves.csv", curves_csv(report, tag))
    for filename, data in render_plots(report, tag).items():
        atomic_write_bytes(folder / filename, data)
    atomic_write_text(folder / "report.md", render_markdown(report, name))
    atomic_write_text(folder / "report.json", text)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
