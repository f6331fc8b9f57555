"""The report's PNG plots, readable at 20+ arms: ``curves.png`` (IQM learning curves with bootstrap
bands), ``final.png`` (per-seed dots and IQM with CI; a symlog axis when the arms' ranges differ by
orders of magnitude), ``poi.png`` (probability of improvement over the baseline) and ``profile.png``
(performance profiles: the fraction of runs scoring above τ, with bootstrap bands; Agarwal et al.
2021, fig. 5).

Every arm keeps one colour and line style in every plot, unique up to ``len(tab20) × len(LINE_STYLES)``
arms; the legend sits outside the axes, the baseline is drawn thicker and named, long titles wrap.
matplotlib's object-oriented API on an Agg canvas (no pyplot, no global backend state), imported only
when a plot is drawn. Pure: report dict in, PNG bytes out.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

import numpy as np

from rlopt.report.render import ranked_arms
from rlopt.stats import CONFIDENCE

PLOT_DPI = 120
"""Resolution of the PNG plots."""
FIGURE_WIDTH = 7.0
"""Width of the interval plots in inches."""
LEGEND_FIGURE_WIDTH = 10.0
"""Width of the plots with a legend outside the axes (curves, profile) in inches."""
TITLE_CHARS_PER_INCH = 7.5
"""Title characters per inch of figure width before the title wraps (medium font at 120 dpi)."""
PALETTE_SIZE = 20
"""Colours of matplotlib's ``tab20`` palette."""
LINE_STYLES = ("-", "--", ":", "-.")
"""Line styles cycled after each round of the palette: unique pairs for up to 80 arms."""
SYMLOG_SPREAD = 10.0
"""final.png switches to a symlog axis when the whole score range exceeds this many times the median
arm's range (e.g. Pendulum's failing arms at -1600 beside the learning arms' -150 to -400)."""
PROFILE_POINTS = 200
"""Thresholds τ on the performance-profile grid."""


