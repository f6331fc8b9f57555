"""Determinism: the same config and seed give the same run, bit for bit; another seed does not.

Issue "Runs you can trust", requirement 3, for a discrete agent (PPO on CartPole) and a
continuous one (TRPO on Pendulum with observation normalisation), through the Python API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import PPO, TRPO, Agent

ROOT = Path(__file__).resolve().parents[1]

CASES: dict[str, tuple[type[Agent], Path, dict[str, Any]]] = {
    "ppo_cartpole": (
        PPO,
        ROOT / "configs" / "ppo_cartpole.yaml",
        {"total_steps": 1536, "env": {"num_envs": 4}, "ppo": {"epochs": 4, "minibatch_size": 64}},
    ),
    "trpo_pendulum_normalised": (
        TRPO,
        ROOT / "configs" / "trpo_pendulum.yaml",
        {"total_steps": 2048, "env": {"normalize_obs": True}, "rollout": {"n_steps": 128}, "critic": {"updates": 5}},
    ),
}


def train(case: str, seed: int, run_dir: Path) -> tuple[Agent, dict[str, Any]]:
    cls, config, values = CASES[case]
    agent = cls.from_config(config, seed=seed, eval={"episodes": 3}, **values)
    summary = agent.learn(run_dir=run_dir, progress=False)
    return agent, summary


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged scalar except the wall-clock ones (``time/*``)."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if not tag.startswith("time/")
    }


def weights(agent: Agent) -> dict[str, torch.Tensor]:
    state = {f"actor.{k}": v for k, v in agent.actor.state_dict().items()}
    state.update({f"critic.{k}": v for k, v in agent.critic.state_dict().items()})
    if agent.obs_normalizer is not None:
        state["obs_normalizer.mean"] = agent.obs_normalizer.mean
    return state


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_same_run_other_seed_other_run(case: str, tmp_path: Path) -> None:
    first, first_summary = train(case, seed=3, run_dir=tmp_path / "first")
    second, second_summary = train(case, seed=3, run_dir=tmp_path / "second")
    other, other_summary = train(case, seed=4, run_dir=tmp_path / "other")

    first_weights, second_weights, other_weights = weights(first), weights(second), weights(other)
    for name, tensor in first_weights.items():
        assert torch.equal(second_weights[name], tensor), f"{name} differs between identical runs"
    assert any(not torch.equal(other_weights[name], t) for name, t in first_weights.items())

    first_scalars, second_scalars, other_scalars = (scalars(tmp_path / d) for d in ("first", "second", "other"))
    assert len(first_scalars["actor/loss"]) >= 4
    assert first_scalars == second_scalars
    assert first_scalars["actor/loss"] != other_scalars["actor/loss"]
    assert first_scalars["critic/loss"] != other_scalars["critic/loss"]

    eval_keys = ("eval_return_mean", "eval_return_std", "total_steps")
    assert [first_summary[k] for k in eval_keys] == [second_summary[k] for k in eval_keys]
    assert first_summary["eval_return_mean"] != other_summary["eval_return_mean"]


def test_fresh_agents_with_same_seed_start_from_identical_weights() -> None:
    cls, config, values = CASES["ppo_cartpole"]
    a, b, c = (cls.from_config(config, seed=seed, **values) for seed in (7, 7, 8))
    first_weights, other_weights = weights(a), weights(c)
    assert all(torch.equal(weights(b)[name], tensor) for name, tensor in first_weights.items())
    matrices = [name for name in first_weights if name.endswith("weight")]
    assert all(not torch.equal(other_weights[name], first_weights[name]) for name in matrices)
