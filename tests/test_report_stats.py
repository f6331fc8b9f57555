"""The report's added statistics against hand values and independent computations: Holm on a 4-arm
table, Wilson on k/n, Mann-Whitney against a brute-force count, the paired bootstrap, AUC on a
triangle, steps to a threshold on a hand curve; and metric_mode / threshold through build_report."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlopt.report.build import build_report
from rlopt.report.render import ranked_arms, table_rows
from rlopt.report.stats import (
    holm,
    mann_whitney_p,
    normalized_auc,
    paired_comparison,
    smooth,
    steps_to_threshold,
    wilson_interval,
)
from tests.test_report import _make_sweep


def test_holm_on_a_four_arm_table_by_hand() -> None:
    # Sorted: d .005, a .01, c .03, b .04 -> x4 = .02, x3 = .03, x2 = .06, x1 = .04 -> running max .06.
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "base": None})
    assert adjusted["base"] is None
    assert [adjusted[k] for k in "abcd"] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm({"a": 0.6, "b": 0.7}) == pytest.approx({"a": 1.0, "b": 1.0})  # capped at 1
    assert holm({}) == {}


def test_wilson_interval_textbook_values() -> None:
    # Brown, Cai & DasGupta (2001) / any table: 8 of 10 -> [0.490, 0.943]; 0 of 10 -> [0, 0.278].
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 0) is None
    # Independent: the interval's ends solve |p - k/n| = z sqrt(p(1-p)/n).
    z, k, n = 1.959963984540054, 3, 7
    for end in wilson_interval(k, n):
        assert abs(end - k / n) == pytest.approx(z * np.sqrt(end * (1 - end) / n))


def test_mann_whitney_p_matches_a_brute_force_permutation_count() -> None:
    x, y = [1.2, 3.4, 5.0, 7.1], [0.5, 2.2, 2.9, 4.0, 6.3]
    pooled = x + y

    def u_of(sample: tuple[float, ...]) -> int:
        rest = [v for v in pooled if v not in sample]
        return sum(a > b for a in sample for b in rest)

    observed = u_of(tuple(x))
    null = np.asarray([u_of(c) for c in itertools.combinations(pooled, len(x))])
    brute = min(1.0, 2 * min(np.mean(null <= observed), np.mean(null >= observed)))
    assert observed == 13 and len(null) == 126
    assert mann_whitney_p(x, y) == pytest.approx(brute)
    assert mann_whitney_p([1.0, 1.0], [1.0]) == 1.0 and mann_whitney_p([], [1.0]) is None


def test_paired_comparison_against_a_numpy_bootstrap_of_pairs() -> None:
    rng = np.random.default_rng(5)
    base = {s: float(v) for s, v in enumerate(rng.normal(0.0, 1.0, 12))}
    offsets = [0.2, 0.9, 0.5, 0.05, 0.4, 0.15, 0.3, 0.35, 0.25, 0.6, 0.45, 0.1]
    arm = {s: v + offsets[s] for s, v in base.items()}
    arm[99] = 7.0  # a seed only the arm has is not a pair
    result = paired_comparison(arm, base, reps=20_000, seed=0)
    diff = np.asarray([arm[s] - base[s] for s in range(12)])
    assert result["n_pairs"] == 12 and result["mean_diff"] == pytest.approx(diff.mean())
    means = diff[np.random.default_rng(1).integers(0, 12, size=(20_000, 12))].mean(axis=1)
    independent = np.percentile(means, [2.5, 97.5])
    assert result["mean_diff_ci"] == pytest.approx(independent, abs=0.03)
    # Wilcoxon: every difference positive -> exact p = 2 / 2**12.
    assert np.all(diff > 0) and result["wilcoxon_p"] == pytest.approx(2 / 2**12)
    assert paired_comparison({1: 1.0}, {2: 1.0}, reps=10, seed=0) is None


def test_auc_on_a_triangle_and_steps_to_threshold_on_a_hand_curve() -> None:
    assert normalized_auc(np.array([0, 50, 100]), np.array([0.0, 10.0, 0.0])) == pytest.approx(5.0)  # 500 / 100
    assert normalized_auc(np.array([10, 30]), np.array([2.0, 4.0])) == pytest.approx(3.0)
    assert normalized_auc(np.array([0]), np.array([1.0])) is None
    steps = np.arange(7) * 100
    values = np.array([0.0, 1.0, 2.0, 10.0, 10.0, 10.0, 10.0])
    assert steps_to_threshold(steps, values, 5.0, window=1) == 300.0
    # Trailing mean over 3: 0, .5, 1, 4.33, 7.33 -> first >= 5 at index 4.
    np.testing.assert_allclose(smooth(values, 3)[:5], [0.0, 0.5, 1.0, 13 / 3, 22 / 3])
    assert steps_to_threshold(steps, values, 5.0, window=3) == 400.0
    assert steps_to_threshold(steps, values, 11.0, window=1) is None
    assert steps_to_threshold(steps, -values, -5.0, mode="min", window=1) == 300.0


def test_metric_mode_min_flips_ranking_and_probability_of_improvement(tmp_path: Path) -> None:
    out = _make_sweep(tmp_path / "s")
    high = build_report(out, reps=200)
    low = build_report(out, reps=200, mode="min")
    assert low["metric_mode"] == "min"
    assert ranked_arms(high)[:3] == ["momentum", "adam", "sgd"] and ranked_arms(low)[:3] == ["sgd", "adam", "momentum"]
    # sgd [5, 15, 25] vs adam [10, 20, 30, 100]: 3 of 12 pairs higher, so 9 of 12 lower.
    assert high["arms"]["sgd"]["poi_vs_baseline"] == pytest.approx(0.25)
    assert low["arms"]["sgd"]["poi_vs_baseline"] == pytest.approx(0.75)
    assert low["arms"]["sgd"]["mw_p"] == pytest.approx(high["arms"]["sgd"]["mw_p"])  # two-sided


def test_threshold_success_rate_and_holm_through_the_report(tmp_path: Path) -> None:
    out = _make_sweep(tmp_path / "s")
    report = build_report(out, reps=200, threshold=20.0)
    adam, sgd = report["arms"]["adam"], report["arms"]["sgd"]
    assert report["threshold"] == 20.0
    assert adam["success_rate"] == 0.75 and adam["success_wilson_ci"] == pytest.approx(wilson_interval(3, 4))
    assert sgd["success_rate"] == pytest.approx(1 / 3)
    tested = {a: e["mw_p"] for a, e in report["arms"].items() if e["mw_p"] is not None}
    assert set(tested) == {"sgd", "momentum"}
    assert {a: report["arms"][a]["holm_p"] for a in tested} == pytest.approx(holm(tested))
    assert min(report["arms"][a]["holm_p"] for a in tested) == pytest.approx(min(1.0, 2 * min(tested.values())))
    # Curve of seed k: (k + 1) * step, smoothed over 5 points every 10 steps; seed 0 reaches 20 at step 40.
    assert adam["runs"][0]["steps_to_threshold"] == 40.0
    assert adam["steps_to_threshold"]["reached"] == 4 and adam["steps_to_threshold"]["ci"] is not None
    header = table_rows(report)[0]
    assert header[6] == "MW p (Holm)" and header[8].startswith("success ≥ 20") and header[-1] == "AUC [95% CI]"
    text = (out / "report" / "report.md").read_text()
    assert "| baseline | baseline |" in text and "75% [30%, 95%]" in text  # Wilson(3, 4) = [0.301, 0.954]
    assert "k] (4/4)" in text and "(0/0)" in text  # steps to threshold: IQM [CI] in thousands, runs reaching


@pytest.mark.parametrize(("raw", "message"), [
    ({"metric_mode": "maximize"}, "metric_mode must be one of max, min, got 'maximize'"),
    ({"threshold": "high"}, "threshold must be a finite number, got 'high'"),
    ({"threshold": True}, "threshold must be a finite number, got True"),
    ({"threshold": float("inf")}, "threshold must be a finite number, got inf"),
])
def test_bad_metric_mode_or_threshold_is_one_clear_error(raw: dict, message: str, tmp_path: Path) -> None:
    from rlopt.errors import ConfigError
    from rlopt.report.defaults import report_settings

    with pytest.raises(ConfigError, match=f"^{message}$"):
        report_settings(raw, ConfigError)
    assert report_settings({"threshold": 475}, ConfigError) == ("max", 475.0)
    out = _make_sweep(tmp_path / "s")
    with pytest.raises(ConfigError, match="^--mode must be one of max, min"):
        build_report(out, reps=10, mode="best")
    assert not (out / "report").exists()


def test_curve_thresholds_script_per_run_and_committed_fallback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("curve_thresholds", root / "scripts" / "curve_thresholds.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = _make_sweep(tmp_path / "s")
    build_report(out, reps=100, curve_reps=50)
    assert script.main([str(out), "--thresholds", "20", "1000", "--reps", "200"]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()[2:]}
    # Seed k logs (k + 1) * step every 10 steps; smoothed over 5 points seed 0 reaches 20 at step 40.
    assert "(4/4)" in rows["adam"] and "never (0/4)" in rows["adam"] and "never (0/0)" in rows["rmsprop"]
    # A folder committed before issue 18 (a report.json and the manifest, no runs or curve files).
    shipped = root / "benchmarks" / "ablations" / "trust_region_metrics"
    committed = tmp_path / "committed"
    committed.mkdir()
    shutil.copy(shipped / "manifest.json", committed / "manifest.json")
    shutil.copy(shipped / "report" / "report.json", committed / "report.json")
    assert script.main([str(committed), "--thresholds", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(IQM curve)" in lines[0] and lines[2].startswith("| trpo_fisher | 500 | 14k |")


def test_report_command_takes_mode_threshold_and_curve_reps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from rlopt.report import add_report_parser, report_command

    out = _make_sweep(tmp_path / "s")
    parser = argparse.ArgumentParser(prog="rlopt")
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(out), "--mode", "min", "--threshold", "20", "--reps", "100",
                              "--curve-reps", "50"])
    assert report_command(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("sgd")  # lowest IQM first
    written = json.loads((out / "report" / "report.json").read_text())
    assert (written["metric_mode"], written["threshold"]) == ("min", 20.0)
    assert written["bootstrap"]["curve_reps"] == 50 and written["arms"]["sgd"]["success_rate"] == pytest.approx(2 / 3)  # 5, 15 <= 20
    with pytest.raises(SystemExit):
        parser.parse_args(["report", str(out), "--mode", "best"])
