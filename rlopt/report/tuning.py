"""The tuning part of a sweep's report: per tuned arm, the best trial, the expected best score against the
number of trials (Dodge et al. 2019, "Show Your Work"), and each trial's score against each parameter.

Reads ``OUT/tuning.json`` (written by :mod:`rlopt.sweep.tuning`; no Optuna needed here). Adds
``arms.<arm>.tuning = {trials, pruned, failed, best_params, best_value, expected_max: {k, mean, ci}}`` to the report and
writes ``tuning.png``, ``tuning_params.png`` and a "Tuning" section at the end of ``report.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import gammaln

from rlopt.files import atomic_write_bytes, atomic_write_text

TUNING_JSON = "tuning.json"
"""Written by the sweep driver into OUT (rlopt.sweep.tuning.TUNING_JSON)."""
CI_LEVEL = 0.95
"""Two-sided level of the percentile-bootstrap band of the expected maximum."""


def expected_max_weights(n: int) -> np.ndarray:
    """``W[k-1, i-1]`` = P(the max of k draws without replacement from n sorted values is the i-th smallest)
    = C(i-1, k-1) / C(n, k) (zero for i < k), for k, i = 1..n; computed in log space (no overflow)."""
    k = np.arange(1, n + 1)[:, None]
    i = np.arange(1, n + 1)[None, :]
    valid = i >= k
    ks, is_ = np.broadcast_arrays(k, i)
    log_w = np.full((n, n), -np.inf)
    a, b = is_[valid], ks[valid]
    log_w[valid] = (gammaln(a) - gammaln(b) - gammaln(a - b + 1)) - (gammaln(n + 1) - gammaln(b + 1) - gammaln(n - b + 1))
    return np.exp(log_w)


def expected_max(scores: Any) -> np.ndarray:
    """E[max of k trials drawn without replacement from ``scores``] for k = 1..n (Dodge et al. 2019, exact)."""
    x = np.sort(np.asarray(scores, dtype=np.float64))
    return expected_max_weights(x.size) @ x


def expected_max_ci(scores: Any, reps: int, seed: int, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap band of :func:`expected_max` (the trial scores resampled with replacement)."""
    x = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = np.sort(x[rng.integers(0, x.size, size=(reps, x.size))], axis=1)
    curves = samples @ expected_max_weights(x.size).T
    tail = (1.0 - level) / 2.0
    return np.quantile(curves, tail, axis=0), np.quantile(curves, 1.0 - tail, axis=0)


