"""``rlopt report OUT``: compare the arms of a sweep with IQM, bootstrap CIs and probability of improvement.

Reads the sweep contract (``OUT/manifest.json``, each finished run's ``summary.json`` and its
TensorBoard curve) and writes ``OUT/report/``: ``report.json`` (machine-readable, strict JSON:
``null`` where a number cannot be computed), ``report.md`` (one table sorted by IQM, warnings,
plots), ``curves.png``, ``final.png`` and ``poi.png``. Every file is written atomically.

Counting: ``n`` = runs with status ``finished`` and a finite metric in summary.json; ``failed`` =
status ``failed``; ``missing`` = every other planned run (pending, running, or finished without
a readable finite metric, which is also warned about). ``n + failed + missing`` = planned runs.
Statistics are in :mod:`rlopt.stats` (Agarwal et al. 2021), curves in :mod:`rlopt.curves`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rlopt.checkpoint import atomic_write_bytes
from rlopt.curves import Curve, common_grid, read_scalar
from rlopt.errors import ConfigError
from rlopt.stats import (
    BOOTSTRAP_METHOD,
    CONFIDENCE,
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

DEFAULT_REPS = 2000
"""Bootstrap resamples per interval."""

PLOT_DPI = 120
"""Resolution of the PNG plots."""

FIGURE_WIDTH = 7.0
"""Width of every plot in inches."""


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
        raise ConfigError(f"{source}: unknown arm {chosen!r}; arms: {', '.join(arms)}")
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
    if int(reps) < 1:
        raise ConfigError(f"--reps: must be >= 1, got {reps}")
    manifest = load_manifest(out)
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
    write_report(out / REPORT_DIR, report, name=str(manifest.get("name", out.name)), tag=tag)
    return report


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def ranked_arms(report: dict[str, Any]) -> list[str]:
    """Arm names by IQM, best first; arms without scores last (ties keep the manifest order)."""
    arms = list(report["arms"])
    return sorted(arms, key=lambda a: (report["arms"][a]["iqm"] is None, -(report["arms"][a]["iqm"] or 0.0)))


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _ci(pair: list[float] | None, digits: str = ".4g") -> str:
    return "" if pair is None else f" [{pair[0]:{digits}}, {pair[1]:{digits}}]"


def _poi_cell(entry: dict[str, Any], is_baseline: bool) -> str:
    if is_baseline:
        return "baseline"
    if entry["poi_vs_baseline"] is None:
        return "–"
    return f"{entry['poi_vs_baseline']:.2f}{_ci(entry['poi_ci'], '.2f')}"


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per arm (sorted by IQM): arm, n, IQM [CI], mean ± std, median, P(>baseline) [CI]."""
    base = report["baseline"]
    rows = [["arm", "n", "IQM [95% CI]", "mean ± std", "median", f"P(> {base}) [95% CI]"]]
    for arm in ranked_arms(report):
        e = report["arms"][arm]
        mean = _num(e["mean"]) + ("" if e["std"] is None else f" ± {e['std']:.4g}")
        rows.append([arm, str(e["n"]), _num(e["iqm"]) + _ci(e["iqm_ci"]), mean, _num(e["median"]),
                     _poi_cell(e, arm == base)])
    return rows


def render_markdown(report: dict[str, Any], name: str) -> str:
    """report.md: the table, the warnings and the plots (relative paths)."""
    boot = report["bootstrap"]
    lines = [
        f"# Sweep report: {name}",
        "",
        f"Metric `{report['metric']}`, baseline `{report['baseline']}`. IQM = interquartile mean (mean of the "
        f"middle 50% of seeds); {CONFIDENCE:.0%} {boot['method']}-bootstrap CIs ({boot['reps']} resamples, "
        f"seed {boot['seed']}); P(> baseline) = P(X > Y) + ½P(X = Y) over pairs of seeds.",
        "",
    ]
    rows = table_rows(report)
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in report["warnings"]] or ["None."]
    lines += ["", "## Plots", "", "![learning curves](curves.png)", "", "![final scores](final.png)", "",
              "![probability of improvement](poi.png)", ""]
    return "\n".join(lines)


