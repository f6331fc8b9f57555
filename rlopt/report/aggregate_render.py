"""Writing an aggregate report (:mod:`rlopt.report.aggregate`) into its DIR: ``report.json``, ``report.md``,
``scores.csv`` (arm, env, normalised score) and ``iqm.png``, ``optimality_gap.png``, ``profile.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlopt.files import atomic_write_bytes, atomic_write_text
from rlopt.report.export import _table
from rlopt.report.render import ranked_arms
from rlopt.stats import CONFIDENCE

AGGREGATE_SCORE_COLUMNS = ("arm", "env", "normalised_score")
"""``scores.csv``'s header in an aggregate report's DIR."""


def _cell(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")


def aggregate_markdown(report: dict[str, Any]) -> str:
    """report.md of an aggregate: the normalisation per env, then one row per arm sorted by IQM."""
    agg, boot = report["aggregate"], report["bootstrap"]
    envs = [s["env"] for s in agg["sweeps"]]
    lines = [f"# Aggregate report: {', '.join(s['name'] for s in agg['sweeps'])}", "",
             f"Metric `{agg['metric']}` ({agg['metric_mode']}), normalised per env to 0 at `low` and 1 at `high`, "
             f"pooled over {len(envs)} envs. IQM = interquartile mean; optimality gap = mean of max(0, "
             f"{agg['gap_target']:g} − x), lower is better (Agarwal et al. 2021); {CONFIDENCE:.0%} bootstrap CIs "
             f"({boot['method']}; {boot['reps']} resamples, seed {boot['seed']}).", "",
             "| env | sweep | low | high | source |", "|---|---|---:|---:|---|"]
    for sweep in agg["sweeps"]:
        bounds = agg["normalize"][sweep["env"]]
        lines.append(f"| {sweep['env']} | {sweep['out']} | {bounds['low']:.4g} | {bounds['high']:.4g} | {bounds['source']} |")
    lines += ["", "| arm | n | IQM [95% CI] | optimality gap [95% CI] | " + " | ".join(f"IQM {e}" for e in envs) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(envs)]
    for arm in ranked_arms(report):
        e = report["arms"][arm]
        per_env = " | ".join(_cell(e["per_env"][env]["iqm"], None) + f" (n={e['per_env'][env]['n']})" for env in envs)
        name = f"**{arm}** (baseline)" if arm == report["baseline"] else arm
        lines.append(f"| {name} | {e['n']} | {_cell(e['iqm'], e['iqm_ci'])} | "
                     f"{_cell(e['optimality_gap'], e['optimality_gap_ci'])} | {per_env} |")
    lines += ["", "## Warnings", ""] + ([f"- {w}" for w in report["warnings"]] or ["None."])
    lines += ["", "## Plots", "", "![IQM](iqm.png)", "", "![optimality gap](optimality_gap.png)", "",
              "![performance profile](profile.png)", ""]
    return "\n".join(lines)


def write_aggregate(dest: Path, report: dict[str, Any]) -> None:
    """Create ``dest`` and write the aggregate's files atomically."""
    from rlopt.report.plots import _interval_plot, _profile

    rows = [[arm, env, score] for arm, entry in report["arms"].items()
            for env, part in entry["per_env"].items() for score in part["scores"]]
    arms = ranked_arms(report)
    gap_order = sorted(arms, key=lambda a: (report["arms"][a]["optimality_gap"] is None,
                                            report["arms"][a]["optimality_gap"] or 0.0))
    plots = {
        "iqm.png": _interval_plot(report, arms, "iqm", "iqm_ci", "normalised score (higher is better)",
                                  f"IQM of the normalised scores over every env: each run (dots), {CONFIDENCE:.0%} "
                                  "stratified bootstrap CI", dots=True),
        "optimality_gap.png": _interval_plot(report, gap_order, "optimality_gap", "optimality_gap_ci",
                                             "optimality gap (lower is better)",
                                             f"Optimality gap over every env, {CONFIDENCE:.0%} stratified bootstrap CI"),
        "profile.png": _profile(report),
    }
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "scores.csv", _table(AGGREGATE_SCORE_COLUMNS, rows))
    for name, data in plots.items():
        atomic_write_bytes(dest / name, data)
    atomic_write_text(dest / "report.md", aggregate_markdown(report))
    atomic_write_text(dest / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
