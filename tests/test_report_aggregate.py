"""``rlopt report OUT1 OUT2 --out DIR``: per-env normalisation, pooled IQM and optimality gap with a
bootstrap stratified by env, against hand values and an exact enumeration of the resamples; bad input
refused in one line with nothing written."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from rlopt.cli import main
from rlopt.errors import ConfigError
from rlopt.report.aggregate import aggregate, optimality_gap_along, parse_normalize, stratified_ci
from rlopt.report.defaults import report_settings
from rlopt.stats import iqm_along

METRIC = "eval_return_mean"


def make_sweep(out: Path, env: str, scores: dict[str, list[float]], mode: str = "max",
               normalize: dict[str, list[float]] | None = None) -> Path:
    """A finished sweep folder on ``env``: manifest, sweep.yaml and one summary.json per score."""
    runs = []
    for arm, values in scores.items():
        for seed, value in enumerate(values):
            run_dir = Path("runs") / arm / f"seed_{seed}"
            (out / run_dir).mkdir(parents=True)
            (out / run_dir / "summary.json").write_text(json.dumps({"env_id": env, "seed": seed, METRIC: value}))
            runs.append({"arm": arm, "seed": seed, "run_dir": str(run_dir), "status": "finished"})
    manifest = {"format_version": 1, "name": out.name, "metric": METRIC, "metric_mode": mode, "baseline": "adam",
                "arms": {arm: {"overrides": {}} for arm in scores}, "runs": runs}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "sweep.yaml").write_text(yaml.safe_dump({"name": out.name, **({"normalize": normalize} if normalize else {})}))
    return out


@pytest.fixture()
def two_envs(tmp_path: Path) -> tuple[Path, Path]:
    cartpole = make_sweep(tmp_path / "cartpole", "CartPole-v1", {"adam": [0.0, 250.0, 500.0, 500.0], "sgd": [100.0] * 4})
    pendulum = make_sweep(tmp_path / "pendulum", "Pendulum-v1", {"adam": [-100.0, -100.0, -850.0, -1600.0],
                                                                 "sgd": [-1600.0] * 4},
                          normalize={"Pendulum-v1": [-1600, -100]})
    return cartpole, pendulum


def test_normalised_iqm_and_optimality_gap_by_hand(two_envs: tuple[Path, Path], tmp_path: Path) -> None:
    report = aggregate(two_envs, tmp_path / "agg", reps=20_000, seed=0, normalize=["CartPole-v1=0,500"])
    bounds = report["aggregate"]["normalize"]
    assert bounds["CartPole-v1"] == {"low": 0.0, "high": 500.0, "source": "--normalize"}
    assert bounds["Pendulum-v1"] == {"low": -1600.0, "high": -100.0, "source": "sweep file"}
    adam, sgd = report["arms"]["adam"], report["arms"]["sgd"]
    assert adam["per_env"]["CartPole-v1"]["scores"] == [0.0, 0.5, 1.0, 1.0]
    assert adam["per_env"]["Pendulum-v1"]["scores"] == [1.0, 1.0, 0.5, 0.0]
    # pooled adam: 0 0 .5 .5 | 1 1 1 1 -> the middle half .5 .5 1 1; shortfalls 1 .5 0 0 0 0 .5 1 over 8
    assert adam["iqm"] == pytest.approx(0.75) and adam["optimality_gap"] == pytest.approx(3 / 8)
    assert sgd["iqm"] == pytest.approx(0.1) and sgd["optimality_gap"] == pytest.approx(0.9)
    # each env constant for sgd: every stratified resample is the same sample (an unstratified one is not)
    assert sgd["iqm_ci"] == pytest.approx([0.1, 0.1]) and sgd["optimality_gap_ci"] == pytest.approx([0.9, 0.9])
    # adam's CI against the exact distribution of all 4^4 x 4^4 equally likely stratified resamples
    a = np.asarray(adam["per_env"]["CartPole-v1"]["scores"])
    b = np.asarray(adam["per_env"]["Pendulum-v1"]["scores"])
    picks = np.asarray(list(itertools.product(range(4), repeat=4)))
    pooled = np.concatenate([np.repeat(a[picks], len(picks), axis=0), np.tile(b[picks], (len(picks), 1))], axis=1)
    for key, statistic in (("iqm_ci", iqm_along), ("optimality_gap_ci", optimality_gap_along)):
        exact = statistic(pooled, axis=-1)
        low, high = adam[key]
        assert np.quantile(exact, 0.015) <= low <= np.quantile(exact, 0.035), key
        assert np.quantile(exact, 0.965) <= high <= np.quantile(exact, 0.985), key
    text = (tmp_path / "agg" / "report.md").read_text()
    assert "| CartPole-v1 |" in text and "0.750 [" in text
    assert {p.name for p in (tmp_path / "agg").iterdir()} == {"report.json", "report.md", "scores.csv", "iqm.png",
                                                              "optimality_gap.png", "profile.png"}
    assert json.loads((tmp_path / "agg" / "report.json").read_text()) == report


def test_min_max_normalisation_puts_the_best_score_at_one_for_either_mode(tmp_path: Path) -> None:
    first = make_sweep(tmp_path / "a", "A-v0", {"adam": [10.0, 20.0], "sgd": [30.0]}, mode="min")
    second = make_sweep(tmp_path / "b", "B-v0", {"adam": [1.0, 3.0], "sgd": [2.0]}, mode="min")
    report = aggregate([first, second], tmp_path / "agg", reps=100, seed=0)
    assert report["aggregate"]["normalize"]["A-v0"] == {"low": 30.0, "high": 10.0, "source": "min-max over all runs"}
    assert report["arms"]["adam"]["per_env"]["A-v0"]["scores"] == [1.0, 0.5]
    assert report["arms"]["sgd"]["per_env"]["B-v0"]["scores"] == [0.5]
    assert report["arms"]["sgd"]["iqm"] == pytest.approx(0.25)  # pooled [0, 0.5], fewer than 4: the mean


def test_stratified_ci_keeps_each_stratum_whole() -> None:
    strata = [np.zeros(3), np.ones(5)]
    ((low, high),) = stratified_ci(strata, (lambda x, axis: np.mean(x, axis=axis),), reps=500, seed=1)
    assert low == high == pytest.approx(5 / 8)


def test_same_seed_gives_a_byte_identical_aggregate(two_envs: tuple[Path, Path], tmp_path: Path) -> None:
    files = []
    for name in ("one", "two"):
        aggregate(two_envs, tmp_path / name, reps=200, seed=4)
        files.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert files[0] == files[1]


@pytest.mark.parametrize("case, message", [
    ("arms", "sweep different arms (arm momentum is in one and not the other)"),
    ("env", "are both on CartPole-v1; aggregate one sweep per env"),
    ("dest", "exists and is not an empty directory"),
    ("no-out", "2 OUT directories aggregate into a new directory: give --out DIR"),
    ("normalize", "--normalize: 'CartPole-v1=0' is not ENV=LOW,HIGH"),
])
def test_bad_aggregates_exit_2_in_one_line_and_write_nothing(
    two_envs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    outs = [str(p) for p in two_envs]
    dest = tmp_path / "agg"
    if case == "arms":
        outs[1] = str(make_sweep(tmp_path / "other", "Acrobot-v1", {"adam": [1.0], "momentum": [2.0]}))
    elif case == "env":
        outs[1] = str(make_sweep(tmp_path / "again", "CartPole-v1", {"adam": [1.0], "sgd": [2.0]}))
    elif case == "dest":
        dest.mkdir()
        (dest / "keep.txt").write_text("x")
    argv = ["report", *outs, "--reps", "50"] + ([] if case == "no-out" else ["--out", str(dest)])
    argv += ["--normalize", "CartPole-v1=0"] if case == "normalize" else []
    before = sorted(p.name for p in dest.iterdir()) if dest.exists() else None
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert (sorted(p.name for p in dest.iterdir()) if dest.exists() else None) == before
    assert not any((Path(out) / "report").exists() for out in outs)


def test_the_sweep_file_keys_are_checked_when_the_sweep_loads() -> None:
    fail: Any = ConfigError
    assert report_settings({"normalize": {"CartPole-v1": [0, 500]}, "panels": {"trpo": "trpo_"}}, fail) == ("max", None)
    with pytest.raises(ConfigError, match=r"normalize.CartPole-v1 must be \[low, high\]"):
        report_settings({"normalize": {"CartPole-v1": [5, 5]}}, fail)
    with pytest.raises(ConfigError, match="panels.trpo must be an arm-name prefix or a non-empty list"):
        report_settings({"panels": {"trpo": []}}, fail)
    assert parse_normalize(["Pendulum-v1=-1600,-150"]) == {"Pendulum-v1": [-1600.0, -150.0]}


def test_a_sweep_file_takes_panels_and_normalize_and_refuses_bad_ones(tmp_path: Path) -> None:
    from rlopt.sweep.spec import load_sweep

    body = {"name": "s", "base": "a2c_cartpole", "set": {"total_steps": 1000}, "variants": {"adam": {}, "sgd": {}},
            "panels": {"first": ["adam"]}, "normalize": {"CartPole-v1": [0, 500]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(body))
    assert load_sweep(tmp_path / "s.yaml").raw["panels"] == {"first": ["adam"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**body, "normalize": {"CartPole-v1": [0]}}))
    with pytest.raises(ConfigError, match=r"sweep s: normalize.CartPole-v1 must be \[low, high\]"):
        load_sweep(tmp_path / "s.yaml")
