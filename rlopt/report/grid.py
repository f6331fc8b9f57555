"""The grid part of a sweep's report: sensitivity of the IQM to each grid key, and ``--select KEY``,
the per-variant choice of KEY's value on half of the seeds reported on the other half.

A sweep's ``grid:`` (read from the frozen ``OUT/sweep.yaml``) crosses every variant with every
combination of the grid values; each arm's values are in its manifest ``overrides``. For a grid key
K, a *group* is a variant with the other grid keys fixed: its arms differ only in K. The group's label
is the arm name without its ``K=...`` entry (``adam`` for ``adam__actor.optim.lr=0.001``; ``all`` when
nothing is left).

``--select K`` (no winner's curse): the sweep's planned seeds, sorted, are split by position: even
positions (1st, 3rd, ...) are the *selection* seeds, odd positions the *held-out* seeds. In each group
the value of K whose arm has the best IQM on the selection seeds is chosen (ties: the first in grid
order), and its scores on the held-out seeds — which played no part in the choice — are reported:
IQM with a bootstrap CI and P(improvement) over the held-out scores of the baseline arm's group.

Pure functions of the report dict (no files); :mod:`~rlopt.report.build` calls :func:`add_grid`.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from rlopt.errors import ConfigError, short_repr
from rlopt.report.compare import MIN_RUNS_FOR_CI, interval
from rlopt.stats import iqm, poi_ci, probability_of_improvement

ARM_SEPARATOR = "__"
"""Separates the variant from the grid entries in an arm name (rlopt.sweep.spec.ARM_SEPARATOR)."""
ALL_GROUP = "all"
"""The label of the only group of a grid of one key without variants."""
SPLIT = "sorted planned seeds: even positions select the value, odd positions are held out and reported"
"""``select.split`` in report.json: how the seeds are divided."""
LOG_DECADES = 2.0
"""sensitivity.png uses a log x axis when positive grid values span at least this many decades."""


def grid_of(sweep_file: dict[str, Any]) -> dict[str, list[Any]]:
    """The sweep file's ``grid:`` as ``{key: [values]}`` ({} without a grid or when malformed)."""
    grid = sweep_file.get("grid") or {}
    if not isinstance(grid, dict):
        return {}
    return {str(k): list(v) for k, v in grid.items() if isinstance(v, list) and v}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def is_numeric(values: Sequence[Any]) -> bool:
    """Every value is an int or float (not a bool)."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def log_axis(values: Sequence[Any]) -> bool:
    """Numeric, all positive, spanning at least :data:`LOG_DECADES` decades."""
    if not values or not is_numeric(values) or min(values) <= 0:
        return False
    return bool(np.log10(max(values) / min(values)) >= LOG_DECADES)


def arm_grid_values(report: dict[str, Any], grid: dict[str, list[Any]], variants: bool) -> dict[str, dict[str, Any]]:
    """Per arm ``{variant, values {key: value}}`` from its overrides; arms missing a grid key are left out."""
    info = {}
    for arm, entry in report["arms"].items():
        overrides = entry.get("overrides") or {}
        if all(key in overrides for key in grid):
            info[arm] = {"variant": arm.split(ARM_SEPARATOR)[0] if variants else None,
                         "values": {key: overrides[key] for key in grid}}
    return info


def groups_for(key: str, grid: dict[str, list[Any]], info: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Group label -> its arms in the order of ``grid[key]``: arms equal in everything but ``key``."""
    groups: dict[str, list[str]] = {}
    for arm, item in info.items():
        parts = [item["variant"]] if item["variant"] else []
        parts += [f"{k}={_text(v)}" for k, v in item["values"].items() if k != key]
        groups.setdefault(ARM_SEPARATOR.join(parts) or ALL_GROUP, []).append(arm)
    order = [_text(v) for v in grid[key]]
    for arms in groups.values():
        arms.sort(key=lambda a: order.index(_text(info[a]["values"][key])) if _text(info[a]["values"][key]) in order
                  else len(order))
    return groups


