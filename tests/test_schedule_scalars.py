"""What the coefficient schedules do reaches TensorBoard (issue 12, item 13): ``schedule/entropy_coef``,
``schedule/ppo_clip`` and ``schedule/max_kl`` at the value each update used, beside the trust-region
step's own diagnostics."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlopt.cli import main

BATCH = 128
"""env.num_envs=2 × rollout.n_steps=64."""
UPDATES = 4
TINY = [f"total_steps={BATCH * UPDATES}", "env.num_envs=2", "rollout.n_steps=64", "eval.episodes=1"]


def train(tmp_path: Path, preset: str, *overrides: str) -> EventAccumulator:
    run_dir = tmp_path / "run"
    code = main(["train", preset, *TINY, *overrides, "--run-dir", str(run_dir), "--no-progress"])
    assert code == 0
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return events


def logged(events: EventAccumulator, tag: str) -> tuple[list[int], list[float]]:
    points = events.Scalars(tag)
    return [p.step for p in points], [p.value for p in points]


def linear(value: float, update: int, end_factor: float = 0.0) -> float:
    """The closed form of a ``linear`` coefficient schedule at update ``update`` of ``UPDATES``."""
    return value * (1.0 + (end_factor - 1.0) * update / UPDATES)


def test_ppo_logs_its_clip_range_and_entropy_coefficient_every_update(tmp_path: Path) -> None:
    events = train(
        tmp_path, "ppo_cartpole", "ppo.minibatch_size=64", "ppo.epochs=2",
        "ppo.clip={value: 0.2, name: linear}", "entropy_coef={value: 0.01, name: linear}",
    )  # fmt: skip
    steps, clips = logged(events, "schedule/ppo_clip")
    assert steps == [BATCH * k for k in range(1, UPDATES + 1)]  # one point per update, at its env steps
    assert clips == pytest.approx([linear(0.2, u) for u in range(UPDATES)], rel=1e-6)  # the value update u used
    assert all(a > b for a, b in zip(clips, clips[1:]))
    steps, entropy = logged(events, "schedule/entropy_coef")
    assert steps == [BATCH * k for k in range(1, UPDATES + 1)]
    assert entropy == pytest.approx([linear(0.01, u) for u in range(UPDATES)], rel=1e-6)
    assert "schedule/max_kl" not in events.Tags()["scalars"]


def test_trpo_logs_its_max_kl_schedule_and_the_step_diagnostics(tmp_path: Path) -> None:
    events = train(tmp_path, "trpo_cartpole", "critic.minibatch_size=64",
                   "actor.optim.max_kl={value: 0.02, name: linear, end_factor: 0.5}")
    steps, radii = logged(events, "schedule/max_kl")
    assert steps == [BATCH * k for k in range(1, UPDATES + 1)]
    assert radii == pytest.approx([linear(0.02, u, end_factor=0.5) for u in range(UPDATES)], rel=1e-6)
    _, entropy = logged(events, "schedule/entropy_coef")
    assert entropy == [0.0] * UPDATES  # the preset's constant 0
    tags = set(events.Tags()["scalars"])
    assert {"actor/expected_improvement", "actor/actual_improvement", "actor/step_fraction"} <= tags
    assert "schedule/ppo_clip" not in tags
    _, fractions = logged(events, "actor/step_fraction")
    assert len(fractions) == UPDATES and all(0.0 < f <= 1.0 for f in fractions)


def test_a2c_logs_only_the_entropy_coefficient(tmp_path: Path) -> None:
    events = train(tmp_path, "a2c_cartpole", "entropy_coef={value: 0.05, name: linear}")
    tags = {tag for tag in events.Tags()["scalars"] if tag.startswith("schedule/")}
    assert tags == {"schedule/entropy_coef"}
    assert logged(events, "schedule/entropy_coef")[1] == pytest.approx([linear(0.05, u) for u in range(UPDATES)], rel=1e-6)
