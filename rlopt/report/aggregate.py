"""``rlopt report OUT1 OUT2 ... --out DIR``: the same arms swept on different environments, aggregated.

Each sweep's scores are normalised per environment, ``(score - low) / (high - low)``, so that 0 is
``low`` and 1 is ``high``: ``low, high`` from ``--normalize ENV=LOW,HIGH``, else the sweep file's
``normalize: {env_id: [low, high]}``, else min–max over every finished run of that env (all arms; with
``metric_mode: min`` low = the largest score, so 1 is always the best). Per arm, over the normalised
scores of all envs pooled (Agarwal et al. 2021, sec. 4 and fig. 1; what rliable computes):

* ``iqm`` — interquartile mean; ``optimality_gap`` — mean of ``max(0, 1 - x)`` (the amount by which
  the arm falls short of the normalised target 1, :data:`GAP_TARGET`); lower is better;
* their 95% percentile-bootstrap CIs with a *stratified* bootstrap: each resample draws, within every
  env, as many runs as that env has, with replacement, so that every env keeps its weight.

The env of a sweep is the ``env_id`` in its runs' ``summary.json``. Refused in one line (exit 2),
nothing written: sweeps whose arms or metric differ, one env in two sweeps, a sweep over several envs,
and a DIR that exists and is not empty. Writes ``DIR/report.json``, ``report.md``, ``scores.csv`` and
``iqm.png``, ``optimality_gap.png``, ``profile.png`` (of the normalised scores).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rlopt.errors import ConfigError, short_repr
from rlopt.report.defaults import check_normalize
from rlopt.stats import BOOTSTRAP_METHOD, CONFIDENCE, iqm_along

GAP_TARGET = 1.0
"""The normalised score the optimality gap measures the shortfall from (γ in Agarwal et al. 2021)."""
STRATIFIED_METHOD = f"{BOOTSTRAP_METHOD}, stratified by env"
"""``bootstrap.method`` of an aggregate report."""
BATCH_ELEMENTS = 4_000_000
"""Upper bound on resampled scores held in memory at once."""


def parse_normalize(items: Sequence[str] | None) -> dict[str, list[float]]:
    """``--normalize ENV=LOW,HIGH`` (repeatable) as ``{env: [low, high]}``; a malformed item is a ConfigError."""
    parsed: dict[str, list[float]] = {}
    for item in items or []:
        env, _, pair = item.partition("=")
        try:
            low, high = (float(v) for v in pair.split(","))
        except ValueError:
            raise ConfigError(f"--normalize: {short_repr(item)} is not ENV=LOW,HIGH (e.g. CartPole-v1=0,500)") from None
        parsed[env] = [low, high]
    check_normalize(parsed, lambda message: ConfigError(f"--normalize: {message}"))
    return parsed


def optimality_gap_along(x: np.ndarray, axis: int = -1, target: float = GAP_TARGET) -> np.ndarray:
    """Mean of ``max(0, target - x)`` along ``axis`` (Agarwal et al. 2021)."""
    return np.mean(np.maximum(0.0, target - x), axis=axis)


def stratified_ci(strata: Sequence[np.ndarray], statistics: Sequence[Callable[..., np.ndarray]], reps: int, seed: int,
                  confidence: float = CONFIDENCE) -> list[tuple[float, float]]:
    """Percentile-bootstrap CIs of each ``statistic`` of the pooled scores, resampling runs within each stratum."""
    rng = np.random.default_rng(seed)
    total = sum(s.size for s in strata)
    chunk = max(1, BATCH_ELEMENTS // max(1, total))
    values: list[list[np.ndarray]] = [[] for _ in statistics]
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        pooled = np.concatenate([s[rng.integers(0, s.size, size=(size, s.size))] for s in strata], axis=1)
        for out, statistic in zip(values, statistics):
            out.append(statistic(pooled, axis=-1))
    tail = (1.0 - confidence) / 2.0
    return [tuple(float(q) for q in np.quantile(np.concatenate(v), [tail, 1.0 - tail])) for v in values]  # type: ignore[misc]


def _sweep(out: Path, mode: str | None) -> dict[str, Any]:
    """One sweep's metric, mode, baseline, env, sweep-file normalize and finished scores by arm."""
    from rlopt.report.build import SUMMARY, load_manifest, read_sweep_file

    manifest = load_manifest(out)
    metric, scores, envs = manifest["metric"], {arm: [] for arm in manifest["arms"]}, set()
    for run in manifest["runs"]:
        if run.get("status") != "finished" or run.get("arm") not in scores:
            continue
        try:
            summary = json.loads((out / str(run.get("run_dir", "")) / SUMMARY).read_text())
        except (OSError, ValueError):
            continue
        value = summary.get(metric) if isinstance(summary, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            scores[run["arm"]].append(float(value))
            envs.add(summary.get("env_id"))
    if len(envs) != 1 or None in envs:
        found = sorted(str(e) for e in envs)
        raise ConfigError(f"report: {out}: the finished runs' summary.json name {len(found)} env ids ({', '.join(found) or 'none'});"
                          " an aggregate needs one env per sweep")
    sweep_file = read_sweep_file(out)
    check_normalize(sweep_file.get("normalize"), lambda message: ConfigError(f"report: {out}/sweep.yaml: {message}"))
    return {"out": str(out), "name": manifest.get("name", out.name), "env": envs.pop(), "metric": metric,
            "mode": mode or manifest.get("metric_mode", "max"), "baseline": manifest.get("baseline"),
            "normalize": sweep_file.get("normalize") or {}, "scores": scores}


def _check(sweeps: list[dict[str, Any]], dest: Path) -> None:
    first = sweeps[0]
    for other in sweeps[1:]:
        for key, what in (("metric", "metric"), ("mode", "metric_mode")):
            if other[key] != first[key]:
                raise ConfigError(f"report: {other['out']} has {what} {other[key]}, {first['out']} has {first[key]}")
        if list(other["scores"]) != list(first["scores"]):
            extra = [a for a in other["scores"] if a not in first["scores"]] or [a for a in first["scores"] if a not in other["scores"]]
            what = f"arm {extra[0]} is in one and not the other" if extra else "the arms are in another order"
            raise ConfigError(f"report: {other['out']} and {first['out']} sweep different arms ({what}); aggregate the same arms")
    seen: dict[str, str] = {}
    for sweep in sweeps:
        if sweep["env"] in seen:
            raise ConfigError(f"report: {seen[sweep['env']]} and {sweep['out']} are both on {sweep['env']}; aggregate one sweep per env")
        seen[sweep["env"]] = sweep["out"]
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"report: --out {dest} exists and is not an empty directory; give a new one")


