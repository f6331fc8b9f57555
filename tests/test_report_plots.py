"""Plots readable at 20+ arms: a unique colour/line-style pair per arm, four PNGs with sane sizes, the
symlog switch of final.png, and the performance-profile bands against hand values."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from rlopt.report.build import REPORT_DIR, build_report
from rlopt.report.plots import LINE_STYLES, PALETTE_SIZE, _needs_symlog, arm_styles, profile_bands, render_plots
from tests.test_report import PNG_SIGNATURE, _make_sweep


def _report(count: int, spread: float = 1.0) -> dict[str, Any]:
    """A report dict of ``count`` arms with 5 scores each; arm i scores around i * spread."""
    arms = {}
    for i in range(count):
        scores = [i * spread + d for d in (0.0, 1.0, 2.0, 3.0, 4.0)]
        steps = [0, 50, 100]
        arms[f"arm_with_a_long_name_{i:02d}"] = {
            "n": 5, "scores": scores, "iqm": float(np.mean(scores[1:4])), "iqm_ci": [scores[1], scores[3]],
            "poi_vs_baseline": 0.5, "poi_ci": [0.3, 0.7],
            "curve": {"steps": steps, "iqm": [0.0, i, 2 * i], "ci_low": [0.0, i - 1, 2 * i - 1], "ci_high": [0.0, i + 1, 2 * i + 1]},
        }
    return {"metric": "eval_return_mean", "metric_mode": "max", "baseline": next(iter(arms)),
            "bootstrap": {"method": "percentile", "reps": 100, "curve_reps": 100, "seed": 0}, "arms": arms}


def test_every_arm_has_its_own_colour_and_style_up_to_eighty_arms() -> None:
    styles = arm_styles([f"a{i}" for i in range(PALETTE_SIZE * len(LINE_STYLES))])
    assert len(set(styles.values())) == PALETTE_SIZE * len(LINE_STYLES)
    assert styles["a0"][1] == "-" and styles["a20"][1] == "--" and styles["a0"][0] == styles["a20"][0]
    assert len({colour for colour, _ in styles.values()}) == PALETTE_SIZE


def test_plots_of_twenty_five_arms_are_pngs_of_sane_size() -> None:
    plots = render_plots(_report(25), "rollout/episode_return")
    assert set(plots) == {"curves.png", "final.png", "poi.png", "profile.png"}
    for name, data in plots.items():
        assert data.startswith(PNG_SIGNATURE), name
        height, width = matplotlib.image.imread(io.BytesIO(data)).shape[:2]
        assert 800 <= width <= 1400 and 400 <= height <= 1600, (name, width, height)


def test_final_plot_switches_to_symlog_only_when_ranges_differ_by_orders_of_magnitude() -> None:
    assert _needs_symlog(_report(3, spread=1.0)) is None  # arms overlap: a linear axis
    wide = _needs_symlog(_report(3, spread=1000.0))  # spans of 4 beside a range of 2004
    assert wide == pytest.approx(4.0)


def test_profile_bands_by_hand() -> None:
    taus = np.array([0.0, 2.5, 5.0])
    center, low, high = profile_bands(np.array([1.0, 2.0, 3.0, 4.0]), taus, "max", reps=500, seed=0)
    np.testing.assert_allclose(center, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(low[[0, 2]], [1.0, 0.0])
    np.testing.assert_allclose(high[[0, 2]], [1.0, 0.0])
    assert low[1] < 0.5 < high[1]
    below, _, _ = profile_bands(np.array([1.0, 2.0, 3.0, 4.0]), taus, "min", reps=10, seed=0)
    np.testing.assert_allclose(below, [0.0, 0.5, 1.0])
    single = profile_bands(np.array([2.0]), taus, "max", reps=10, seed=0)
    assert all(np.array_equal(single[0], band) for band in single[1:])


def test_report_writes_the_four_plots_and_links_them(tmp_path: Path) -> None:
    out = _make_sweep(tmp_path / "s")
    build_report(out, reps=100, curve_reps=50)
    text = (out / REPORT_DIR / "report.md").read_text()
    for name in ("curves.png", "final.png", "poi.png", "profile.png"):
        assert f"]({name})" in text
        assert matplotlib.image.imread(out / REPORT_DIR / name).shape[1] >= 800


def test_final_plot_zooms_on_the_arms_that_learn_when_the_range_is_symlog() -> None:
    from rlopt.report.plots import learning_arms

    wide = _report(4, spread=1000.0)  # IQMs 2, 1002, 2002, 3002: midpoint 1502
    arms = list(wide["arms"])
    assert learning_arms(wide, arms) == arms[2:]
    assert learning_arms({**wide, "metric_mode": "min"}, arms) == arms[:2]
    zoomed = matplotlib.image.imread(io.BytesIO(render_plots(wide, None)["final.png"])).shape[1]
    plain = matplotlib.image.imread(io.BytesIO(render_plots(_report(4), None)["final.png"])).shape[1]
    assert zoomed > plain  # a second, linear panel beside the symlog one
