"""Sweeps with seeds stacked in one process (issue 17, "Sweeps use it"): ``seeds_per_process`` in the
sweep file and ``--seeds-per-process``; the manifest, run directories, curves and resume stay per run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rlopt.run_files import list_checkpoints
from rlopt.sweep.runner import START_MARKER
from rlopt.sweep.seeds import MAX_SEEDS_PER_PROCESS, auto_seeds_per_process
from tests.sweep_envs import NAN_SEEDS_FROM
from tests.test_sweep import PAIR, TINY, assert_no_duplicate_points, kill_driver_when, manifest, starts, sweep

STACK_LOG = "--sweep-stack"


def write_stacked(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "base": "a2c_cartpole", "set": TINY, **fields}, sort_keys=False))
    return path


def log_of(out: Path, arm: str, seed: int) -> str:
    return (out / "runs" / arm / f"seed_{seed}.log").read_text()


def test_a_stacked_sweep_writes_ordinary_runs_manifest_and_curves(tmp_path: Path, capsys) -> None:
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, 1, 2], variants=PAIR, seeds_per_process=2)
    out = tmp_path / "out"
    assert sweep(str(path), "--out", str(out), "--dry-run") == 0
    assert "6 runs to train in 4 processes (4 stacks; seeds_per_process 2)" in capsys.readouterr().out
    assert not out.exists()
    assert sweep(str(path), "--out", str(out), "--workers", "2") == 0
    printed = capsys.readouterr().out
    assert "in 4 processes" in printed and printed.count("eval_return_mean=") == 6
    runs = manifest(out)["runs"]
    assert [(r["arm"], r["seed"], r["status"], r["exit_code"]) for r in runs] == [
        (arm, seed, "finished", 0) for arm in ("adam", "sgd") for seed in (0, 1, 2)]  # fmt: skip
    assert [r["stack"] for r in runs] == [[0, 1], [0, 1], [2]] * 2
    for arm in ("adam", "sgd"):
        assert not (out / "runs" / arm / "stacked.json").exists()  # the arm dir is the sweep's, not a stack's
        for seed in (0, 1, 2):
            run = out / "runs" / arm / f"seed_{seed}"
            assert json.loads((run / "summary.json").read_text())["seed"] == seed
            assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == seed
            assert list(run.glob("*hparams*")) or list(run.rglob("events.out.tfevents.*"))
            curve = out / "curves" / arm / f"seed_{seed}.csv"
            assert curve.is_file() and len(curve.read_text().splitlines()) > 1
            assert starts(out, arm, seed) == 1  # one attempt line per run, in its own log
    assert STACK_LOG in log_of(out, "adam", 0) and "its output is in" in log_of(out, "adam", 1)
    assert sweep(str(path), "--out", str(out)) == 0  # all finished: nothing runs again
    assert starts(out, "adam", 0) == 1
    assert "0 runs to train" in capsys.readouterr().out


def test_the_command_line_overrides_the_file(tmp_path: Path, capsys) -> None:
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, 1, 2, 3], variants=PAIR, seeds_per_process=1)
    out = str(tmp_path / "out")
    for flag, processes in ((None, 8), ("2", 4), ("all", 2), ("3", 4), ("1", 8)):
        extra = [] if flag is None else ["--seeds-per-process", flag]
        assert sweep(str(path), "--out", out, "--dry-run", *extra) == 0
        assert f"8 runs to train in {processes} processes" in capsys.readouterr().out
    write_stacked(tmp_path / "s.yaml", seeds=[0, 1, 2, 3], variants=PAIR)  # default: auto
    assert sweep(str(path), "--out", out, "--dry-run", "--workers", "2") == 0
    assert "in 2 processes" in capsys.readouterr().out  # 2 arms keep 2 workers busy
    assert sweep(str(path), "--out", out, "--dry-run", "--workers", "4") == 0
    assert "in 4 processes" in capsys.readouterr().out


def test_auto_keeps_every_worker_busy_with_the_fewest_processes() -> None:
    assert auto_seeds_per_process(arms=6, seeds=10, workers=2) == 10
    assert auto_seeds_per_process(arms=1, seeds=10, workers=2) == 5
    assert auto_seeds_per_process(arms=3, seeds=10, workers=4) == 5
    assert auto_seeds_per_process(arms=1, seeds=3, workers=8) == 1
    assert auto_seeds_per_process(arms=1, seeds=1000, workers=1) == MAX_SEEDS_PER_PROCESS


@pytest.mark.parametrize("value", [0, MAX_SEEDS_PER_PROCESS + 1, "many", True, 2.5, [2]])
def test_bad_seeds_per_process_is_one_line_and_writes_nothing(tmp_path: Path, capsys, value: Any) -> None:
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, 1], seeds_per_process=value)
    out = tmp_path / "out"
    assert sweep(str(path), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seeds_per_process must be an integer in [1, 256], all or auto" in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "257", "x", "-1", ""])
def test_a_bad_flag_is_one_line_and_writes_nothing(tmp_path: Path, capsys, value: str) -> None:
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, 1])
    out = tmp_path / "out"
    assert sweep(str(path), "--out", str(out), "--seeds-per-process", value) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds-per-process must be an integer in [1, 256], all or auto" in err
    assert not out.exists()


def test_an_arm_a_stack_cannot_train_runs_alone_said_once(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("rlopt.stacked.learner.SUPPORTED_AGENTS", ("ppo",))  # every shipped agent stacks
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, 1], variants=PAIR, seeds_per_process=2)
    assert sweep(str(path), "--out", str(tmp_path / "out"), "--dry-run") == 0
    printed = capsys.readouterr().out
    assert "4 runs to train in 4 processes (0 stacks; seeds_per_process 2)" in printed
    assert printed.count("arm adam runs one seed per process: agent: a2c has no stacked update yet") == 1


def test_an_arm_without_a_stacked_update_stacks_its_rollouts_said_once(tmp_path: Path, capsys) -> None:
    variants = {"adam": PAIR["adam"], "kfac": {"critic.optim": {"name": "kfac", "lr": 0.25}}}
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, 1], variants=variants, seeds_per_process=2)
    assert sweep(str(path), "--out", str(tmp_path / "out"), "--dry-run") == 0
    printed = capsys.readouterr().out
    assert "4 runs to train in 2 processes (2 stacks; seeds_per_process 2)" in printed
    assert printed.count("arm kfac stacks its rollouts, each seed updating alone: critic.optim.name: kfac") == 1
    assert "arm adam" not in printed


def test_a_failed_seed_in_a_stack_is_that_runs_failure(tmp_path: Path, capsys) -> None:
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, NAN_SEEDS_FROM], seeds_per_process="all",
                         set={**TINY, "env.id": "tests.sweep_envs:NanFromSeed-v0", "health.max_consecutive_faults": 2})  # fmt: skip
    out = tmp_path / "out"
    assert sweep(str(path), "--out", str(out)) == 1
    printed = capsys.readouterr().out
    assert f"base seed {NAN_SEEDS_FROM}: FAILED: " in printed and "consecutive updates skipped" in printed
    runs = manifest(out)["runs"]
    assert [(r["seed"], r["status"], r["exit_code"]) for r in runs] == [(0, "finished", 0), (NAN_SEEDS_FROM, "failed", 3)]
    assert (out / "curves" / "base" / "seed_0.csv").is_file()
    assert not (out / "curves" / "base" / f"seed_{NAN_SEEDS_FROM}.csv").exists()
    assert sweep(str(path), "--out", str(out)) == 1  # failed stays failed (and is not re-run) ...
    assert starts(out, "base", NAN_SEEDS_FROM) == 1 and starts(out, "base", 0) == 1
    assert sweep(str(path), "--out", str(out), "--retry-failed") == 1  # ... until retried: alone in its stack
    assert starts(out, "base", NAN_SEEDS_FROM) == 2 and starts(out, "base", 0) == 1
    assert [r["stack"] for r in manifest(out)["runs"]] == [[0, NAN_SEEDS_FROM], [NAN_SEEDS_FROM]]


def test_a_crashed_stack_fails_all_its_seeds(tmp_path: Path, capsys) -> None:
    path = write_stacked(tmp_path / "s.yaml", seeds=[0, 1], seeds_per_process=2,
                         set={**TINY, "env.id": "tests.sweep_envs:CrashAfter-v0"})  # fmt: skip
    out = tmp_path / "out"
    assert sweep(str(path), "--out", str(out)) == 1
    runs = manifest(out)["runs"]
    assert [r["status"] for r in runs] == ["failed", "failed"] and runs[0]["exit_code"] == runs[1]["exit_code"] != 0
    assert "CrashAfter-v0: deliberate failure" in log_of(out, "base", 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="runs die with the driver via PR_SET_PDEATHSIG")
def test_a_killed_stacked_sweep_resumes_per_seed(tmp_path: Path, capsys) -> None:
    path = write_stacked(tmp_path / "kill.yaml", seeds=[0, 1, 2, 3], seeds_per_process=2,
                         set={**TINY, "total_steps": 3072, "checkpoint.every_steps": 256})  # fmt: skip
    out = tmp_path / "out"
    seed = [out / "runs" / "base" / f"seed_{k}" for k in range(4)]
    kill_driver_when(path, out, lambda: (seed[1] / "summary.json").is_file() and bool(list_checkpoints(seed[2]))
                     and bool(list_checkpoints(seed[3])))  # fmt: skip
    assert not (seed[2] / "summary.json").is_file()
    assert [e["status"] for e in manifest(out)["runs"]] == ["finished", "finished", "running", "running"]
    assert sweep(str(path), "--out", str(out), "--dry-run") == 0
    assert "2 runs to train in 1 processes (1 stacks" in capsys.readouterr().out
    assert sweep(str(path), "--out", str(out), "--workers", "1") == 0
    assert [e["status"] for e in manifest(out)["runs"]] == ["finished"] * 4
    assert [starts(out, "base", k) for k in range(4)] == [1, 1, 2, 2]  # the finished stack is not run again
    resumed = log_of(out, "base", 2).split(START_MARKER)[-1]
    assert "--sweep-stack resume" in resumed and "from 0 env steps" not in resumed
    for run in seed:
        assert json.loads((run / "summary.json").read_text())["total_steps"] >= 3072
        assert_no_duplicate_points(run)
        assert (out / "curves" / "base" / f"{run.name}.csv").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals to a process group")
def test_ctrl_c_checkpoints_a_stack_and_the_next_run_resumes_it(tmp_path: Path) -> None:
    """SIGINT to the driver: the stack finishes its update, checkpoints every seed and exits 130; its
    seeds stay pending; the next invocation resumes them from that checkpoint."""
    import signal
    import subprocess
    import time

    from tests.test_sweep import DRIVER

    # SlowCartPole: the stack lasts seconds of wall time under any load, so it is caught while running
    path = write_stacked(tmp_path / "int.yaml", seeds=[0, 1], seeds_per_process=2,
                         set={**TINY, "total_steps": 4096, "checkpoint.every_steps": 256,
                              "env.id": "tests.sweep_envs:SlowCartPole-v0"})  # fmt: skip
    out = tmp_path / "out"
    seed = [out / "runs" / "base" / f"seed_{k}" for k in range(2)]
    # started with SIGINT ignored, as a shell script's `rlopt sweep … &` (and pytest-xdist's workers) start it:
    # the driver still turns SIGINT into a clean stop
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, "sweep", str(path), "--out", str(out), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    deadline = time.monotonic() + 180
    while not all(list_checkpoints(run) for run in seed):
        assert driver.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be interrupted"
        time.sleep(0.02)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=120) == 130
    assert [(e["status"], e["exit_code"]) for e in manifest(out)["runs"]] == [("pending", 130)] * 2
    steps = [int(list_checkpoints(run)[-1].stem.removeprefix("step_")) for run in seed]
    assert steps[0] == steps[1] < 4096 and not (seed[0] / "summary.json").exists()
    assert sweep(str(path), "--out", str(out), "--workers", "1") == 0
    assert f"from {steps[0]} env steps" in log_of(out, "base", 0).split(START_MARKER)[-1]
    assert [e["status"] for e in manifest(out)["runs"]] == ["finished"] * 2
    for run in seed:
        assert_no_duplicate_points(run)


def test_the_stack_job_flag_needs_the_sweeps_arguments(tmp_path: Path, capsys) -> None:
    from rlopt.cli import main

    assert main(["train", "a2c_cartpole", "--run-dir", str(tmp_path / "x"), "--sweep-stack", "start"]) == 2
    assert "--sweep-stack is the sweep's" in capsys.readouterr().err and not (tmp_path / "x").exists()