def _bounds(sweep: dict[str, Any], given: dict[str, list[float]], warnings: list[str]) -> dict[str, Any]:
    env = sweep["env"]
    if env in given:
        return {"low": given[env][0], "high": given[env][1], "source": "--normalize"}
    if env in sweep["normalize"]:
        low, high = sweep["normalize"][env]
        return {"low": float(low), "high": float(high), "source": "sweep file"}
    every = [s for scores in sweep["scores"].values() for s in scores]
    low, high = (min(every), max(every)) if sweep["mode"] == "max" else (max(every), min(every))
    if low == high:
        warnings.append(f"{env}: every run scored {low:g}; its normalised scores are 0")
    return {"low": low, "high": high, "source": "min-max over all runs"}


def aggregate(outs: Sequence[str | Path], dest: str | Path, reps: int, seed: int, baseline: str | None = None,
              mode: str | None = None, normalize: Sequence[str] | None = None) -> dict[str, Any]:
    """Aggregate sweeps ``outs`` into ``dest`` (report.json, report.md, scores.csv, PNGs); return the report dict."""
    from rlopt.report.aggregate_render import write_aggregate
    from rlopt.report.defaults import check_arguments

    dest = Path(dest)
    for out in outs:
        check_arguments(reps, seed, out, mode=mode)
    given = parse_normalize(normalize)
    sweeps = [_sweep(Path(out), mode) for out in outs]
    _check(sweeps, dest)
    arms = list(sweeps[0]["scores"])
    base = baseline if baseline is not None else sweeps[0]["baseline"] or arms[0]
    if base not in arms:
        raise ConfigError(f"--baseline: unknown arm {short_repr(base)}; arms: {', '.join(arms)}")
    warnings: list[str] = []
    bounds = {sweep["env"]: _bounds(sweep, given, warnings) for sweep in sweeps}
    entries = {}
    for arm in arms:
        strata, per_env = [], {}
        for sweep in sweeps:
            b = bounds[sweep["env"]]
            span = b["high"] - b["low"]
            x = np.asarray(sweep["scores"][arm], dtype=np.float64)
            x = (x - b["low"]) / span if span != 0 else np.zeros_like(x)
            per_env[sweep["env"]] = {"n": int(x.size), "iqm": float(iqm_along(x)) if x.size else None,
                                     "scores": [float(v) for v in x]}
            if x.size:
                strata.append(x)
            else:
                warnings.append(f"{arm}: no scores on {sweep['env']}; left out of its aggregate")
        pooled = np.concatenate(strata) if strata else np.zeros(0)
        cis = stratified_ci(strata, (iqm_along, optimality_gap_along), reps, seed) if pooled.size >= 2 else [None, None]
        entries[arm] = {
            "n": int(pooled.size), "per_env": per_env, "scores": [float(v) for v in pooled],
            "iqm": float(iqm_along(pooled)) if pooled.size else None, "iqm_ci": None if cis[0] is None else list(cis[0]),
            "optimality_gap": float(optimality_gap_along(pooled)) if pooled.size else None,
            "optimality_gap_ci": None if cis[1] is None else list(cis[1]),
        }
    report = {
        "aggregate": {"sweeps": [{"out": s["out"], "name": s["name"], "env": s["env"]} for s in sweeps],
                      "normalize": bounds, "metric": sweeps[0]["metric"], "metric_mode": sweeps[0]["mode"],
                      "gap_target": GAP_TARGET},
        "metric": f"normalised {sweeps[0]['metric']}", "metric_mode": "max", "baseline": base,
        "bootstrap": {"method": STRATIFIED_METHOD, "reps": int(reps), "curve_reps": int(reps), "seed": int(seed)},
        "arms": entries, "warnings": warnings,
    }
    try:
        write_aggregate(dest, report)
    except OSError as err:
        raise ConfigError(f"report: cannot write {dest} ({err.strerror or type(err).__name__})") from None
    return report
