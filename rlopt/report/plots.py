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
import json
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
COLUMN_WIDTH = 6.0
"""Width in inches added per extra column of a panel plot (the evaluation curves)."""
ROW_HEIGHT = 3.6
"""Height in inches of one panel row (more when its legend is longer)."""
PALETTE_SIZE = 20
"""Colours of matplotlib's ``tab20`` palette."""
LINE_STYLES = ("-", "--", ":", "-.")
"""Line styles cycled after each round of the palette: unique pairs for up to 80 arms."""
SYMLOG_SPREAD = 10.0
"""final.png switches to a symlog axis when the whole score range exceeds this many times the median
arm's range (e.g. Pendulum's failing arms at -1600 beside the learning arms' -150 to -400)."""
ZOOM_WIDTH = 5.0
"""Width in inches of final.png's zoom panel on the arms that learn."""
PROFILE_POINTS = 200
"""Thresholds τ on the performance-profile grid."""


def arm_styles(arms: list[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """One (RGBA colour, line style) per arm, by position: tab20's ten strong colours, its ten light ones,
    then the next line style (so that the first ten arms never share a hue)."""
    from matplotlib import colormaps

    colors = colormaps["tab20"].colors
    palette = [colors[i] for i in range(0, PALETTE_SIZE, 2)] + [colors[i] for i in range(1, PALETTE_SIZE, 2)]
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


def _legend(ax: Any, count: int, handles: list[Any] | None = None) -> None:
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              ncols=1 if count <= 24 else 2)


Series = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
"""Arm -> (x, centre, band low, band high) of one column of a panel plot."""


def panel_rows(report: dict[str, Any]) -> list[tuple[str | None, list[str]]]:
    """(panel name, arms) per row: report.json's ``panels`` with the baseline added to each, else one row of every arm."""
    arms, base = list(report["arms"]), report["baseline"]
    panels = report.get("panels")
    if not panels:
        return [(None, arms)]
    return [(name, [a for a in arms if a in members or a == base]) for name, members in panels.items()]


def _panel_plot(report: dict[str, Any], columns: list[tuple[Series, str, str, str]], title: str, empty: str) -> bytes:
    """One row per panel, one column per ``(series, xlabel, ylabel, column title)``: a line + band per arm,
    the baseline thicker, one legend per row outside the axes."""
    from matplotlib.lines import Line2D

    styles = arm_styles(list(report["arms"]))
    rows = panel_rows(report)
    width = LEGEND_FIGURE_WIDTH + COLUMN_WIDTH * (len(columns) - 1)
    heights = [max(ROW_HEIGHT, 0.2 * len(arms)) for _, arms in rows]
    figure = _figure(sum(heights) + 0.9 if len(rows) > 1 else max(4.5, heights[0] + 0.9), width)
    grid = figure.add_gridspec(len(rows), len(columns), height_ratios=heights)
    first: list[Any] = []  # the panels of one column share their axes, so that the rows compare at a glance
    for r, (panel, arms) in enumerate(rows):
        for c, (series, xlabel, ylabel, heading) in enumerate(columns):
            ax = figure.add_subplot(grid[r, c], sharex=first[c] if r else None, sharey=first[c] if r else None)
            first += [ax] if r == 0 else []
            shown = [a for a in arms if a in series]
            for arm in shown:
                x, center, low, high = series[arm]
                color, style = styles[arm]
                base = arm == report["baseline"]
                ax.plot(x, center, color=color, linestyle=style, linewidth=2.6 if base else 1.4,
                        label=_label(report, arm), zorder=3 if base else 2)
                ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
            if not shown:
                ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
            listed = [a for a in arms if any(a in series for series, *_ in columns)]
            if c == len(columns) - 1 and listed:  # one legend per row: every arm drawn in any column
                _legend(ax, len(listed), [Line2D([], [], color=styles[a][0], linestyle=styles[a][1], label=_label(report, a),
                                                 linewidth=2.6 if a == report["baseline"] else 1.4) for a in listed])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            parts = [p for p in (heading, None if panel is None else f"panel {panel}") if p]
            if parts:
                ax.set_title(_title(": ".join(parts), (width - 3.0) / len(columns)), fontsize="medium")
    figure.suptitle(_title(title, width * 0.9))
    return _png(figure)


def _as_series(curve: dict[str, list[Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    as_array = [np.asarray([np.nan if v is None else v for v in curve[k]], dtype=np.float64)
                for k in ("iqm", "ci_low", "ci_high")]
    return (np.asarray(curve["steps"], dtype=np.float64), *as_array)


def _curves(report: dict[str, Any], tag: str | None) -> bytes:
    training = {arm: _as_series(e["curve"]) for arm, e in report["arms"].items() if e["curve"]["steps"]}
    columns = [(training, "env steps", f"IQM of {tag}" if tag else "IQM", "training" if report.get("eval_tag") else "")]
    if report.get("eval_tag"):
        evaluated = {arm: _as_series(e["eval_curve"]) for arm, e in report["arms"].items() if e["eval_curve"]["steps"]}
        columns.append((evaluated, "env steps", f"IQM of {report['eval_tag']}", "evaluation during training"))
    return _panel_plot(report, columns, f"Learning curves: IQM with {CONFIDENCE:.0%} bootstrap band",
                       "no learning curves")


def profile_bands(scores: np.ndarray, taus: np.ndarray, mode: str, reps: int, seed: int) -> tuple[np.ndarray, ...]:
    """Fraction of ``scores`` above each τ (below for mode min) and its percentile-bootstrap band over
    ``reps`` resamples of the runs; the band is the point curve when there is one score."""
    beyond = (scores[:, None] > taus[None, :]) if mode == "max" else (scores[:, None] < taus[None, :])
    center = beyond.mean(axis=0)
    if scores.size < 2:
        return center, center.copy(), center.copy()
    picks = np.random.default_rng(seed).integers(0, scores.size, size=(reps, scores.size))
    offsets = (np.arange(reps)[:, None] * scores.size + picks).ravel()  # one bincount for every resample
    counts = np.bincount(offsets, minlength=reps * scores.size).reshape(reps, scores.size)  # reps x runs
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
    return _panel_plot(report, [(series, f"τ ({report['metric']})", f"fraction of runs with score {relation} τ", "")],
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


def learning_arms(report: dict[str, Any], arms: list[str]) -> list[str]:
    """The arms of final.png's zoom: IQM on the better side of the midpoint between the best and worst IQM."""
    values = [report["arms"][a]["iqm"] for a in arms if report["arms"][a]["iqm"] is not None]
    if not values:
        return []
    middle = (max(values) + min(values)) / 2.0
    better = (lambda v: v > middle) if report.get("metric_mode", "max") == "max" else (lambda v: v < middle)
    return [a for a in arms if report["arms"][a]["iqm"] is not None and better(report["arms"][a]["iqm"])]


def _draw_intervals(ax: Any, report: dict[str, Any], shown: list[str], key: str, ci_key: str, dots: bool) -> None:
    """Point + CI per arm on rows (first arm on top), optionally each seed's score as a jittered dot; bold baseline."""
    styles = arm_styles(list(report["arms"]))
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
    if not shown:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def _interval_plot(report: dict[str, Any], arms: list[str], key: str, ci_key: str, xlabel: str, title: str,
                   reference: float | None = None, dots: bool = False) -> bytes:
    """Horizontal point + CI per arm (best on top), optionally each seed's score as a dot; with a
    ``reference`` the axis is a probability. When the scores' range dwarfs the arms' own ranges
    (:func:`_needs_symlog`), the axis is symlog and a second panel zooms on the :func:`learning_arms`."""
    shown = [a for a in arms if report["arms"][a][key] is not None]
    threshold = _needs_symlog(report) if dots and reference is None else None
    zoom = learning_arms(report, shown) if threshold is not None else []
    width = FIGURE_WIDTH + (ZOOM_WIDTH if zoom else 0.0)
    figure = _figure(1.4 + 0.32 * max(1, len(shown)), width)
    ax = figure.add_subplot(1, 2, 1) if zoom else figure.add_subplot()
    _draw_intervals(ax, report, shown, key, ci_key, dots)
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(-0.02, 1.02)
    elif threshold is not None:
        ax.set_xscale("symlog", linthresh=threshold)
        ax.set_xlabel(f"{xlabel} (symlog, linear within ±{threshold:.3g})")
    if threshold is None:
        ax.set_xlabel(xlabel)
    if zoom:
        inner = figure.add_subplot(1, 2, 2)
        _draw_intervals(inner, report, zoom, key, ci_key, dots)
        inner.set_xlabel(f"{xlabel} (linear)")
        inner.set_title(_title(f"zoom: the {len(zoom)} arm(s) with IQM past the midpoint of the IQMs", ZOOM_WIDTH),
                        fontsize="medium")
    figure.suptitle(_title(title, width))
    return _png(figure)


def _tick(encoded: str) -> str:
    """A categorical grid value as a tick label: a string bare, anything else as JSON."""
    value = json.loads(encoded)
    return value if isinstance(value, str) else encoded


def _sensitivity(report: dict[str, Any]) -> bytes:
    """sensitivity.png: per grid key, IQM with its CI against the key's value, one line per group (variant);
    a log axis when the values span decades; the value ``--select`` chose on the selection seeds starred."""
    from rlopt.report.grid import is_numeric, log_axis

    lines, keys = report["grid"]["sensitivity"], report["grid"]["keys"]
    chosen = report.get("select") or {}
    styles = arm_styles(list(dict.fromkeys(line["group"] for line in lines)))
    figure = _figure(ROW_HEIGHT * len(keys) + 0.9, LEGEND_FIGURE_WIDTH)
    for i, key in enumerate(keys):
        ax = figure.add_subplot(len(keys), 1, i + 1)
        mine = [line for line in lines if line["key"] == key]
        values = [v for line in mine for v in line["values"]]
        numeric = is_numeric(values)
        order = list(dict.fromkeys(json.dumps(v, sort_keys=True) for v in values))
        for line in mine:
            x = np.asarray(line["values"] if numeric else [order.index(json.dumps(v, sort_keys=True)) for v in line["values"]],
                           dtype=np.float64)
            y = np.asarray([np.nan if v is None else v for v in line["iqm"]], dtype=np.float64)
            ci = np.asarray([[np.nan, np.nan] if c is None else c for c in line["iqm_ci"]], dtype=np.float64).reshape(-1, 2)
            color, style = styles[line["group"]]
            ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], color=color, linestyle=style, marker="o", capsize=3,
                        label=line["group"])
            picked = (chosen.get("groups") or {}).get(line["group"]) if chosen.get("key") == key else None
            if picked and picked["selected_arm"] in line["arms"]:
                j = line["arms"].index(picked["selected_arm"])
                ax.scatter([x[j]], [y[j]], marker="*", s=180, color=color, edgecolors="black", zorder=4)
        if log_axis(values):
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(order)), [_tick(v) for v in order])
        ax.set_xlabel(key + (" (★ chosen by --select on the selection seeds)" if chosen.get("key") == key else ""))
        ax.set_ylabel(f"IQM of {report['metric']}")
        _legend(ax, len(mine))
    figure.suptitle(_title(f"Sensitivity: IQM with {CONFIDENCE:.0%} bootstrap CI against each grid value",
                           LEGEND_FIGURE_WIDTH * 0.9))
    return _png(figure)


def render_plots(report: dict[str, Any], tag: str | None) -> dict[str, bytes]:
    """curves.png, final.png, poi.png, profile.png and, for a sweep with a grid, sensitivity.png as PNG bytes."""
    arms = ranked_arms(report)
    base, metric = report["baseline"], report["metric"]
    better = "lower" if report.get("metric_mode", "max") == "min" else "higher"
    plots = {
        "curves.png": _curves(report, tag),
        "final.png": _interval_plot(report, arms, "iqm", "iqm_ci", f"{metric} ({better} is better)",
                                    f"Final {metric}: each seed (dots) and the IQM with its {CONFIDENCE:.0%} CI",
                                    dots=True),
        "poi.png": _interval_plot(report, [a for a in arms if a != base], "poi_vs_baseline", "poi_ci",
                                  f"P(arm > {base})", f"Probability of improvement over the baseline {base}, "
                                  f"with {CONFIDENCE:.0%} CI", reference=0.5),
        "profile.png": _profile(report),
    }
    if report.get("grid"):
        plots["sensitivity.png"] = _sensitivity(report)
    return plots