def read_tuning(out: Path) -> dict[str, Any] | None:
    """``OUT/tuning.json`` or None (a sweep without a search block, or a tuning.json that cannot be read)."""
    try:
        data = json.loads((out / TUNING_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tuning_entry(arm: dict[str, Any], reps: int, seed: int) -> dict[str, Any]:
    """The report's ``tuning`` of one arm from its tuning.json entry: the expected maximum and the score-vs-parameter
    points are over the finished trials (a pruned trial's value is of a partial curve; it is counted in ``pruned``)."""
    trials = arm.get("trials", [])
    complete = [t for t in trials if t.get("state") == "COMPLETE" and isinstance(t.get("value"), (int, float))
                and math.isfinite(t["value"])]  # fmt: skip
    values = [t["value"] for t in complete]
    expected: dict[str, Any] = {"k": [], "mean": [], "ci": []}
    if values:
        low, high = expected_max_ci(values, reps, seed)
        expected = {"k": list(range(1, len(values) + 1)), "mean": [float(v) for v in expected_max(values)],
                    "ci": [[float(a), float(b)] for a, b in zip(low, high)]}  # fmt: skip
    return {"trials": len(trials), "pruned": sum(t.get("state") == "PRUNED" for t in trials),
            "failed": sum(t.get("state") == "FAIL" for t in trials), "objective": arm.get("objective"),
            "best_params": arm.get("best_params"), "best_value": arm.get("best_value"),
            "expected_max": expected, "points": [[t.get("params", {}), t["value"]] for t in complete]}  # fmt: skip


def add_tuning(out: Path, report: dict[str, Any], reps: int, seed: int) -> None:
    """Put each tuned arm's ``tuning`` into ``report["arms"]`` (nothing for a sweep without tuning.json)."""
    data = read_tuning(out)
    for arm, entry in (data or {}).items():
        if arm in report["arms"] and isinstance(entry, dict):
            report["arms"][arm]["tuning"] = tuning_entry(entry, reps, seed)


def _tuned(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {arm: entry["tuning"] for arm, entry in report["arms"].items() if "tuning" in entry}


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def tuning_markdown(report: dict[str, Any]) -> str:
    """The "Tuning" section: per arm, trials, the best trial's score and parameters, expected max at k = n."""
    lines = ["", "## Tuning", "", "Each arm tuned on its own budget; expected best score vs trials (Dodge et al. 2019) "
             "in tuning.png, score vs parameter in tuning_params.png.", "",
             "| arm | trials (pruned, failed) | best trial score | expected max (n finished) | best parameters |",
             "|---|---|---|---|---|"]  # fmt: skip
    for arm, tuning in _tuned(report).items():
        params = ", ".join(f"{k}={_format(v)}" for k, v in (tuning["best_params"] or {}).items()) or "-"
        mean = tuning["expected_max"]["mean"]
        best = "-" if tuning["best_value"] is None else f"{tuning['best_value']:.4g}"
        counts = f"{tuning['trials']} ({tuning.get('pruned', 0)}, {tuning.get('failed', 0)})"
        lines.append(f"| {arm} | {counts} | {best} | {f'{mean[-1]:.4g}' if mean else '-'} | {params} |")
    return "\n".join(lines) + "\n\n![expected best score vs trials](tuning.png)\n\n![score vs parameter](tuning_params.png)\n"


def tuning_plots(report: dict[str, Any]) -> dict[str, bytes]:
    """``tuning.png`` (expected max vs trials, bands) and ``tuning_params.png`` (score vs each parameter, per arm)."""
    from rlopt.report.plots import _figure, _png

    tuned = _tuned(report)
    figure = _figure(3.5)
    axes = figure.add_subplot()
    for arm, tuning in tuned.items():
        expected = tuning["expected_max"]
        if expected["k"]:
            line = axes.plot(expected["k"], expected["mean"], marker=".", label=arm)[0]
            ci = np.asarray(expected["ci"])
            axes.fill_between(expected["k"], ci[:, 0], ci[:, 1], alpha=0.2, color=line.get_color())
    axes.set(xlabel="trials", ylabel="expected best trial score", title="Expected best score vs trials (Dodge et al. 2019)")
    axes.legend(fontsize="small")
    plots = {"tuning.png": _png(figure)}
    keys = {arm: sorted({k for params, _ in t["points"] for k in params}) for arm, t in tuned.items()}
    columns = max([len(k) for k in keys.values()] + [1])
    figure = _figure(2.5 * max(1, len(tuned)))
    for row, (arm, tuning) in enumerate(tuned.items()):
        for col, key in enumerate(keys[arm]):
            axes = figure.add_subplot(max(1, len(tuned)), columns, row * columns + col + 1)
            points = [(params[key], value) for params, value in tuning["points"] if key in params and value is not None]
            xs = [p for p, _ in points]
            if xs and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
                axes.scatter(xs, [v for _, v in points], s=12)
                if min(xs) > 0 and max(xs) / min(xs) > 100:
                    axes.set_xscale("log")
            elif xs:
                labels = sorted({json.dumps(x) for x in xs})
                axes.scatter([labels.index(json.dumps(x)) for x in xs], [v for _, v in points], s=12)
                axes.set_xticks(range(len(labels)), labels)
            axes.set_title(f"{arm}: {key}", fontsize="small")
    plots["tuning_params.png"] = _png(figure)
    return plots


def write_tuning(folder: Path, report: dict[str, Any]) -> None:
    """The tuning PNGs and the "Tuning" section appended to ``report.md`` (nothing when no arm was tuned)."""
    if not _tuned(report):
        return
    for name, data in tuning_plots(report).items():
        atomic_write_bytes(folder / name, data)
    markdown = folder / "report.md"
    atomic_write_text(markdown, markdown.read_text(encoding="utf-8") + tuning_markdown(report))
