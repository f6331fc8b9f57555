"""rlopt report on a synthetic sweep directory: report.json against hand-computed values, files, CLI."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from torch.utils.tensorboard import SummaryWriter

from rlopt.errors import ConfigError
from rlopt.report import add_report_parser, report_command
from rlopt.report.build import REPORT_DIR, build_report

TAG = "rollout/episode_return"
METRIC = "eval_return_mean"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARM_KEYS = {"overrides", "n", "failed", "missing", "scores", "mean", "std", "median", "iqm", "iqm_ci",
            "poi_vs_baseline", "poi_ci", "curve", "runs", "mw_p", "holm_p", "paired", "success_rate",
            "success_wilson_ci", "steps_to_threshold", "auc", "eval_curve", "eval_steps_to_threshold", "eval_auc"}

# arm -> [(seed, status, score or None, last curve step)]; the curve of seed k is value = (k + 1) * step.
PLAN: dict[str, list[tuple[int, str, float | None, int]]] = {
    "adam": [(0, "finished", 10.0, 100), (1, "finished", 20.0, 90), (2, "finished", 30.0, 100),
             (3, "finished", 100.0, 80)],
    "sgd": [(0, "finished", 5.0, 100), (1, "finished", 15.0, 100), (2, "finished", 25.0, 100),
            (3, "failed", None, 0), (4, "pending", None, 0)],
    "rmsprop": [(0, "failed", None, 0), (1, "failed", None, 0)],
    "momentum": [(0, "finished", 50.0, 100), (1, "finished", float("nan"), 100)],
}


def _make_sweep(out: Path, baseline: str | None = "adam") -> Path:
    runs: list[dict[str, Any]] = []
    for arm, seeds in PLAN.items():
        for seed, status, score, last_step in seeds:
            run_dir = Path("runs") / arm / f"seed_{seed}"
            (out / run_dir).mkdir(parents=True)
            if status == "finished":
                (out / run_dir / "summary.json").write_text(json.dumps({"seed": seed, METRIC: score}))
                writer = SummaryWriter(str(out / run_dir))
                for step in range(0, last_step + 1, 10):
                    writer.add_scalar(TAG, float((seed + 1) * step), step)
                    writer.add_scalar("time/sps", 1.0, step)
                writer.close()
            runs.append({"arm": arm, "seed": seed, "run_dir": str(run_dir), "overrides": {"seed": seed},
                         "config_hash": "0" * 64, "status": status, "exit_code": 1 if status == "failed" else None,
                         "wall_seconds": None})
    manifest = {"format_version": 1, "name": "toy", "rlopt_version": "0.1.0", "metric": METRIC, "curve": TAG,
                "baseline": baseline, "arms": {arm: {"overrides": {"actor.optim": {"name": arm}}} for arm in PLAN},
                "runs": runs}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def report(sweep: Path) -> dict[str, Any]:
    return build_report(sweep, reps=500, seed=0)


def _strict(text: str) -> Any:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def test_report_json_contract_and_hand_values(sweep: Path, report: dict[str, Any]) -> None:
    on_disk = _strict((sweep / REPORT_DIR / "report.json").read_text())
    assert on_disk == report
    assert set(report) == {"metric", "metric_mode", "threshold", "baseline", "bootstrap", "arms", "warnings", "eval_tag",
                           "grid", "select", "panels"}
    assert report["eval_tag"] is None and report["grid"] is None and report["select"] is None and report["panels"] is None
    assert report["metric"] == METRIC and report["baseline"] == "adam"
    assert report["metric_mode"] == "max" and report["threshold"] is None
    assert report["bootstrap"] == {"method": "percentile", "reps": 500, "curve_reps": 2000, "seed": 0}
    assert list(report["arms"]) == list(PLAN)
    for entry in report["arms"].values():
        assert set(entry) == ARM_KEYS
    adam = report["arms"]["adam"]
    assert adam["overrides"] == {"actor.optim": {"name": "adam"}}
    assert (adam["n"], adam["failed"], adam["missing"]) == (4, 0, 0)
    assert adam["scores"] == [10.0, 20.0, 30.0, 100.0]
    assert adam["mean"] == pytest.approx(40.0)
    assert adam["std"] == pytest.approx(math.sqrt(5000 / 3))  # sample std (ddof=1)
    assert adam["median"] == pytest.approx(25.0)
    assert adam["iqm"] == pytest.approx(25.0)  # mean(20, 30)
    assert adam["iqm_ci"][0] <= 25.0 <= adam["iqm_ci"][1]
    assert adam["poi_vs_baseline"] is None and adam["poi_ci"] is None
    assert adam["mw_p"] is None and adam["holm_p"] is None and adam["paired"] is None
    assert adam["success_rate"] is None and adam["success_wilson_ci"] is None and adam["steps_to_threshold"] is None
    assert [(r["seed"], r["run_dir"], r["score"], r["status"]) for r in adam["runs"]] == [
        (0, "runs/adam/seed_0", 10.0, "finished"), (1, "runs/adam/seed_1", 20.0, "finished"),
        (2, "runs/adam/seed_2", 30.0, "finished"), (3, "runs/adam/seed_3", 100.0, "finished")]
    sgd_runs = report["arms"]["sgd"]["runs"]
    assert [(r["seed"], r["score"], r["status"]) for r in sgd_runs][3:] == [(3, None, "failed"), (4, None, "pending")]
    # The curve of seed k is (k + 1) * step on [0, last step]: its mean over the steps is (k + 1) * last / 2.
    assert [r["auc"] for r in adam["runs"]] == pytest.approx([50.0, 90.0, 150.0, 160.0])


def test_counts_poi_and_warnings(report: dict[str, Any]) -> None:
    sgd, rms, mom = (report["arms"][a] for a in ("sgd", "rmsprop", "momentum"))
    assert (sgd["n"], sgd["failed"], sgd["missing"]) == (3, 1, 1)
    assert sgd["iqm"] == pytest.approx(15.0)  # n < 4: the mean
    # x = [5, 15, 25] vs adam [10, 20, 30, 100]: 3 wins of 12 pairs.
    assert sgd["poi_vs_baseline"] == pytest.approx(0.25)
    assert sgd["poi_ci"][0] <= 0.25 <= sgd["poi_ci"][1]
    assert (rms["n"], rms["failed"], rms["missing"]) == (0, 2, 0)
    assert rms["scores"] == [] and rms["iqm"] is None and rms["iqm_ci"] is None and rms["poi_vs_baseline"] is None
    assert (mom["n"], mom["failed"], mom["missing"]) == (1, 0, 1)  # the NaN score counts as missing
    assert mom["std"] is None and mom["iqm_ci"] is None  # n = 1: no interval rather than [50, 50]
    assert mom["poi_vs_baseline"] == pytest.approx(0.75) and mom["poi_ci"] is None  # 50 beats 10, 20, 30
    assert any(w.startswith("momentum: n=1 < 2, no confidence intervals") for w in report["warnings"])
    assert all(v is None for v in mom["curve"]["ci_low"] + mom["curve"]["ci_high"]) and mom["curve"]["iqm"]
    # Seeds 0-2 are shared with adam: differences -5, -5, -5.
    assert sgd["paired"]["n_pairs"] == 3 and sgd["paired"]["mean_diff"] == pytest.approx(-5.0)
    # Tied |differences|: the normal approximation, T+ = 0, mean 3, tie-corrected variance 3.5 - 24/48 = 3.
    assert sgd["paired"]["mean_diff_ci"] == [-5.0, -5.0]
    assert sgd["paired"]["wilcoxon_p"] == pytest.approx(2 * scipy.stats.norm.cdf(-3 / math.sqrt(3)))
    assert mom["paired"]["n_pairs"] == 1 and mom["paired"]["mean_diff_ci"] is None
    assert mom["paired"]["wilcoxon_p"] is None
    warnings = report["warnings"]
    assert any(w.startswith("sgd: n=3 < 4") for w in warnings)
    assert any(w.startswith("sgd: 1 run(s) failed") for w in warnings)
    assert any(w.startswith("sgd: 1 run(s) missing") for w in warnings)
    assert any(w.startswith("rmsprop: no scores") for w in warnings)
    assert any(w.startswith("momentum: 1 finished run(s) without a finite") for w in warnings)
    assert not any(w.startswith("adam:") for w in warnings)


def test_curves_stay_inside_the_shortest_run(report: dict[str, Any]) -> None:
    curve = report["arms"]["adam"]["curve"]
    steps = np.asarray(curve["steps"])
    assert steps[0] == 0 and steps[-1] == 80  # seed 3 stops at 80
    # Values (k + 1) * step for k = 0..3: the IQM trims seeds 0 and 3 -> 2.5 * step.
    np.testing.assert_allclose(curve["iqm"], 2.5 * steps)
    assert np.all(np.asarray(curve["ci_low"]) <= np.asarray(curve["iqm"]) + 1e-9)
    assert np.all(np.asarray(curve["ci_high"]) >= np.asarray(curve["iqm"]) - 1e-9)
    assert report["arms"]["momentum"]["curve"]["steps"][-1] == 100
    assert report["arms"]["rmsprop"]["curve"] == {"steps": [], "iqm": [], "ci_low": [], "ci_high": []}


def test_markdown_table_sorted_by_iqm_and_plots_are_pngs(sweep: Path, report: dict[str, Any]) -> None:
    folder = sweep / REPORT_DIR
    text = (folder / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| arm")]
    assert [row.split("|")[1].strip() for row in rows] == ["momentum", "adam", "sgd", "rmsprop"]
    assert "| adam | 4 | 25 [" in text and "| baseline |" in text
    assert "- sgd: n=3 < 4" in text
    for name in ("curves.png", "final.png", "poi.png"):
        assert f"]({name})" in text
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    import matplotlib.image

    assert matplotlib.image.imread(folder / "curves.png").ndim == 3


def test_same_seed_same_report_other_seed_other_cis(tmp_path: Path) -> None:
    out = _make_sweep(tmp_path / "s")
    build_report(out, reps=300, seed=3)
    first = (out / REPORT_DIR / "report.json").read_bytes()
    build_report(out, reps=300, seed=3)
    assert (out / REPORT_DIR / "report.json").read_bytes() == first
    other = build_report(out, reps=300, seed=4)
    before = json.loads(first)["arms"]["sgd"]
    assert other["arms"]["sgd"]["poi_vs_baseline"] == before["poi_vs_baseline"]
    assert other["arms"]["sgd"]["poi_ci"] != before["poi_ci"]  # only the resamples changed


def test_baseline_argument_and_fallback(tmp_path: Path) -> None:
    out = _make_sweep(tmp_path / "s", baseline=None)
    assert build_report(out, reps=100)["baseline"] == "adam"  # no baseline anywhere: the first arm
    swapped = build_report(out, baseline="sgd", reps=100)
    assert swapped["baseline"] == "sgd" and swapped["arms"]["sgd"]["poi_vs_baseline"] is None
    assert swapped["arms"]["adam"]["poi_vs_baseline"] == pytest.approx(0.75)
    rms = build_report(out, baseline="rmsprop", reps=100)  # a baseline without scores: no PoI at all
    assert all(entry["poi_vs_baseline"] is None for entry in rms["arms"].values())
    assert any(w.startswith("baseline rmsprop: no scores") for w in rms["warnings"])


def test_unknown_baseline_and_bad_directories_are_config_errors(sweep: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--baseline: unknown arm 'adamw'; arms: adam, sgd, rmsprop, momentum"):
        build_report(sweep, baseline="adamw", reps=10)
    with pytest.raises(ConfigError, match="manifest.json not found"):
        build_report(tmp_path, reps=10)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        build_report(tmp_path, reps=10)
    with pytest.raises(ConfigError, match="--reps"):
        build_report(sweep, reps=0)


def test_report_command_prints_table_and_path(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="rlopt")
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(sweep), "--baseline", "sgd", "--reps", "100", "--seed", "1"])
    assert args.handler is report_command
    assert report_command(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["arm", "n"]
    assert lines[1].startswith("momentum")
    assert lines[-1] == f"report written to {sweep / REPORT_DIR / 'report.md'}"
    assert _strict((sweep / REPORT_DIR / "report.json").read_text())["baseline"] == "sgd"
