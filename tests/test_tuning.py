"""``search:`` blocks of sweep files: checks, per-arm Optuna studies, resume after a kill, reproducibility,
the expected-max estimator (Dodge et al. 2019) and the report's tuning section.

Most tests drive :func:`rlopt.sweep.tuning.tune` with a fake backend that writes each run's summary.json
(a known function of its learning rate); one test runs real ``rlopt train`` subprocesses (256 steps)
and SIGKILLs the driver mid-study.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

pytest.importorskip("optuna", reason='optuna is in the "tune" extra')

from agents import check_config  # noqa: E402
from rlopt.report.build import build_report  # noqa: E402
from rlopt.report.tuning import add_tuning, expected_max, expected_max_ci, write_tuning  # noqa: E402
from rlopt.sweep.spec import load_sweep  # noqa: E402
from rlopt.sweep.runner import START_MARKER  # noqa: E402
from rlopt.sweep.search import tuning_seeds  # noqa: E402
from rlopt.errors import ConfigError  # noqa: E402
from rlopt.sweep.liveness import HEARTBEAT, Heartbeats, recover  # noqa: E402
from rlopt.sweep.tuning import open_storage, open_studies, tune, write_tuning_json  # noqa: E402
from tests.test_sweep import DRIVER, ROOT, sweep  # noqa: E402

TINY = {"total_steps": 256, "eval.episodes": 1, "env.num_envs": 2, "checkpoint.every_steps": 128}
SPACE = {"actor.optim.lr": {"log_uniform": [1.0e-4, 1.0e-1]}}


def write(path: Path, search: dict[str, Any] | None = None, **fields: Any) -> Path:
    block = {"space": SPACE, "trials": 3, "seeds_per_trial": 2, "objective": "eval_return_mean", **(search or {})}
    body = {"name": path.stem, "base": "a2c_cartpole", "set": TINY, "seeds": [0, 1], "search": block,
            "variants": {"adam": {"actor.optim": {"name": "adam", "lr": 0.001}}}, **fields}  # fmt: skip
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


# --- the estimator ---------------------------------------------------------------------------------


def test_expected_max_matches_a_hand_computation() -> None:
    # Sorted 1, 2, 3, 4: k=1 the mean 2.5; k=2 the 6 pairs' maxima 2,3,4,3,4,4 -> 20/6;
    # k=3 the 4 triples' maxima 3,4,4,4 -> 15/4; k=4 the max 4.
    np.testing.assert_allclose(expected_max([3.0, 1.0, 4.0, 2.0]), [2.5, 20 / 6, 3.75, 4.0])


def test_expected_max_matches_enumeration_and_its_band_covers_it() -> None:
    x = np.random.default_rng(0).normal(size=7)
    dense = [np.mean([max(c) for c in itertools.combinations(x, k)]) for k in range(1, 8)]
    np.testing.assert_allclose(expected_max(x), dense)
    low, high = expected_max_ci(x, reps=500, seed=0)
    assert np.all(low <= expected_max(x) + 1e-12) and np.all(expected_max(x) <= high + 1e-12)
    assert np.all(np.diff(expected_max(x)) >= 0) and high[-1] > low[-1]
    low, high = expected_max_ci([2.0, 2.0, 2.0], reps=50, seed=0)
    np.testing.assert_allclose([low, high], 2.0)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ({"space": {"actor.optimx.lr": {"uniform": [0.1, 0.2]}}}, "search.space.actor.optimx.lr: unknown config key"),
        ({"space": {"actor.activation": {"log_uniform": [0.1, 0.2]}}}, "log_uniform does not fit actor.activation, a str"),
        ({"space": {"env.num_envs": {"uniform": [1, 4]}}}, "uniform does not fit env.num_envs, an integer"),
        ({"space": {"actor.optim.lr": {"uniform": [0.2, 0.1]}}}, "low 0.2 must be < high 0.1"),
        ({"space": {"actor.optim.lr": {"log_uniform": [0.0, 0.1]}}}, "log_uniform: low 0.0 must be > 0"),
        ({"space": {"actor.optim.lr": {"normal": [0.0, 0.1]}}}, "search.space.actor.optim.lr must be one of"),
        ({"space": {"actor.optim.momentum": {"uniform": [0.5, 0.9]}}}, "momentum"),  # adam takes no momentum
        ({"space": {"actor.optim.lr": {"log_uniform": [0.1, 0.1]}}}, "low 0.1 must be < high 0.1"),
        ({"trials": 0}, "search.trials must be an integer in [1, 1,000], got 0"),
        ({"trials": -3}, "search.trials must be an integer in [1, 1,000], got -3"),
        ({"trials": 1001}, "search.trials must be an integer in [1, 1,000], got 1001"),
        ({"budget": 3}, "search.budget: unknown key"),
        ({"sampler": "grid"}, "search.space.actor.optim.lr: sampler grid takes choice distributions only"),
        ({"pruner": "mean"}, "search.pruner must be one of none, median, got 'mean'"),
        ({"warmup_steps": 100}, "search.warmup_steps is for pruner: median"),
        ({"pruner": "median", "startup_trials": -1}, "search.startup_trials must be an integer in [0, 1,000], got -1"),
        ({"objective": "best"}, "search.objective must be final, auc or a number of summary.json"),
        ({"space": {"actor.max_grad_norm": {"choice": [[0.5], 1.0]}}}, "choice: values must be numbers, strings"),
        ({"space": {"actor.max_grad_norm": {"choice": [0.5, 1.0]}}, "sampler": "grid"}, "grid has 2 points; at most 2"),
        ({"space": {"actor.max_grad_norm": {"choice": ["x"]}}}, "actor.max_grad_norm"),  # built and refused
    ],
)
def test_bad_search_blocks_are_refused_in_one_line(tmp_path: Path, capsys: Any, search: dict[str, Any], expected: str) -> None:
    path = write(tmp_path / "bad.yaml", search)
    assert sweep(str(path), "--out", str(tmp_path / "out"), validate=check_config) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_too_many_trial_runs_are_refused(tmp_path: Path, capsys: Any) -> None:
    arms = {name: {"actor.optim": {"name": name, "lr": 0.01}} for name in ("adam", "sgd")}
    path = write(tmp_path / "big.yaml", {"trials": 1000, "seeds_per_trial": 100}, variants=arms)
    assert sweep(str(path), "--dry-run") == 2
    assert "200,000 trial runs (arms x trials x seeds_per_trial); at most 100,000" in capsys.readouterr().err


def test_a_storage_that_cannot_be_opened_is_refused_before_any_run(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path / "s.yaml")
    for url in ("nosuchdb://x", f"sqlite:///{tmp_path}/missing/dir/t.db"):
        assert sweep(str(path), "--out", str(tmp_path / "out"), "--storage", url) == 2
        err = capsys.readouterr().err
        assert "--storage" in err and "cannot be opened" in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()


def test_a_stored_study_with_another_space_is_refused_naming_the_key(tmp_path: Path, capsys: Any) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    open_studies(load_sweep(write(tmp_path / "s.yaml")), open_storage(url))
    other = write(tmp_path / "s.yaml", {"space": {**SPACE, "actor.optim.eps": {"log_uniform": [1e-8, 1e-3]}}})
    assert sweep(str(other), "--out", str(tmp_path / "out"), "--storage", url) == 2
    err = capsys.readouterr().err
    assert "search.space.actor.optim.eps differs" in err and "adam" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "out" / "tuning").exists()


# --- studies with a fake backend ------------------------------------------------------------------


def fake_jobs(fail_round: int | None = None) -> Any:
    """A backend writing summary.json with eval_return_mean = -(log10(lr) + 2)^2 (best at lr 1e-2);
    on round ``fail_round`` it reports an interruption with nothing run."""
    rounds = [0]

    def run_jobs(jobs: list[Any], on_start: Any, on_done: Any) -> bool:
        rounds[0] += 1
        if rounds[0] == fail_round:
            return True
        for index, job in enumerate(jobs):
            config = yaml.safe_load(Path(job.args[3]).read_text())
            run_dir = Path(job.args[job.args.index("--run-dir") + 1])
            run_dir.mkdir(parents=True)
            value = -((math.log10(config["actor"]["optim"]["lr"]) + 2) ** 2)
            (run_dir / "summary.json").write_text(json.dumps({"eval_return_mean": value}))
            on_done(index, 0, 0.0)
        return False

    return run_jobs


def run_fake(path: Path, out: Path, fail_round: int | None = None) -> Any:
    spec = load_sweep(path)
    out.mkdir(exist_ok=True)
    studies = open_studies(spec, open_storage(f"sqlite:///{out}/tuning.db"))
    return tune(spec, out, studies, lambda cfg: cfg, {}, fake_jobs(fail_round))


def trial_params(out: Path) -> list[float]:
    return [t["params"]["actor.optim.lr"] for t in json.loads((out / "tuning.json").read_text())["adam"]["trials"]]


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_same_sweep_and_seed_ask_the_same_parameters_even_across_an_interruption(tmp_path: Path, sampler: str) -> None:
    path = write(tmp_path / "s.yaml", {"sampler": sampler, "trials": 4})
    tuned = run_fake(path, tmp_path / "a")
    first = trial_params(tmp_path / "a")
    assert len(set(first)) == 4
    assert run_fake(path, tmp_path / "c", fail_round=3) == 130  # the third trial left RUNNING
    assert len(trial_params(tmp_path / "c")) == 2
    run_fake(path, tmp_path / "c")  # marked FAIL, asked again with the same parameters
    assert trial_params(tmp_path / "c") == first
    other = run_fake(write(tmp_path / "s.yaml", {"sampler": sampler, "trials": 4, "seed": 1}), tmp_path / "d")
    assert other is not None and trial_params(tmp_path / "d") != first
    # The final runs: every seed of the sweep at the best trial's learning rate, seeds disjoint from tuning.
    best = max(first, key=lambda lr: -((math.log10(lr) + 2) ** 2))
    assert [run.config.actor.optim["lr"] for run in tuned.runs] == [best, best]
    assert [run.seed for run in tuned.runs] == [0, 1] and tuning_seeds([0, 1], 2) == [2, 3]
    assert sorted(p.name for p in (tmp_path / "a" / "tuning" / "adam" / "trial_0").glob("seed_*")) == [
        "seed_2", "seed_2.yaml", "seed_3", "seed_3.yaml"]  # fmt: skip


def test_a_live_drivers_trials_are_left_alone_and_a_killed_ones_asked_again(tmp_path: Path) -> None:
    """The next driver watches the RUNNING trials' heartbeats: while they move (a live driver) they are
    left alone; once they stand still (a killed driver) they are marked FAIL and asked again."""
    studies = open_studies(load_sweep(write(tmp_path / "s.yaml", {"trials": 4})), open_storage(f"sqlite:///{tmp_path}/t.db"))
    trial = studies["adam"].ask()
    trial.suggest_float("actor.optim.lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr(HEARTBEAT, time.time())
    with Heartbeats([trial], seconds=0.1):  # the first driver, alive
        assert recover(studies, stale_after=0.5) == (0, 1)
    assert [t.state.name for t in studies["adam"].get_trials()] == ["RUNNING"]  # untouched
    assert recover(studies, stale_after=0.5) == (1, 0)  # its heartbeat stands still now: killed
    old, new = studies["adam"].get_trials()
    assert (old.state.name, new.state.name, new.user_attrs["retry_of"]) == ("FAIL", "WAITING", 0)
    assert new.system_attrs["fixed_params"] == old.params  # asked next with the same parameters
    assert recover(studies, stale_after=0.5) == (0, 0)  # nothing RUNNING: no wait, nothing changed
    assert len(studies["adam"].get_trials()) == 2


def test_two_drivers_share_a_study_within_its_budget(tmp_path: Path, monkeypatch: Any) -> None:
    """Two drivers (own OUT, one storage) at once: together they run the budget once (at most one trial over
    when both ask the last slot at the same instant), every trial finished, none failed, and both end with the
    same best parameters."""
    import threading

    from rlopt.sweep import liveness

    monkeypatch.setattr(liveness, "HEARTBEAT_SECONDS", 0.05)  # the wait for the other driver's last trials
    path = write(tmp_path / "s.yaml", {"trials": 6, "sampler": "random"})
    url = f"sqlite:///{tmp_path}/shared.db"
    open_studies(load_sweep(path), open_storage(url))  # the tables and the study exist before the drivers start

    def slow_jobs(jobs: list[Any], on_start: Any, on_done: Any) -> bool:
        time.sleep(0.2)  # the two drivers' trials overlap
        return fake_jobs(None)(jobs, on_start, on_done)

    results: dict[str, Any] = {}

    def driver(name: str) -> None:
        spec, out = load_sweep(path), tmp_path / name
        out.mkdir()
        results[name] = tune(spec, out, open_studies(spec, open_storage(url)), lambda cfg: cfg, {}, slow_jobs)

    threads = [threading.Thread(target=driver, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    trials = open_studies(load_sweep(path), open_storage(url))["adam"].get_trials()
    # Optuna has no atomic "ask if under budget": two drivers asking at the same instant may both take the
    # last slot, so a study can end one trial over per other driver (never under, never a failed trial).
    assert {t.state.name for t in trials} == {"COMPLETE"} and 6 <= len(trials) <= 7
    best = max(trials, key=lambda t: t.value).params["actor.optim.lr"]
    assert [run.config.actor.optim["lr"] for r in results.values() for run in r.runs] == [best] * 4


def test_report_gets_each_arms_tuning(tmp_path: Path) -> None:
    run_fake(write(tmp_path / "s.yaml", {"trials": 4}), tmp_path / "out")
    data = json.loads((tmp_path / "out" / "tuning.json").read_text())
    report = {"arms": {"adam": {}}}
    add_tuning(tmp_path / "out", report, reps=100, seed=0)
    tuning = report["arms"]["adam"]["tuning"]
    values = [t["value"] for t in data["adam"]["trials"]]
    assert tuning["trials"] == 4 and tuning["best_value"] == max(values)
    assert tuning["best_params"] == data["adam"]["best_params"]
    assert tuning["expected_max"]["k"] == [1, 2, 3, 4]
    np.testing.assert_allclose(tuning["expected_max"]["mean"], expected_max(values))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("# r\n")
    write_tuning(tmp_path / "report", report)
    assert (tmp_path / "report" / "tuning.png").stat().st_size > 0
    assert "## Tuning" in (tmp_path / "report" / "report.md").read_text()


# --- a real study, killed and resumed ---------------------------------------------------------------


def test_sigkill_mid_study_then_resume(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", {"trials": 2, "seeds_per_trial": 1, "objective": "final"}, seeds=[0])
    out = tmp_path / "out"
    command = [sys.executable, "-c", DRIVER, "sweep", str(path), "--out", str(out), "--workers", "1"]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trial_dir = out / "tuning" / "adam" / "trial_1" / "seed_1"  # trial 0 finished, trial 1 started
    deadline = time.monotonic() + 300
    while not trial_dir.exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)  # its runs die with it
    driver.wait()
    assert trial_dir.exists() and not (out / "runs" / "adam" / "seed_0" / "summary.json").exists()
    assert subprocess.run(command, cwd=ROOT, capture_output=True).returncode == 0
    data = json.loads((out / "tuning.json").read_text())["adam"]
    assert [(t["number"], t["state"]) for t in data["trials"]] == [(0, "COMPLETE"), (2, "COMPLETE")]
    storage = open_storage(f"sqlite:///{out}/tuning.db")
    trials = open_studies(load_sweep(path), storage)["adam"].get_trials()
    assert trials[1].state.name == "FAIL" and trials[2].user_attrs.get("retry_of") == 1
    assert trials[2].params == trials[1].params  # asked again with the same parameters
    # The finished trial was kept, not run again; the parameters are those of an uninterrupted study.
    assert (out / "tuning" / "adam" / "trial_0" / "seed_1.log").read_text().count(START_MARKER) == 1
    run_fake(path, tmp_path / "uninterrupted")
    assert [t["params"] for t in data["trials"]] == [
        t["params"] for t in json.loads((tmp_path / "uninterrupted" / "tuning.json").read_text())["adam"]["trials"]]  # fmt: skip
    assert (out / "runs" / "adam" / "seed_0" / "summary.json").is_file()
    report = build_report(out, reps=100)
    assert report["arms"]["adam"]["tuning"]["best_params"] == data["best_params"]
    assert report["arms"]["adam"]["overrides"]["actor.optim.lr"] == data["best_params"]["actor.optim.lr"]
    assert (out / "report" / "tuning.png").is_file()
    assert sweep(str(path), "--out", str(out), "--workers", "1") == 0  # done: nothing asked, nothing re-run
    assert len(open_studies(load_sweep(path), storage)["adam"].get_trials()) == 3


@pytest.mark.parametrize("name", ["tuned_actor_optimizer", "tuned_actor_optimizer_pendulum"])
def test_shipped_tuned_ablation_dry_run(capsys: Any, name: str) -> None:
    assert sweep(str(ROOT / f"configs/sweeps/{name}.yaml"), "--dry-run", "--out", "/nonexistent/x",
                 validate=check_config) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "288 trial runs, then 60 final runs (6 arms x 10 seeds)" in text
    for arm in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
        assert f"tune {arm}: actor.optim.lr~log_uniform" in text
    assert text.count("24 trials x 2 seeds [10, 11] = 48 trial runs, tpe sampler") == 6
    assert text.count("pruner median (startup_trials 5") == 6
    assert "actor.optim.momentum~uniform[0.5, 0.99]" in text and "actor.optim.eps~log_uniform" in text
    assert ("a2c_pendulum.yaml" in text) == name.endswith("pendulum")