def sensitivity(report: dict[str, Any], grid: dict[str, list[Any]], info: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per grid key and group: the key's values, the arms, their IQMs and IQM CIs (report.json ``grid.sensitivity``)."""
    lines = []
    for key in grid:
        for group, arms in groups_for(key, grid, info).items():
            lines.append({"key": key, "group": group, "values": [info[a]["values"][key] for a in arms], "arms": arms,
                          "iqm": [report["arms"][a]["iqm"] for a in arms],
                          "iqm_ci": [report["arms"][a]["iqm_ci"] for a in arms],
                          "log_x": log_axis([info[a]["values"][key] for a in arms])})
    return lines


def split_seeds(seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """(selection seeds, held-out seeds): the sorted seeds at even and at odd positions."""
    ordered = sorted(set(seeds))
    return ordered[0::2], ordered[1::2]


def _heldout(scores: dict[int, float], seeds: list[int], reps: int, seed: int) -> dict[str, Any]:
    kept = [s for s in seeds if s in scores]
    values = [scores[s] for s in kept]
    return {"n": len(values), "seeds": kept, "scores": values, "iqm": float(iqm(values)) if values else None,
            "iqm_ci": interval(values, reps, seed), "mean": float(np.mean(values)) if values else None}


def select(report: dict[str, Any], key: str, grid: dict[str, list[Any]], info: dict[str, dict[str, Any]],
           by_seed: dict[str, dict[int, float]], seeds: Sequence[int], reps: int, seed: int,
           warnings: list[str]) -> dict[str, Any]:
    """report.json's ``select``: per group the value of ``key`` chosen on the selection seeds and its held-out statistics."""
    if not grid:
        raise ConfigError("--select: the sweep has no grid: (OUT/sweep.yaml); nothing to select")
    if key not in grid:
        raise ConfigError(f"--select: {short_repr(key)} is not a grid key; grid keys: {', '.join(grid)}")
    chosen_seeds, held_seeds = split_seeds(seeds)
    if not held_seeds:
        raise ConfigError(f"--select needs at least 2 seeds to hold half out, the sweep plans {len(chosen_seeds)}")
    sign = 1.0 if report.get("metric_mode", "max") == "max" else -1.0
    groups: dict[str, dict[str, Any]] = {}
    baseline_group = None
    for group, arms in groups_for(key, grid, info).items():
        baseline_group = group if report["baseline"] in arms else baseline_group
        candidates = []
        for arm in arms:
            picked = [by_seed[arm][s] for s in chosen_seeds if s in by_seed[arm]]
            candidates.append({"arm": arm, "value": info[arm]["values"][key], "selection_n": len(picked),
                               "selection_iqm": float(iqm(picked)) if picked else None})
        scored = [c for c in candidates if c["selection_iqm"] is not None]
        best = max(scored, key=lambda c: sign * c["selection_iqm"], default=None)  # max keeps the first of ties
        if best is None:
            warnings.append(f"select {key}: group {group} has no score on the selection seeds; nothing selected")
        groups[group] = {"candidates": candidates, "selected_arm": best and best["arm"],
                         "selected_value": best and best["value"],
                         "heldout": _heldout(by_seed[best["arm"]] if best else {}, held_seeds, reps, seed),
                         "poi_vs_baseline_group": None, "poi_ci": None}
    base = groups.get(baseline_group or "")
    if base is not None and base["heldout"]["n"]:
        y = sign * np.asarray(base["heldout"]["scores"], dtype=np.float64)
        for group, entry in groups.items():
            x = sign * np.asarray(entry["heldout"]["scores"], dtype=np.float64)
            if group == baseline_group or x.size == 0:
                continue
            entry["poi_vs_baseline_group"] = float(probability_of_improvement(x, y))
            if x.size >= MIN_RUNS_FOR_CI and y.size >= MIN_RUNS_FOR_CI:
                entry["poi_ci"] = [float(v) for v in poi_ci(x, y, reps=reps, seed=seed)]
    return {"key": key, "split": SPLIT, "selection_seeds": chosen_seeds, "heldout_seeds": held_seeds,
            "baseline_group": baseline_group, "groups": groups}


def add_grid(report: dict[str, Any], sweep_file: dict[str, Any], by_seed: dict[str, dict[int, float]],
             seeds: Sequence[int], key: str | None, reps: int, seed: int, warnings: list[str]) -> None:
    """Set report.json's ``grid`` ({keys, arms, sensitivity}, null without a grid) and ``select`` (null without --select)."""
    grid = grid_of(sweep_file)
    variants = bool(sweep_file.get("variants"))
    info = arm_grid_values(report, grid, variants) if grid else {}
    report["grid"] = {"keys": list(grid), "arms": info, "sensitivity": sensitivity(report, grid, info)} if grid else None
    report["select"] = None if key is None else select(report, key, grid, info, by_seed, seeds, reps, seed, warnings)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def grid_markdown(report: dict[str, Any]) -> list[str]:
    """report.md's "Sensitivity" and "Selection" sections (empty without a grid / --select)."""
    lines: list[str] = []
    if report.get("grid"):
        lines += ["", "## Sensitivity", "", "IQM (95% CI) against each grid value, one line per variant "
                  f"(grid keys: {', '.join(report['grid']['keys'])}).", "", "![sensitivity](sensitivity.png)"]
    chosen = report.get("select")
    if chosen:
        key = chosen["key"]
        lines += ["", f"## Selection of `{key}` on held-out seeds", "",
                  f"Per variant the value of `{key}` with the best IQM on seeds {chosen['selection_seeds']} is "
                  f"chosen and reported on seeds {chosen['heldout_seeds']}, which played no part in the choice "
                  f"(baseline group: {chosen['baseline_group'] or '–'}).", "",
                  f"| group | selected {key} | selection IQM | held-out n | held-out IQM [95% CI] | P(> baseline group) |",
                  "|---|---|---:|---:|---:|---:|"]
        for group, entry in chosen["groups"].items():
            picked = next((c for c in entry["candidates"] if c["arm"] == entry["selected_arm"]), None)
            held = entry["heldout"]
            ci = "" if held["iqm_ci"] is None else f" [{held['iqm_ci'][0]:.4g}, {held['iqm_ci'][1]:.4g}]"
            poi = "baseline" if group == chosen["baseline_group"] else _num(entry["poi_vs_baseline_group"]) + (
                "" if entry["poi_ci"] is None else f" [{entry['poi_ci'][0]:.2f}, {entry['poi_ci'][1]:.2f}]")
            value = "–" if entry["selected_arm"] is None else _text(entry["selected_value"])
            lines.append(f"| {group} | {value} | {_num(picked and picked['selection_iqm'])} | {held['n']} | "
                         f"{_num(held['iqm'])}{ci} | {poi} |")
    return lines
