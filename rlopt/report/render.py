"""Rendering of a sweep report (a dict built by :func:`rlopt.report.build.build_report`) as Markdown.

Pure presentation, torch-free: every function turns the report dict into text and writes nothing;
:mod:`rlopt.report.build` computes the dict and writes the files, :mod:`rlopt.report.plots` draws the PNGs.
"""

from __future__ import annotations

from typing import Any

from rlopt.report.grid import grid_markdown
from rlopt.stats import CONFIDENCE

__all__ = ["ranked_arms", "render_markdown", "table_rows"]


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


def _iqm_ci_cell(summary: dict[str, Any] | None, n: int, scale: float = 1.0, unit: str = "") -> str:
    """``IQM [low, high]`` (in ``unit`` after dividing by ``scale``), then ``(k/n)`` runs when counted."""
    reached = f" ({summary['reached']}/{n})" if summary and "reached" in summary else ""
    if not summary or summary["iqm"] is None:
        return "–" + reached
    ci = summary["ci"]
    text = f"{summary['iqm'] / scale:.3g}{unit}"
    text += "" if ci is None else f" [{ci[0] / scale:.3g}{unit}, {ci[1] / scale:.3g}{unit}]"
    return text + reached


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per arm (sorted by IQM): arm, n, IQM [CI], mean ± std, median, P(>baseline) [CI],
    Mann-Whitney p (Holm), paired difference; success rate and steps to the threshold when a threshold
    is set; normalised AUC when there are curves. The first four and the P column stay in place."""
    base, threshold = report["baseline"], report.get("threshold")
    entries = report["arms"]
    with_auc = any((e.get("auc") or {}).get("iqm") is not None for e in entries.values())
    with_eval = report.get("eval_tag") is not None
    header = ["arm", "n", "IQM [95% CI]", "mean ± std", "median", f"P(> {base}) [95% CI]", "MW p (Holm)",
              "paired diff [95% CI]"]
    if threshold is not None:
        header += [f"success ≥ {threshold:g} [Wilson]" if report.get("metric_mode", "max") == "max"
                   else f"success ≤ {threshold:g} [Wilson]", "steps to threshold: IQM [CI] (runs reaching)"]
    if with_auc:
        header.append("AUC [95% CI]")
    if with_eval:
        header += (["eval steps to threshold (runs reaching)"] if threshold is not None else []) + ["eval AUC [95% CI]"]
    rows = [header]
    for arm in ranked_arms(report):
        e = entries[arm]
        mean = _num(e["mean"]) + ("" if e["std"] is None else f" ± {e['std']:.4g}")
        row = [arm, str(e["n"]), _num(e["iqm"]) + _ci(e["iqm_ci"]), mean, _num(e["median"]), _poi_cell(e, arm == base),
               "baseline" if arm == base else "–" if e.get("mw_p") is None else f"{_p(e['mw_p'])} ({_p(e['holm_p'])})",
               "baseline" if arm == base else _paired_cell(e)]
        if threshold is not None:
            rate = e.get("success_rate")
            row.append("–" if rate is None else f"{rate:.0%}{_ci(e['success_wilson_ci'], '.0%')}")
            row.append(_iqm_ci_cell(e.get("steps_to_threshold"), e["n"], 1000.0, "k"))
        if with_auc:
            row.append(_iqm_ci_cell(e.get("auc"), e["n"]))
        if with_eval:
            row += ([_iqm_ci_cell(e.get("eval_steps_to_threshold"), e["n"], 1000.0, "k")] if threshold is not None else [])
            row.append(_iqm_ci_cell(e.get("eval_auc"), e["n"]))
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
           "over its steps" if report.get("threshold") is not None else "")
        + (f"; eval = the same on the `{report['eval_tag']}` curves (evaluations during training)"
           if report.get("eval_tag") else "") + ".",
        "",
    ]
    rows = table_rows(report)
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in report["warnings"]] or ["None."]
    lines += grid_markdown(report)
    panels = report.get("panels")
    lines += ["", "## Plots", ""]
    if panels:
        lines += ["Panels (the baseline in each): " + "; ".join(f"{name}: {', '.join(arms)}" for name, arms in panels.items()), ""]
    lines += ["![learning curves](curves.png)", "", "![final scores](final.png)", "",
              "![probability of improvement](poi.png)", "", "![performance profile](profile.png)", ""]
    return "\n".join(lines)
