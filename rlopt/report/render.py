"""Rendering of a sweep report (a dict built by :func:`rlopt.report.build.build_report`): Markdown and PNG plots.

Pure presentation, torch-free: every function turns the report dict into text or PNG bytes and
writes nothing; :mod:`rlopt.report.build` computes the dict and writes the files. Plots use
matplotlib's object-oriented API on an Agg canvas (no pyplot, no global backend state), imported
only when a plot is drawn.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from rlopt.stats import CONFIDENCE

__all__ = ["ranked_arms", "render_markdown", "render_plots", "table_rows"]

PLOT_DPI = 120
"""Resolution of the PNG plots."""

FIGURE_WIDTH = 7.0
"""Width of every plot in inches."""


def ranked_arms(report: dict[str, Any]) -> list[str]:
    """Arm names by IQM, best first (highest, or lowest with ``metric_mode: min``); arms without scores
    last (ties keep the manifest order)."""
    arms = list(report["arms"])
    sign = -1.0 if report.get("metric_mode", "max") == "max" else 1.0
    return sorted(arms, key=lambda a: (report["arms"][a]["iqm"] is None, sign * (report["arms"][a]["iqm"] or 0.0)))


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


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.2g}" if x >= 0.001 else f"{x:.1e}"


def _paired_cell(entry: dict[str, Any]) -> str:
    paired = entry.get("paired")
    if not paired:
        return "–"
    return f"{paired['mean_diff']:+.4g}{_ci(paired['mean_diff_ci'])} (p={_p(paired['wilcoxon_p'])}, {paired['n_pairs']} seeds)"


def _iqm_ci_cell(summary: dict[str, Any] | None, scale: float = 1.0, unit: str = "") -> str:
    if not summary or summary["iqm"] is None:
        return "–"
    ci = summary["ci"]
    text = f"{summary['iqm'] / scale:.3g}{unit}" + ("" if ci is None else f" [{ci[0] / scale:.3g}, {ci[1] / scale:.3g}]")
    return text + (f" ({summary['reached']}/n)" if "reached" in summary else "")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per arm (sorted by IQM): arm, n, IQM [CI], mean ± std, median, P(>baseline) [CI],
    Mann-Whitney p (Holm), paired difference; success rate and steps to the threshold when a threshold
    is set; normalised AUC when there are curves. The first four and the P column stay in place."""
    base, threshold = report["baseline"], report.get("threshold")
    entries = report["arms"]
    with_auc = any((e.get("auc") or {}).get("iqm") is not None for e in entries.values())
    header = ["arm", "n", "IQM [95% CI]", "mean ± std", "median", f"P(> {base}) [95% CI]", "MW p (Holm)",
              "paired diff [95% CI]"]
    if threshold is not None:
        header += [f"success ≥ {threshold:g} [Wilson]" if report.get("metric_mode", "max") == "max"
                   else f"success ≤ {threshold:g} [Wilson]", "steps to threshold (k, IQM [CI])"]
    if with_auc:
        header.append("AUC [95% CI]")
    rows = [header]
    for arm in ranked_arms(report):
        e = entries[arm]
        mean = _num(e["mean"]) + ("" if e["std"] is None else f" ± {e['std']:.4g}")
        row = [arm, str(e["n"]), _num(e["iqm"]) + _ci(e["iqm_ci"]), mean, _num(e["median"]), _poi_cell(e, arm == base),
               "baseline" if arm == base else "–" if e.get("mw_p") is None else f"{_p(e['mw_p'])} ({_p(e['holm_p'])})",
               "baseline" if arm == base else _paired_cell(e)]
        if threshold is not None:
            rate = e.get("success_rate")
            row.append("–" if rate is None else f"{rate:.0%}{_ci(e['success_wilson_ci'], '.2f')}")
            row.append(_iqm_ci_cell(e.get("steps_to_threshold"), 1000.0, "k"))
        if with_auc:
            row.append(_iqm_ci_cell(e.get("auc")))
        rows.append(row)
    return rows


def render_markdown(report: dict[str, Any], name: str) -> str:
    """report.md: the table, the warnings and the plots (relative paths)."""
    boot = report["bootstrap"]
    lines = [
        f"# Sweep report: {name}",
        "",
        f"Metric `{report['metric']}`, baseline `{report['baseline']}`. IQM = interquartile mean (mean of the "
        f"middle 50% of seeds); {CONFIDENCE:.0%} {boot['method']}-bootstrap CIs ({boot['reps']} resamples, "
        f"seed {boot['seed']}; curve bands {boot.get('curve_reps', boot['reps'])}); "
        f"P(> baseline) = P(X > Y) + ½P(X = Y) over pairs of seeds"
        + (" (lower is better: X < Y)" if report.get("metric_mode", "max") == "min" else "")
        + "; MW p = two-sided Mann-Whitney U p-value vs the baseline, Holm-Bonferroni adjusted over the arms "
        "in brackets; paired = arm − baseline on shared seeds (paired bootstrap CI, Wilcoxon signed-rank p)"
        + ("; steps to threshold over the runs whose smoothed curve reaches it, k of n; AUC = the curve's mean "
           "over its steps" if report.get("threshold") is not None else "") + ".",
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
