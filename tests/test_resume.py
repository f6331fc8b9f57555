"""Exact resume: a run killed at an arbitrary moment and resumed ends bit-identical on CPU.

Issue "Runs you can trust", requirement 2. A ``python -m rlopt.cli train`` subprocess is killed
with SIGKILL (or interrupted with SIGINT) after it has written a checkpoint, then continued with
``rlopt train --resume RUN_DIR``. Every TensorBoard scalar except ``time/*`` (read with
tensorboard's EventAccumulator, which applies the resumed writer's ``purge_step``), the final
weights and the final evaluation must equal those of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlopt.checkpoint import list_checkpoints, load_checkpoint
from rlopt.cli import EXIT_INTERRUPTED, main

ROOT = Path(__file__).resolve().parents[1]
EVAL_KEYS = ("eval_return_mean", "eval_return_std", "eval_episodes", "total_steps", "skipped_updates")
POLL_SECONDS = 0.02
STARTUP_TIMEOUT_SECONDS = 60.0

# Small runs that still cross several checkpoints, so the kill lands mid-run.
DISCRETE = [
    str(ROOT / "configs" / "ppo_cartpole.yaml"),
    "total_steps=3840", "checkpoint.every_steps=768", "checkpoint.keep=3",
    "env.num_envs=4", "ppo.epochs=2", "ppo.minibatch_size=64", "eval.episodes=2",
]  # fmt: skip
CONTINUOUS = [
    str(ROOT / "configs" / "trpo_pendulum.yaml"),
    "total_steps=5120", "checkpoint.every_steps=1024", "checkpoint.keep=3", "env.normalize_obs=true",
    "rollout.n_steps=128", "critic.updates=2", "eval.episodes=2",
]  # fmt: skip

# ACKTR: K-FAC factors, stale inverses (update_every 2) and the critic's momentum must survive resume.
KFAC_CONTINUOUS = [
    str(ROOT / "configs" / "acktr_pendulum.yaml"),
    "total_steps=5120", "checkpoint.every_steps=1024", "checkpoint.keep=3", "env.num_envs=4",
    "rollout.n_steps=128", "critic.updates=2", "eval.episodes=2",
    "actor.optim.kfac_update_every=2", "actor.optim.kfac_stat_decay=0.9", "critic.optim.update_every=2",
]  # fmt: skip


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every scalar but ``time/*``, as TensorBoard shows them."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0 = keep every point
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        if not tag.startswith("time/"):
            out[tag] = [(e.step, e.value) for e in events.Scalars(tag)]
    return out


def train_in_process(args: list[str], run_dir: Path) -> None:
    assert main(["train", *args, "--run-dir", str(run_dir), "--no-progress"]) == 0


def resume_in_process(run_dir: Path) -> None:
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0


def start_cli_training(args: list[str], run_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "rlopt.cli", "train", *args, "--run-dir", str(run_dir), "--no-progress"]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def wait_for_checkpoints(process: subprocess.Popen, run_dir: Path, count: int) -> float:
    """Poll until ``count`` complete checkpoints exist (fails if the process ends first); returns the time."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while len(list_checkpoints(run_dir)) < count:
        assert process.poll() is None, f"training ended before {count} checkpoints: {process.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(POLL_SECONDS)
    return time.monotonic()


def assert_identical_runs(reference: Path, resumed: Path) -> None:
    ref_scalars, got_scalars = scalars(reference), scalars(resumed)
    assert ref_scalars.keys() == got_scalars.keys()
    assert {"actor/loss", "critic/loss", "actor/kl", "health/skipped_updates"} <= ref_scalars.keys()
    for tag, points in got_scalars.items():
        steps = [step for step, _ in points]
        assert len(steps) == len(set(steps)), f"{tag}: duplicated steps {steps}"
        assert points == ref_scalars[tag], f"{tag} differs after resume"
    ref_summary = json.loads((reference / "summary.json").read_text())
    got_summary = json.loads((resumed / "summary.json").read_text())
    assert {k: got_summary[k] for k in EVAL_KEYS} == {k: ref_summary[k] for k in EVAL_KEYS}
    ref_agent = load_checkpoint(list_checkpoints(reference)[-1])["agent"]
    got_agent = load_checkpoint(list_checkpoints(resumed)[-1])["agent"]
    for network in ("actor", "critic"):
        for name, tensor in ref_agent[network].items():
            assert torch.equal(got_agent[network][name], tensor), f"{network}.{name}"


def sigkill_running(process: subprocess.Popen, what: str) -> None:
    """SIGKILL ``process``, which must still be running (``what`` says why it should be)."""
    assert process.poll() is None, what
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def reap(process: subprocess.Popen) -> None:
    """Kill ``process`` if a failed assertion left it running, and collect its pipes."""
    if process.poll() is None:
        process.kill()
    process.communicate()


def kill_and_resume(args: list[str], reference: Path, run_dir: Path, delay_rng: random.Random) -> None:
    process = start_cli_training(args, run_dir)
    try:
        first = wait_for_checkpoints(process, run_dir, count=1)
        interval = wait_for_checkpoints(process, run_dir, count=2) - first
        # Anywhere in the third checkpoint interval: mid-rollout, mid-update, mid-checkpoint write.
        delay = delay_rng.uniform(0.0, interval)
        time.sleep(delay)
        sigkill_running(process, f"run finished before the kill (delay {delay:.3f} s of {interval:.3f} s)")
    finally:
        reap(process)
    assert not (run_dir / "summary.json").exists()
    resume_in_process(run_dir)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # the killed writer's and the resumed one
    assert_identical_runs(reference, run_dir)


@pytest.fixture(scope="module")
def discrete_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "ppo"
    train_in_process(DISCRETE, run_dir)
    return run_dir


def test_sigkill_then_resume_matches_uninterrupted_run_discrete(discrete_reference: Path, tmp_path: Path) -> None:
    kill_and_resume(DISCRETE, discrete_reference, tmp_path / "run", random.Random(time.time_ns()))


def test_sigkill_then_resume_matches_uninterrupted_run_continuous_normalised(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    train_in_process(CONTINUOUS, reference)
    kill_and_resume(CONTINUOUS, reference, tmp_path / "run", random.Random(time.time_ns()))


def test_sigkill_then_resume_matches_uninterrupted_run_kfac(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    train_in_process(KFAC_CONTINUOUS, reference)
    kill_and_resume(KFAC_CONTINUOUS, reference, tmp_path / "run", random.Random(time.time_ns()))


def test_ctrl_c_checkpoints_exits_130_and_resume_matches(discrete_reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = start_cli_training(DISCRETE, run_dir)
    try:
        wait_for_checkpoints(process, run_dir, count=1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert f"rlopt train --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    stopped_at = load_checkpoint(list_checkpoints(run_dir)[-1])["env_steps"]
    assert 768 <= stopped_at < 3840
    resume_in_process(run_dir)
    assert_identical_runs(discrete_reference, run_dir)
