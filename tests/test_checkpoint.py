"""Checkpoints: what they hold, when they are written, how they are loaded and pruned.

Issue "Runs you can trust", requirement 1: a checkpoint every ``checkpoint.every_steps`` env
steps and at the end, written atomically, holding everything needed to continue exactly, and
loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import PPO
from rlopt.checkpoint import CHECKPOINT_DIR, list_checkpoints, load_checkpoint, load_envs
from rlopt.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
PPO_CARTPOLE = ROOT / "configs" / "ppo_cartpole.yaml"
NUM_ENVS, N_STEPS = 4, 32
BATCH = NUM_ENVS * N_STEPS  # 128 env steps per update


def make_trainer(run_dir: Path, total_steps: int, every_steps: int, keep: int = 100) -> Trainer:
    """PPO CartPole with an observation normaliser and a linear LR schedule (the preset's)."""
    agent = PPO.from_config(
        PPO_CARTPOLE,
        total_steps=total_steps,
        env={"num_envs": NUM_ENVS, "normalize_obs": True},
        rollout={"n_steps": N_STEPS},
        ppo={"epochs": 2, "minibatch_size": 64},
        checkpoint={"every_steps": every_steps, "keep": keep},
        eval={"episodes": 2},
    )
    return Trainer(agent, run_dir=run_dir, progress=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    """A finished run of 8 updates (1024 steps); checkpoints every 384 steps -> 384, 768, 1024."""
    trainer = make_trainer(tmp_path_factory.mktemp("run"), total_steps=1024, every_steps=384)
    trainer.train()
    return trainer


def test_checkpoints_every_n_env_steps_and_at_the_end(finished_run: Trainer) -> None:
    # 128-step updates cross 384 and 768 exactly; the end (1024) is not a multiple of 384.
    names = [p.name for p in list_checkpoints(finished_run.run_dir)]
    assert names == ["step_000000000384.pt", "step_000000000768.pt", "step_000000001024.pt"]
    for path in list_checkpoints(finished_run.run_dir):
        assert path.with_suffix(".env").is_file()


def test_checkpoint_holds_networks_optimizers_schedules_normaliser_and_counters(finished_run: Trainer) -> None:
    final = list_checkpoints(finished_run.run_dir)[-1]
    state = torch.load(final, map_location="cpu", weights_only=True)  # no pickled code runs
    agent = finished_run.agent
    assert state["env_steps"] == 1024 and state["skipped_updates"] == 0 and state["consecutive_faults"] == 0
    saved = state["agent"]
    assert saved["updates_done"] == agent.updates_done == 8
    for name, module in (("actor", agent.actor), ("critic", agent.critic)):
        live = module.state_dict()
        assert saved[name].keys() == live.keys()
        for key in live:
            assert torch.equal(saved[name][key], live[key]), f"{name}.{key}"
    # Adam: one state entry per parameter, moments equal to the live optimizer's, step = updates x minibatches.
    for name, optimizer in (("actor_optimizer", agent.actor_optimizer), ("critic_optimizer", agent.critic_optimizer)):
        live_state = optimizer.state_dict()["state"]
        assert saved[name]["state"].keys() == live_state.keys()
        for index, moments in live_state.items():
            assert float(saved[name]["state"][index]["step"]) == 8 * 2 * (BATCH // 64)
            assert torch.equal(saved[name]["state"][index]["exp_avg_sq"], moments["exp_avg_sq"])
        assert saved[name]["param_groups"][0]["lr"] == optimizer.param_groups[0]["lr"]
    assert saved["actor_scheduler"]["last_epoch"] == 8
    # The normaliser has seen one observation per env step (plus the 1e-4 prior count).
    normaliser = saved["obs_normalizer"]
    assert normaliser["count"] == pytest.approx(1e-4 + 1024, rel=1e-12)
    assert torch.equal(normaliser["mean"], agent.obs_normalizer.mean)
    assert torch.equal(normaliser["var"], agent.obs_normalizer.var)
    assert state["collector"]["total_env_steps"] == 1024


def test_checkpoint_holds_the_rng_and_env_states_of_its_moment(finished_run: Trainer) -> None:
    # Nothing after the final checkpoint draws from the global RNGs (evaluation is deterministic),
    # so the saved states equal the live ones.
    state = load_checkpoint(list_checkpoints(finished_run.run_dir)[-1])
    rng = state["rng"]
    assert torch.equal(rng["torch"], torch.get_rng_state())
    numpy_keys = np.random.get_state()[1]
    assert np.array_equal(rng["numpy"]["keys"].numpy(), numpy_keys.astype(np.int64))
    assert rng["numpy"]["pos"] == np.random.get_state()[2]
    assert tuple(rng["python"][1]) == random.getstate()[1]
    # Env states and env RNGs live in the pickled vector env beside the .pt.
    saved_envs = load_envs(list_checkpoints(finished_run.run_dir)[-1])
    live_envs = finished_run.envs  # CartPole's own vector env: state [4, num_envs], one RNG
    assert np.array_equal(saved_envs.state, live_envs.state)
    assert np.array_equal(saved_envs.steps, live_envs.steps) and live_envs.steps.any()
    assert saved_envs.np_random.bit_generator.state == live_envs.np_random.bit_generator.state
    assert saved_envs.action_space.np_random.bit_generator.state == live_envs.action_space.np_random.bit_generator.state
    assert torch.equal(state["collector"]["raw_obs"], finished_run.collector._raw_obs)


def test_safe_loader_refuses_a_checkpoint_that_would_run_code(tmp_path: Path) -> None:
    evil = tmp_path / "step_000000000001.pt"
    torch.save({"agent": os.system}, evil)  # pickles a callable: weights_only must reject it
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(evil)


def test_keep_prunes_to_the_newest_n_checkpoints(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, total_steps=768, every_steps=128, keep=2)
    trainer.train()
    files = sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir())
    assert files == ["step_000000000640.env", "step_000000000640.pt", "step_000000000768.env", "step_000000000768.pt"]


def test_partial_temp_file_and_orphan_env_are_ignored_then_removed(finished_run: Trainer, tmp_path: Path) -> None:
    folder = finished_run.run_dir / CHECKPOINT_DIR
    # What a SIGKILL in the middle of writing a newer checkpoint leaves behind.
    partial = folder / ".step_000000009999.pt.k1ll3d.tmp"
    partial.write_bytes(b"\x80\x02truncated")
    orphan_env = folder / "step_000000009999.env"
    orphan_env.write_bytes(b"half an env")
    assert list_checkpoints(finished_run.run_dir)[-1].name == "step_000000001024.pt"

    resumed = make_trainer(finished_run.run_dir, total_steps=1152, every_steps=384)
    assert resumed.resume() == 1024
    for name, value in resumed.agent.actor.state_dict().items():
        assert torch.equal(value, finished_run.agent.actor.state_dict()[name])
    resumed.train()  # one more update and a final checkpoint, which sweeps the leftovers
    assert not partial.exists() and not orphan_env.exists()
    assert list_checkpoints(finished_run.run_dir)[-1].name == "step_000000001152.pt"
