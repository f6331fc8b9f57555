"""``search.pruner: median``: trial runs' curves read while they run, MedianPruner decisions that do not depend
on timing, SIGINT of a pruned run (its directory stays resumable), PRUNED in the study and the report.

The real study uses ``curve: actor/lr`` (the learning rate the actor's optimizer used at each update) as the
curve the pruner reads: a trial at lr 1e-9 is then exactly below one at 1e-2 at every step, so which trials are
pruned is known in advance. Its env (``SlowCartPole-v0`` of ``tests.sweep_envs``, imported by the ``rlopt train``
subprocesses) sleeps at each step, so a run lasts seconds of wall time whatever the machine's speed while
using little CPU: long enough for the driver to see its first report and interrupt it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

optuna = pytest.importorskip("optuna", reason='optuna is in the "tune" extra')

from rlopt.config import load_config, validate  # noqa: E402
from rlopt.errors import ConfigError  # noqa: E402
from rlopt.sweep.pruning import TrialWatch, report_steps  # noqa: E402
from tests.test_sweep import DRIVER, ROOT  # noqa: E402

TRIAL_STEPS = 2048


def write_curve(run_dir: Path, points: list[tuple[int, float]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir)) as writer:
        for step, value in points:
            writer.add_scalar("c", value, step)


def test_report_steps_are_twenty_even_steps_ending_at_the_budget() -> None:
    assert report_steps(2000) == list(range(100, 2001, 100))
    assert report_steps(5) == [1, 2, 3, 4, 5] and report_steps(1) == [1]


def test_a_watch_reports_the_steps_every_seed_passed_and_the_same_decision_after_the_end(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    write_curve(tmp_path / "good", [(s, 1.0) for s in range(10, 101, 10)])
    watch = TrialWatch(good, [tmp_path / "good"], 100, "final", "c")
    watch.advance(ended=True)
    # Step 5 has no point yet (nan): not reported; every later step is.
    assert watch.pruned_at is None and sorted(study.get_trials()[0].intermediate_values) == list(range(10, 101, 5))
    study.tell(good, 1.0)
    bad = study.ask()
    write_curve(tmp_path / "bad_0", [(s, 0.0) for s in range(10, 31, 10)])  # seed 0 is at step 30 ...
    write_curve(tmp_path / "bad_1", [(s, 0.0) for s in range(10, 101, 10)])  # ... seed 1 has finished
    watch = TrialWatch(bad, [tmp_path / "bad_0", tmp_path / "bad_1"], 100, "final", "c")
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=25)  # no pruning before step 25
    watch.advance(ended=False)
    assert watch.pruned_at == 25 and watch.reported == 5  # steps 5..25 reported; asked at 25 (0 < the median 1)
    late = study.ask()  # the same curves seen only once its runs ended: the same decision
    watch = TrialWatch(late, [tmp_path / "bad_0", tmp_path / "bad_1"], 100, "final", "c")
    watch.advance(ended=True)
    assert watch.pruned_at == 25


def test_log_flush_seconds_is_checked() -> None:
    cfg = load_config("a2c_cartpole", ["log.flush_seconds=0.5"])
    validate(cfg)
    assert cfg.log.flush_seconds == 0.5
    assert load_config("a2c_cartpole").log.flush_seconds == 120.0  # SummaryWriter's default, as before the key
    for bad in ("0", "-1", "1e9"):
        with pytest.raises(ConfigError, match=r"log.flush_seconds must be in \(0, 86400\]"):
            validate(load_config("a2c_cartpole", [f"log.flush_seconds={bad}"]))


def pruned_sweep(path: Path, **search: Any) -> Path:
    body = {
        "name": path.stem, "base": "a2c_cartpole", "seeds": [0], "curve": "actor/lr",
        "set": {"total_steps": 256, "eval.episodes": 1, "env.id": "tests.sweep_envs:SlowCartPole-v0", "checkpoint.every_steps": 0},
        "search": {"space": {"actor.optim.lr": {"choice": [1.0e-9, 1.0e-2]}}, "trials": 3, "seeds_per_trial": 1,
                   "total_steps": TRIAL_STEPS, "objective": "final", "sampler": "random", "pruner": "median",
                   "startup_trials": 1, "seed": 0, **search},
        "variants": {"adam": {"actor.optim": {"name": "adam", "lr": 0.001}}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_hopeless_trials_are_pruned_mid_run_and_recorded_pruned(tmp_path: Path) -> None:
    path, out = pruned_sweep(tmp_path / "p.yaml"), tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", DRIVER, "sweep", str(path), "--out", str(out), "--workers", "1"],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    trials = json.loads((out / "tuning.json").read_text())["adam"]["trials"]
    lrs, states = [t["params"]["actor.optim.lr"] for t in trials], [t["state"] for t in trials]
    first = lrs.index(1.0e-2)  # the first trial at 1e-2 finishes; every later one at 1e-9 is below it
    assert states == ["COMPLETE" if i <= first or lr == 1.0e-2 else "PRUNED" for i, lr in enumerate(lrs)]
    batch = 16 * 8  # the preset's rollout: the first point of a curve is at step 128
    first_step = min(s for s in report_steps(TRIAL_STEPS) if s >= batch)  # the first step with a value
    assert "PRUNED" in states and f"PRUNED at step {first_step}" in done.stdout
    assert json.loads((out / "tuning.json").read_text())["adam"]["best_params"] == {"actor.optim.lr": 1.0e-2}
    # In the study: PRUNED, never FAIL, with the intermediate values up to the pruning step.
    study = optuna.load_study(study_name="p/adam", storage=f"sqlite:///{out}/tuning.db")
    pruned = [t for t in study.get_trials() if t.state.name == "PRUNED"]
    assert pruned and all(t.last_step == first_step and "failed_run" not in t.user_attrs for t in pruned)
    assert not [t for t in study.get_trials() if t.state.name == "FAIL"]
    # A pruned run was stopped by SIGINT mid-run: checkpointed, no summary, and it resumes.
    run_dir = out / "tuning" / "adam" / f"trial_{pruned[0].number}" / "seed_1"
    assert not (run_dir / "summary.json").exists()
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    stopped_at = int(checkpoints[-1].stem.split("_")[1])
    assert first_step <= stopped_at < TRIAL_STEPS
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["log"]["flush_seconds"] == 0.5
    resumed = subprocess.run([sys.executable, "-m", "rlopt", "train", "--resume", str(run_dir), "--total-steps",
                              str(stopped_at + 128), "--no-progress"], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["total_steps"] >= stopped_at + 128
    # The report counts the pruned trials apart and keeps them out of the expected maximum.
    from rlopt.report.build import build_report

    tuning = build_report(out, reps=50)["arms"]["adam"]["tuning"]
    assert (tuning["trials"], tuning["pruned"], tuning["failed"]) == (3, len(pruned), 0)
    assert len(tuning["expected_max"]["k"]) == 3 - len(pruned)
    assert f"| adam | 3 ({len(pruned)}, 0) |" in (out / "report" / "report.md").read_text()


def test_a_pruned_study_on_a_local_ray(tmp_path: Path) -> None:
    """Trials as Ray tasks (a local Ray of 2 CPUs): the same trials, states and pruning as on the local pool."""
    pytest.importorskip("ray", reason="the Ray backend's tests need ray: pip install -e '.[ray]'")
    from tests.test_sweep import sweep

    path, out = pruned_sweep(tmp_path / "p.yaml"), tmp_path / "out"
    assert sweep(str(path), "--out", str(out), "--backend", "ray", "--workers", "2") == 0
    trials = json.loads((out / "tuning.json").read_text())["adam"]["trials"]
    assert [(t["params"]["actor.optim.lr"], t["state"]) for t in trials] == [
        (1.0e-2, "COMPLETE"), (1.0e-9, "PRUNED"), (1.0e-9, "PRUNED")]  # fmt: skip (as on the local pool, same seed)
    for trial in (1, 2):  # stopped mid-run by SIGINT through the Ray task's process
        run_dir = out / "tuning" / "adam" / f"trial_{trial}" / "seed_1"
        assert not (run_dir / "summary.json").exists() and list((run_dir / "checkpoints").glob("step_*.pt"))
    assert (out / "runs" / "adam" / "seed_0" / "summary.json").is_file()
