"""Grids, evaluation curves and panels in ``rlopt report``: sensitivity data and plot, ``--select KEY``
(the value chosen on half of the seeds, reported on the other half) against hand values on a synthetic
sweep whose answer is known, the evaluation-curve statistics, and the panels of curves.png."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
import yaml

from rlopt.cli import main
from rlopt.errors import ConfigError
from rlopt.report.build import REPORT_DIR, build_report
from rlopt.report.curve_file import EVAL_TAG, curve_file, write_run_curve
from rlopt.report.grid import log_axis, split_seeds
from rlopt.report.panels import resolve_panels
from rlopt.report.plots import arm_styles, panel_rows, render_plots

TAG = "rollout/episode_return"
METRIC = "eval_return_mean"
LRS = [0.001, 0.01, 0.1]
SEEDS = list(range(6))  # selection seeds 0, 2, 4; held-out seeds 1, 3, 5
# variant -> lr -> score per seed 0..5. sgd is best at 0.01 on the even seeds but at 0.1 on the odd ones:
# --select must report 0.01 on the odd seeds (4, 5, 6), not the odd seeds' winner 0.1 (20).
SCORES = {
    "sgd": {0.001: [1, 1, 1, 1, 1, 1], 0.01: [10, 4, 10, 5, 10, 6], 0.1: [8, 20, 8, 20, 8, 20]},
    "adam": {0.001: [30, 25, 30, 26, 30, 27], 0.01: [20, 40, 20, 40, 20, 40], 0.1: [0, 0, 0, 0, 0, 0]},
}
EVAL_STEPS = [0, 100, 200]
EVAL_VALUES = [0.0, 50.0, 100.0]  # normalised AUC = 50; smoothed (trailing mean of 5): 0, 25, 50


def arm_name(variant: str, lr: float) -> str:
    return f"{variant}__actor.optim.lr={lr}"


def make_grid_sweep(out: Path, panels: Any = None) -> Path:
    """A finished sweep folder (manifest, sweep.yaml, summaries, curve files) of SCORES; sgd runs logged evaluations."""
    runs, arms = [], {}
    for variant, by_lr in SCORES.items():
        for lr, scores in by_lr.items():
            arm = arm_name(variant, lr)
            arms[arm] = {"overrides": {"actor.optim.name": variant, "actor.optim.lr": lr}}
            for seed, score in zip(SEEDS, scores):
                run_dir = Path("runs") / arm / f"seed_{seed}"
                (out / run_dir).mkdir(parents=True)
                (out / run_dir / "summary.json").write_text(json.dumps({"seed": seed, METRIC: float(score)}))
                (out / curve_file(arm, seed)).parent.mkdir(parents=True, exist_ok=True)
                (out / curve_file(arm, seed)).write_text(f"step,{TAG}\n0,0.0\n100,{float(score)!r}\n")
                if variant == "sgd":
                    rows = "".join(f"{s},{v!r}\n" for s, v in zip(EVAL_STEPS, EVAL_VALUES))
                    (out / curve_file(arm, seed, ".eval")).write_text(f"step,{EVAL_TAG}\n{rows}")
                runs.append({"arm": arm, "seed": seed, "run_dir": str(run_dir), "status": "finished"})
    sweep = {"name": "grid", "base": "a2c_cartpole", "seeds": {"start": 0, "count": len(SEEDS)},
             "variants": {"sgd": {"actor.optim.name": "sgd"}, "adam": {"actor.optim.name": "adam"}},
             "grid": {"actor.optim.lr": LRS}, "baseline": arm_name("adam", 0.001), "threshold": 20.0}
    if panels is not None:
        sweep["panels"] = panels
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    manifest = {"format_version": 1, "name": "grid", "metric": METRIC, "curve": TAG, "threshold": 20.0,
                "baseline": arm_name("adam", 0.001), "arms": arms, "runs": runs}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def selected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = make_grid_sweep(tmp_path_factory.mktemp("grid"))
    return out, build_report(out, reps=400, curve_reps=50, seed=0, select="actor.optim.lr")


def test_seed_split_and_log_axis_by_hand() -> None:
    assert split_seeds([5, 3, 1, 0, 2, 4]) == ([0, 2, 4], [1, 3, 5])
    assert split_seeds([7, 9, 11]) == ([7, 11], [9])
    assert log_axis([0.001, 0.01, 0.1]) and not log_axis([0.01, 0.1]) and not log_axis([0, 1, 1000])
    assert not log_axis(["a", "b"]) and not log_axis([True, False])


def test_sensitivity_lines_hold_each_variants_iqm_against_the_grid_value(selected: tuple[Path, dict[str, Any]]) -> None:
    _, report = selected
    grid = report["grid"]
    assert grid["keys"] == ["actor.optim.lr"]
    assert grid["arms"][arm_name("sgd", 0.01)] == {"variant": "sgd", "values": {"actor.optim.lr": 0.01}}
    lines = {line["group"]: line for line in grid["sensitivity"]}
    assert set(lines) == {"sgd", "adam"}
    sgd = lines["sgd"]
    assert sgd["values"] == LRS and sgd["arms"] == [arm_name("sgd", lr) for lr in LRS] and sgd["log_x"] is True
    # IQM of 6 scores: drop the lowest and the highest, mean of the middle 4. sgd@0.01: 4 5 6 10 10 10 -> 7.75.
    assert sgd["iqm"] == pytest.approx([1.0, (5 + 6 + 10 + 10) / 4, (8 + 8 + 20 + 20) / 4])
    assert sgd["iqm_ci"][0] == [1.0, 1.0]


def test_select_chooses_on_half_the_seeds_and_reports_the_other_half(selected: tuple[Path, dict[str, Any]]) -> None:
    out, report = selected
    chosen = report["select"]
    assert chosen["key"] == "actor.optim.lr"
    assert chosen["selection_seeds"] == [0, 2, 4] and chosen["heldout_seeds"] == [1, 3, 5]
    assert chosen["baseline_group"] == "adam"
    sgd, adam = chosen["groups"]["sgd"], chosen["groups"]["adam"]
    assert [c["selection_iqm"] for c in sgd["candidates"]] == [1.0, 10.0, 8.0]  # the mean of 3 seeds
    assert sgd["selected_value"] == 0.01 and sgd["selected_arm"] == arm_name("sgd", 0.01)
    assert sgd["heldout"]["seeds"] == [1, 3, 5] and sgd["heldout"]["scores"] == [4.0, 5.0, 6.0]
    assert sgd["heldout"]["iqm"] == pytest.approx(5.0)  # not the 20 of 0.1, the odd seeds' own winner
    low, high = sgd["heldout"]["iqm_ci"]
    assert 4.0 <= low < 5.0 < high <= 6.0
    assert adam["selected_value"] == 0.001 and adam["heldout"]["iqm"] == pytest.approx(26.0)
    assert sgd["poi_vs_baseline_group"] == 0.0 and adam["poi_vs_baseline_group"] is None  # 4..6 never beat 25..27
    text = (out / REPORT_DIR / "report.md").read_text()
    assert "## Selection of `actor.optim.lr` on held-out seeds" in text and "| sgd | 0.01 | 10 | 3 | 5 [" in text
    assert (out / REPORT_DIR / "sensitivity.png").read_bytes().startswith(b"\x89PNG")


def test_select_refuses_a_key_outside_the_grid_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = make_grid_sweep(tmp_path / "g")
    assert main(["report", str(out), "--reps", "50", "--select", "actor.optim.eps"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "actor.optim.eps" in err and "grid keys: actor.optim.lr" in err
    assert not (out / REPORT_DIR).exists()


def test_evaluation_curves_get_the_sample_efficiency_statistics(selected: tuple[Path, dict[str, Any]]) -> None:
    out, report = selected
    assert report["eval_tag"] == EVAL_TAG
    sgd, adam = report["arms"][arm_name("sgd", 0.01)], report["arms"][arm_name("adam", 0.01)]
    assert sgd["eval_curve"]["steps"][0] == 0 and sgd["eval_curve"]["steps"][-1] == 200
    assert sgd["eval_auc"]["iqm"] == pytest.approx(50.0)  # trapezoids of 0, 50, 100 over 200 steps / 200
    assert sgd["eval_steps_to_threshold"] == {"iqm": 100.0, "ci": [100.0, 100.0], "reached": 6}  # smoothed 25 >= 20
    assert sgd["runs"][0]["eval_auc"] == pytest.approx(50.0) and sgd["runs"][0]["eval_steps_to_threshold"] == 100.0
    assert adam["eval_curve"]["steps"] == [] and adam["eval_auc"] is None and adam["eval_steps_to_threshold"] is None
    rows = (out / REPORT_DIR / "curves.csv").read_text().splitlines()
    assert rows[0] == "arm,tag,step,iqm,ci_low,ci_high"
    assert any(row.startswith(f"{arm_name('sgd', 0.01)},{EVAL_TAG},200,100.0") for row in rows)
    assert "eval AUC [95% CI]" in (out / REPORT_DIR / "report.md").read_text()


def test_the_sweep_writes_the_evaluation_curve_file_when_the_run_logged_it(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for name, evaluations in (("with", True), ("without", False)):
        writer = SummaryWriter(str(tmp_path / "runs" / name))
        for step in (0, 10, 20):
            writer.add_scalar(TAG, float(step), step)
            if evaluations:
                writer.add_scalar(EVAL_TAG, step / 2.0, step)
        writer.close()
        write_run_curve(tmp_path, name, 0, Path("runs") / name, TAG)
    assert (tmp_path / curve_file("with", 0, ".eval")).read_text() == f"step,{EVAL_TAG}\n0,0.0\n10,5.0\n20,10.0\n"
    assert (tmp_path / curve_file("without", 0)).is_file() and not (tmp_path / curve_file("without", 0, ".eval")).exists()


def test_panels_by_prefix_list_and_automatically() -> None:
    arms = [f"trpo_{i}" for i in range(6)] + [f"npg_{i}" for i in range(6)]
    assert resolve_panels(None, arms[:10], "trpo_0") is None  # 10 arms or fewer: one panel
    assert resolve_panels(None, arms, "trpo_0") == {"trpo": arms[1:6], "npg": arms[6:]}
    assert resolve_panels({"NPG": "npg_", "two": ["trpo_1", "trpo_2"]}, arms, "trpo_0") == {
        "NPG": arms[6:], "two": ["trpo_1", "trpo_2"], "other": arms[3:6]}
    with pytest.raises(ConfigError, match=r"panels.x: unknown arm 'ppo'"):
        resolve_panels({"x": ["ppo"]}, arms, "trpo_0")
    with pytest.raises(ConfigError, match=r"panels.x: prefix 'ppo' matches no arm"):
        resolve_panels({"x": "ppo"}, arms, "trpo_0")
    report = {"arms": dict.fromkeys(arms), "baseline": "trpo_0", "panels": {"NPG": arms[6:]}}
    assert panel_rows(report) == [("NPG", ["trpo_0", *arms[6:]])]  # the baseline is drawn in every panel


def test_a_grid_sweep_of_twenty_four_arms_plots_one_panel_per_variant_readably(tmp_path: Path) -> None:
    out = make_grid_sweep(tmp_path / "g")
    report = build_report(out, reps=50, curve_reps=20)
    # 6 arms: one panel; the same report with 24 arms in 4 variants gets 4 panels
    arms = {f"v{v}__lr={i}": dict(report["arms"][arm_name("sgd", 0.01)]) for v in range(4) for i in range(6)}
    big = {**report, "arms": arms, "baseline": "v0__lr=0", "grid": None, "select": None,
           "panels": resolve_panels(None, list(arms), "v0__lr=0")}
    assert list(big["panels"]) == ["v0", "v1", "v2", "v3"]
    styles = arm_styles(list(arms))
    assert len(set(styles.values())) == len(arms)
    plots = render_plots(big, TAG)
    for name, data in plots.items():
        height, width = matplotlib.image.imread(io.BytesIO(data)).shape[:2]
        assert 800 <= width <= 2000 and 400 <= height <= 2400, (name, width, height)
    single = matplotlib.image.imread(out / REPORT_DIR / "curves.png")  # the 6 arms: one row
    assert matplotlib.image.imread(io.BytesIO(plots["curves.png"])).shape[0] > single.shape[0]  # four rows of panels


def test_same_seed_gives_byte_identical_grid_reports(tmp_path: Path) -> None:
    out = make_grid_sweep(tmp_path / "g")
    files = {}
    for attempt in range(2):
        build_report(out, reps=100, curve_reps=20, seed=3, select="actor.optim.lr")
        files[attempt] = {p.name: p.read_bytes() for p in sorted((out / REPORT_DIR).iterdir())}
    assert files[0] == files[1] and "sensitivity.png" in files[0]
    assert np.isfinite(json.loads(files[0]["report.json"])["select"]["groups"]["sgd"]["heldout"]["iqm"])


def test_select_needs_a_grid_and_two_seeds(tmp_path: Path) -> None:
    from tests.test_report import _make_sweep

    with pytest.raises(ConfigError, match=r"--select: the sweep has no grid"):
        build_report(_make_sweep(tmp_path / "plain"), reps=20, select="actor.optim.lr")
    out = make_grid_sweep(tmp_path / "g")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["runs"] = [run for run in manifest["runs"] if run["seed"] == 0]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"--select needs at least 2 seeds"):
        build_report(out, reps=20, select="actor.optim.lr")
    assert not (tmp_path / "plain" / REPORT_DIR).exists() and not (out / REPORT_DIR).exists()


def test_the_command_prints_each_groups_selection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = make_grid_sweep(tmp_path / "g")
    assert main(["report", str(out), "--reps", "50", "--curve-reps", "20", "--select", "actor.optim.lr"]) == 0
    printed = capsys.readouterr().out
    assert "select actor.optim.lr: sgd -> 0.01, held-out IQM 5 (n=3)" in printed


def test_panels_of_the_sweep_file_reach_the_report_and_bad_ones_exit_2(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = make_grid_sweep(tmp_path / "g", panels={"adaptive": "adam"})
    report = build_report(out, reps=20, curve_reps=10)
    assert report["panels"] == {"adaptive": [arm_name("adam", 0.01), arm_name("adam", 0.1)],
                                "other": [arm_name("sgd", lr) for lr in LRS]}
    assert "Panels (the baseline in each): adaptive:" in (out / REPORT_DIR / "report.md").read_text()
    bad = make_grid_sweep(tmp_path / "bad", panels={"x": ["momentum"]})
    assert main(["report", str(bad), "--reps", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "panels.x: unknown arm 'momentum'" in err
    assert not (bad / REPORT_DIR).exists()