def arm_styles(arms: list[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """One (RGBA colour, line style) per arm, by position: tab20 first, then the next line style."""
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    return {arm: (tuple(palette[i % PALETTE_SIZE]), LINE_STYLES[(i // PALETTE_SIZE) % len(LINE_STYLES)])
            for i, arm in enumerate(arms)}


def _title(text: str, width: float) -> str:
    return textwrap.fill(text, int(TITLE_CHARS_PER_INCH * width))


def _label(report: dict[str, Any], arm: str) -> str:
    return f"{arm} (n={report['arms'][arm]['n']})" + (" — baseline" if arm == report["baseline"] else "")


def _figure(height: float, width: float = FIGURE_WIDTH) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _legend(ax: Any, count: int) -> None:
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              ncols=1 if count <= 24 else 2)


def _line_plot(report: dict[str, Any], series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
               xlabel: str, ylabel: str, title: str, empty: str) -> bytes:
    """One line + band per arm, legend outside, the baseline thicker."""
    styles = arm_styles(list(report["arms"]))
    figure = _figure(4.5 if len(series) <= 12 else 4.5 + 0.12 * (len(series) - 12), LEGEND_FIGURE_WIDTH)
    ax = figure.add_subplot()
    for arm, (x, center, low, high) in series.items():
        color, style = styles[arm]
        base = arm == report["baseline"]
        ax.plot(x, center, color=color, linestyle=style, linewidth=2.6 if base else 1.4, label=_label(report, arm),
                zorder=3 if base else 2)
        ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    if series:
        _legend(ax, len(series))
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_title(title, LEGEND_FIGURE_WIDTH * 0.7))  # the axes leave ~30% of the width to the legend
    return _png(figure)


def _curves(report: dict[str, Any], tag: str | None) -> bytes:
    series = {}
    for arm, entry in report["arms"].items():
        curve = entry["curve"]
        if curve["steps"]:
            as_array = [np.asarray([np.nan if v is None else v for v in curve[k]], dtype=np.float64)
                        for k in ("iqm", "ci_low", "ci_high")]
            series[arm] = (np.asarray(curve["steps"], dtype=np.float64), *as_array)
    return _line_plot(report, series, "env steps", f"IQM of {tag}" if tag else "IQM",
                      f"Learning curves: IQM with {CONFIDENCE:.0%} bootstrap band", "no learning curves")


def profile_bands(scores: np.ndarray, taus: np.ndarray, mode: str, reps: int, seed: int) -> tuple[np.ndarray, ...]:
    """Fraction of ``scores`` above each τ (below for mode min) and its percentile-bootstrap band over
    ``reps`` resamples of the runs; the band is the point curve when there is one score."""
    beyond = (scores[:, None] > taus[None, :]) if mode == "max" else (scores[:, None] < taus[None, :])
    center = beyond.mean(axis=0)
    if scores.size < 2:
        return center, center.copy(), center.copy()
    picks = np.random.default_rng(seed).integers(0, scores.size, size=(reps, scores.size))
    counts = np.stack([np.bincount(row, minlength=scores.size) for row in picks])  # reps x runs
    fractions = counts @ beyond.astype(np.float64) / scores.size  # reps x taus
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(fractions, [alpha, 1.0 - alpha], axis=0)
    return center, low, high


def _profile(report: dict[str, Any]) -> bytes:
    mode, boot = report.get("metric_mode", "max"), report["bootstrap"]
    every = [s for entry in report["arms"].values() for s in entry["scores"]]
    series = {}
    if every:
        lo, hi = min(every), max(every)
        pad = 0.02 * (hi - lo) if hi > lo else 1.0
        taus = np.linspace(lo - pad, hi + pad, PROFILE_POINTS)
        for arm, entry in report["arms"].items():
            if entry["scores"]:
                scores = np.asarray(entry["scores"], dtype=np.float64)
                series[arm] = (taus, *profile_bands(scores, taus, mode, boot.get("curve_reps", boot["reps"]), boot["seed"]))
    relation = ">" if mode == "max" else "<"
    return _line_plot(report, series, f"τ ({report['metric']})", f"fraction of runs with score {relation} τ",
                      f"Performance profiles: fraction of runs {relation} τ with {CONFIDENCE:.0%} bootstrap band "
                      "(Agarwal et al. 2021)", "no scores")


def _needs_symlog(report: dict[str, Any]) -> float | None:
    """The symlog linear threshold when the score range dwarfs the typical arm's range, else None."""
    every = [s for entry in report["arms"].values() for s in entry["scores"]]
    spans = [max(e["scores"]) - min(e["scores"]) for e in report["arms"].values() if len(e["scores"]) > 1]
    spans = [s for s in spans if s > 0]
    if not every or not spans:
        return None
    typical = float(np.median(spans))
    return typical if max(every) - min(every) > SYMLOG_SPREAD * typical else None


def _interval_plot(report: dict[str, Any], arms: list[str], key: str, ci_key: str, xlabel: str, title: str,
                   reference: float | None = None, dots: bool = False) -> bytes:
    """Horizontal point + CI per arm (best on top), optionally each seed's score as a dot; with a
    ``reference`` the axis is a probability. The baseline's label is bold and marked."""
    styles = arm_styles(list(report["arms"]))
    figure = _figure(1.4 + 0.32 * max(1, len(arms)))
    ax = figure.add_subplot()
    shown = [a for a in arms if report["arms"][a][key] is not None]
    jitter = np.random.default_rng(0)
    for row, arm in enumerate(reversed(shown)):
        entry = report["arms"][arm]
        color = styles[arm][0]
        if dots:
            scores = np.asarray(entry["scores"], dtype=np.float64)
            ax.scatter(scores, row + jitter.uniform(-0.2, 0.2, scores.size), s=16, color=color, alpha=0.85,
                       edgecolors="dimgrey", linewidths=0.4, zorder=2)
        point, ci = entry[key], entry[ci_key] or [entry[key], entry[key]]
        ax.errorbar([point], [row], xerr=[[point - ci[0]], [ci[1] - point]], fmt="D" if dots else "o", capsize=4,
                    color="black" if dots else color, markerfacecolor=color, zorder=3)
    names = [f"{a} (baseline)" if a == report["baseline"] else a for a in reversed(shown)]
    ax.set_yticks(range(len(shown)), names)
    for label in ax.get_yticklabels():
        if label.get_text().endswith("(baseline)"):
            label.set_fontweight("bold")
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(-0.02, 1.02)
    elif dots and (threshold := _needs_symlog(report)) is not None:
        ax.set_xscale("symlog", linthresh=threshold)
        xlabel += f" (symlog, linear within ±{threshold:.3g})"
    if not shown:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_title(_title(title, FIGURE_WIDTH))
    return _png(figure)


def render_plots(report: dict[str, Any], tag: str | None) -> dict[str, bytes]:
    """curves.png, final.png, poi.png and profile.png as PNG bytes."""
    arms = ranked_arms(report)
    base, metric = report["baseline"], report["metric"]
    better = "lower" if report.get("metric_mode", "max") == "min" else "higher"
    return {
        "curves.png": _curves(report, tag),
        "final.png": _interval_plot(report, arms, "iqm", "iqm_ci", f"{metric} ({better} is better)",
                                    f"Final {metric}: each seed (dots) and the IQM with its {CONFIDENCE:.0%} CI",
                                    dots=True),
        "poi.png": _interval_plot(report, [a for a in arms if a != base], "poi_vs_baseline", "poi_ci",
                                  f"P(arm > {base})", f"Probability of improvement over the baseline {base}, "
                                  f"with {CONFIDENCE:.0%} CI", reference=0.5),
        "profile.png": _profile(report),
    }
