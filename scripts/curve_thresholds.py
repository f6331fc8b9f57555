"""How fast each arm of a reported sweep learns, and at what cost: for the IQM learning curve that
``rlopt report`` wrote (``OUT/report/report.json``), the first env step at which it reaches each
threshold, next to the final-score IQM and the mean wall seconds per run (``OUT/manifest.json``).

When every arm ends at the same final score (CartPole's 500), the curve is what separates them.

    python scripts/curve_thresholds.py OUT [--thresholds 200 400 475]   # OUT: a sweep, or benchmarks/ablations/<name>
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def first_step_at(steps: list[float], values: list[float | None], threshold: float) -> float | None:
    """The first step whose curve value is ≥ threshold (None if the curve never gets there)."""
    return next((step for step, value in zip(steps, values) if value is not None and value >= threshold), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a sweep directory with a report (rlopt report OUT)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[200.0, 400.0, 475.0])
    args = parser.parse_args(argv)
    nested = args.out / "report" / "report.json"  # a sweep OUT; else a committed benchmarks/ablations/<name>/
    report = json.loads((nested if nested.is_file() else args.out / "report.json").read_text())
    manifest_path = args.out / "manifest.json"
    runs = json.loads(manifest_path.read_text())["runs"] if manifest_path.is_file() else []
    walls: dict[str, list[float]] = {}
    for run in runs:
        if run.get("wall_seconds") is not None:
            walls.setdefault(run["arm"], []).append(run["wall_seconds"])
    header = " | ".join(f"step IQM ≥ {t:g}" for t in args.thresholds)
    print(f"| arm | final IQM | {header} | wall s / run |")
    print("|---|---:|" + "---:|" * len(args.thresholds) + "---:|")
    for arm, entry in report["arms"].items():
        curve = entry.get("curve") or {"steps": [], "iqm": []}
        cells = []
        for threshold in args.thresholds:
            step = first_step_at(curve["steps"], curve["iqm"], threshold)
            cells.append("never" if step is None else f"{step / 1000:.0f}k")
        wall = f"{statistics.mean(walls[arm]):.1f}" if arm in walls else "–"
        print(f"| {arm} | {entry['iqm']:.4g} | {' | '.join(cells)} | {wall} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
