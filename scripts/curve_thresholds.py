"""How fast each arm of a sweep learns, and at what cost: for each threshold, the env steps to reach it,
next to the final-score IQM and the mean wall seconds per run (``OUT/manifest.json``).

A thin wrapper over :mod:`rlopt.report`: on a sweep directory with its runs' curves (curve files or
event files) it gives, per arm, the IQM [95% bootstrap CI] of each run's steps to reach the threshold
on its smoothed curve (:func:`rlopt.report.compare.sample_efficiency`), with how many runs reach it.
On a committed ``benchmarks/ablations/<name>`` folder (a report.json, no runs) it falls back to the first
step of the arm's IQM learning curve at the threshold, without an interval.

    python scripts/curve_thresholds.py OUT [--thresholds 200 400 475] [--reps 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from rlopt.report.build import load_manifest
from rlopt.report.compare import sample_efficiency
from rlopt.report.curve_file import load_curve
from rlopt.report.stats import steps_to_threshold


def _iqm_curve_cell(entry: dict[str, Any], threshold: float, mode: str) -> str:
    curve = entry.get("curve") or {"steps": [], "iqm": []}
    values = np.asarray([np.nan if v is None else v for v in curve["iqm"]], dtype=np.float64)
    step = steps_to_threshold(np.asarray(curve["steps"]), values, threshold, mode, window=1)
    return "never" if step is None else f"{step / 1000:.0f}k"


def _per_run_cell(curves: list[Any], threshold: float, mode: str, reps: int) -> str:
    summary, _, _, _ = sample_efficiency(curves, threshold, mode, reps, seed=0)
    if summary is None or summary["iqm"] is None:
        return f"never (0/{len(curves)})"
    ci = "" if summary["ci"] is None else f" [{summary['ci'][0] / 1000:.0f}k, {summary['ci'][1] / 1000:.0f}k]"
    return f"{summary['iqm'] / 1000:.0f}k{ci} ({summary['reached']}/{len(curves)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a sweep directory with a report (rlopt report OUT)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[200.0, 400.0, 475.0])
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per interval (per-run mode)")
    args = parser.parse_args(argv)
    nested = args.out / "report" / "report.json"  # a sweep OUT; else a committed benchmarks/ablations/<name>/
    report = json.loads((nested if nested.is_file() else args.out / "report.json").read_text())
    mode = report.get("metric_mode", "max")
    manifest = load_manifest(args.out)
    runs = manifest["runs"]
    tag = manifest.get("curve")
    per_run = tag is not None and ((args.out / "runs").is_dir() or (args.out / "curves").is_dir())
    walls: dict[str, list[float]] = {}
    for run in runs:
        if run.get("wall_seconds") is not None:
            walls.setdefault(run["arm"], []).append(run["wall_seconds"])
    header = " | ".join(f"steps to {t:g}" + (" (IQM [CI], k/n)" if per_run else " (IQM curve)") for t in args.thresholds)
    print(f"| arm | final IQM | {header} | wall s / run |")
    print("|---|---:|" + "---:|" * len(args.thresholds) + "---:|")
    for arm, entry in report["arms"].items():
        if per_run:
            curves = [load_curve(args.out, run, tag) for run in runs if run["arm"] == arm and run.get("status") == "finished"]
            cells = [_per_run_cell(curves, t, mode, args.reps) for t in args.thresholds]
        else:
            cells = [_iqm_curve_cell(entry, t, mode) for t in args.thresholds]
        wall = f"{statistics.mean(walls[arm]):.1f}" if arm in walls else "–"
        iqm = "–" if entry["iqm"] is None else f"{entry['iqm']:.4g}"
        print(f"| {arm} | {iqm} | {' | '.join(cells)} | {wall} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