def _figure(height: float) -> Any:
    # The object-oriented API with an Agg canvas: no pyplot, no global backend state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(FIGURE_WIDTH, height), dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _color(report: dict[str, Any], arm: str) -> str:
    """One colour per arm in every plot (by manifest order)."""
    return f"C{list(report['arms']).index(arm) % 10}"


def _interval_plot(report: dict[str, Any], arms: list[str], key: str, ci_key: str, xlabel: str, title: str,
                   reference: float | None = None) -> bytes:
    """Horizontal point + CI per arm (best on top); with a ``reference`` the axis is a probability."""
    figure = _figure(1.2 + 0.4 * max(1, len(arms)))
    ax = figure.add_subplot()
    shown = [a for a in arms if report["arms"][a][key] is not None]
    for row, arm in enumerate(reversed(shown)):
        entry = report["arms"][arm]
        point, ci = entry[key], entry[ci_key] or [entry[key], entry[key]]
        ax.errorbar([point], [row], xerr=[[point - ci[0]], [ci[1] - point]], fmt="o", capsize=4, color=_color(report, arm))
    ax.set_yticks(range(len(shown)), list(reversed(shown)))
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(-0.02, 1.02)
    if not shown:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(figure)


def render_plots(report: dict[str, Any], tag: str | None) -> dict[str, bytes]:
    """curves.png, final.png and poi.png as PNG bytes."""
    arms = ranked_arms(report)
    figure = _figure(4.5)
    ax = figure.add_subplot()
    plotted = 0
    for arm in report["arms"]:
        curve = report["arms"][arm]["curve"]
        if not curve["steps"]:
            continue
        steps = np.asarray(curve["steps"], dtype=np.float64)
        as_array = [np.asarray([np.nan if v is None else v for v in curve[k]], dtype=np.float64)
                    for k in ("iqm", "ci_low", "ci_high")]
        ax.plot(steps, as_array[0], color=_color(report, arm), label=f"{arm} (n={report['arms'][arm]['n']})")
        ax.fill_between(steps, as_array[1], as_array[2], color=_color(report, arm), alpha=0.2, linewidth=0)
        plotted += 1
    if plotted:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no learning curves", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"IQM of {tag}" if tag else "IQM")
    ax.set_title(f"Learning curves: IQM with {CONFIDENCE:.0%} bootstrap band")
    base = report["baseline"]
    return {
        "curves.png": _png(figure),
        "final.png": _interval_plot(report, arms, "iqm", "iqm_ci", f"IQM of {report['metric']}",
                                    f"Final {report['metric']}: IQM with {CONFIDENCE:.0%} CI"),
        "poi.png": _interval_plot(report, [a for a in arms if a != base], "poi_vs_baseline", "poi_ci",
                                  f"P(arm > {base})", f"Probability of improvement over {base}", reference=0.5),
    }


def write_report(folder: Path, report: dict[str, Any], name: str, tag: str | None) -> None:
    """Write report.json (strict JSON), report.md and the three PNGs atomically into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    for filename, data in render_plots(report, tag).items():
        atomic_write_bytes(folder / filename, data)
    atomic_write_bytes(folder / "report.md", render_markdown(report, name).encode())
    atomic_write_bytes(folder / "report.json", text.encode())


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rlopt report OUT [--baseline ARM] [--reps N] [--seed S]`` on the CLI's subparsers."""
    parser = subparsers.add_parser("report", help="compare a sweep's arms: IQM, bootstrap CIs, plots")
    parser.add_argument("out", metavar="OUT", help="a sweep directory written by rlopt sweep")
    parser.add_argument("--baseline", metavar="ARM", help="arm to compare against (default: the sweep's baseline)")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help=f"bootstrap resamples (default {DEFAULT_REPS})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.set_defaults(handler=report_command)
    return parser


def report_command(args: argparse.Namespace) -> int:
    """Run ``rlopt report``: write OUT/report/, print report.md's path and a compact table; exit code."""
    out = Path(args.out)
    report = build_report(out, baseline=args.baseline, reps=args.reps, seed=args.seed)
    rows = [[row[0], row[1], row[2], row[5]] for row in table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report written to {out / REPORT_DIR / 'report.md'}")
    return 0
