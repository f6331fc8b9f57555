"""Issue 12, items 7 and 8: ``agent.save(path)``, ``PPO.load(path_or_run_dir)``, ``agents.load``,
and SB3's ``actions, state = agent.predict(obs, deterministic=True)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import agents
from agents import A2C, AGENTS, PPO, TRPO, Agent
from rlopt.checkpoint import list_checkpoints, load_checkpoint
from rlopt.errors import ConfigError

STEPS = 256
HORIZON = 4 * STEPS
"""The config's total_steps: LR schedules that decay over it are still far from 0 after ``STEPS``."""
TINY = {"total_steps": HORIZON, "env": {"num_envs": 2}, "rollout": {"n_steps": 64}, "eval": {"episodes": 1}}
OBS_BATCH = 16


def trained(name: str, env_id: str, **values) -> Agent:
    """A tiny agent of ``name`` on ``env_id`` after ``STEPS`` env steps of training (no run directory)."""
    preset = f"configs/{name}_{'cartpole' if env_id.startswith('CartPole') else 'pendulum'}.yaml"
    merged = {**TINY, **values, "env": {**TINY["env"], "id": env_id, **values.get("env", {})}}
    if name == "ppo":
        merged.setdefault("ppo", {"minibatch_size": 32, "epochs": 2})
    if name in ("npg", "trpo", "reinforce"):
        merged.setdefault("critic", {"minibatch_size": 64})
    agent = AGENTS[name].from_config(preset, **merged)
    agent.learn(STEPS, progress=False)
    assert agent.updates_done > 0
    return agent


def observations(agent: Agent, n: int = OBS_BATCH) -> np.ndarray:
    """A fixed batch of observations spread over the observation space (wide enough to move the normaliser)."""
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 2.0, size=(n, *agent.observation_space.shape)).astype(np.float32)


def assert_same_policy(a: Agent, b: Agent) -> None:
    obs = observations(a)
    det_a, state_a = a.predict(obs, deterministic=True)
    det_b, state_b = b.predict(obs, deterministic=True)
    assert state_a is None and state_b is None
    np.testing.assert_array_equal(det_a, det_b)
    torch.manual_seed(123)
    sto_a, _ = a.predict(obs, deterministic=False)
    torch.manual_seed(123)
    sto_b, _ = b.predict(obs, deterministic=False)
    np.testing.assert_array_equal(sto_a, sto_b)
    torch.manual_seed(124)
    assert not np.array_equal(a.predict(obs, deterministic=False)[0], sto_a)  # sampling really is stochastic


def assert_same_state(a: Agent, b: Agent) -> None:
    for (name, x), (_, y) in zip(a.actor.state_dict().items(), b.actor.state_dict().items()):
        assert torch.equal(x, y), name
    if a.critic is not None:
        assert b.critic is not None
        for x, y in zip(a.critic.parameters(), b.critic.parameters()):
            assert torch.equal(x, y)
    assert a.updates_done == b.updates_done
    assert a.actor_optimizer.param_groups[0]["lr"] == b.actor_optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("name", sorted(AGENTS))
def test_save_load_round_trip_predicts_identically_and_keeps_learning(name: str, env_id: str, tmp_path: Path) -> None:
    agent = trained(name, env_id, env={"normalize_obs": True})
    path = agent.save(tmp_path / "deep" / "agent.pt")
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["agent.pt"]  # no temp file left
    saved = torch.load(path, weights_only=True)  # tensors and plain containers only
    assert set(saved) == {"saved_agent_format", "config", "agent"}
    loaded = type(agent).load(path)
    assert type(loaded) is type(agent) and loaded.cfg == agent.cfg
    assert loaded.obs_normalizer is not None and loaded.obs_normalizer.count == agent.obs_normalizer.count
    assert_same_state(agent, loaded)
    assert_same_policy(agent, loaded)
    before = [p.detach().clone() for p in loaded.actor.parameters()]
    updates = loaded.updates_done
    summary = loaded.learn(STEPS, progress=False)
    assert summary["total_steps"] >= STEPS and loaded.updates_done > updates
    assert any(not torch.equal(x, y) for x, y in zip(before, loaded.actor.parameters()))


def test_load_from_a_run_directory_takes_the_newest_checkpoint(tmp_path: Path) -> None:
    agent = PPO.from_config("configs/ppo_cartpole.yaml", **TINY, checkpoint={"every_steps": 128, "keep": 5},
                            ppo={"minibatch_size": 32, "epochs": 2})  # fmt: skip
    agent.learn(STEPS, run_dir=tmp_path / "run", progress=False)
    found = list_checkpoints(tmp_path / "run")
    assert len(found) >= 2
    newest = load_checkpoint(found[-1])["agent"]
    for loader in (PPO.load, agents.load, Agent.load):
        loaded = loader(tmp_path / "run")
        assert type(loaded) is PPO and loaded.updates_done == int(newest["updates_done"]) == agent.updates_done
        assert_same_policy(agent, loaded)
    older = PPO.load(found[0])  # one checkpoint of the run, by its file
    assert older.updates_done == int(load_checkpoint(found[0])["agent"]["updates_done"]) < agent.updates_done


def test_load_does_not_touch_the_global_torch_rng(tmp_path: Path) -> None:
    path = trained("a2c", "CartPole-v1").save(tmp_path / "a2c.pt")
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    A2C.load(path)
    assert torch.equal(torch.rand(3), expected)


def test_agents_load_picks_the_class_from_the_saved_config(tmp_path: Path) -> None:
    for name, cls in (("trpo", TRPO), ("a2c", A2C)):
        path = trained(name, "Pendulum-v1").save(tmp_path / f"{name}.pt")
        loaded = agents.load(path)
        assert type(loaded) is cls and loaded.cfg.agent == name and loaded.cfg.device == "auto"
        assert agents.load(path, device="cpu").cfg.device == "cpu"  # the saved device can be overridden


def test_loading_another_agents_file_is_a_one_line_error_naming_both(tmp_path: Path) -> None:
    path = trained("a2c", "CartPole-v1").save(tmp_path / "a2c.pt")
    with pytest.raises(ConfigError) as err:
        PPO.load(path)
    message = str(err.value)
    assert "\n" not in message and "A2C" in message and "PPO" in message and str(path) in message
    with pytest.raises(ConfigError, match="TRPO.*A2C|A2C.*TRPO"):
        TRPO.load(path)


def test_load_bad_paths_are_one_line_config_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    (tmp_path / "empty_dir").mkdir()
    for bad, pattern in (
        (tmp_path / "missing.pt", "no such file"),
        (tmp_path / "junk.pt", "not a readable rlopt file"),
        (tmp_path / "other.pt", "neither a file written by agent.save"),
        (tmp_path / "empty_dir", "run directory with a checkpoint"),
    ):
        with pytest.raises(ConfigError, match=pattern) as err:
            agents.load(bad)
        assert "\n" not in str(err.value)


def test_predict_returns_actions_and_none_for_single_and_batch() -> None:
    for name, env_id in (("ppo", "CartPole-v1"), ("ppo", "Pendulum-v1")):
        agent = AGENTS[name].from_config(
            f"configs/{name}_{'cartpole' if env_id.startswith('CartPole') else 'pendulum'}.yaml",
            **{**TINY, "env": {**TINY["env"], "id": env_id}}, ppo={"minibatch_size": 32},
        )
        obs = observations(agent, 5)
        result = agent.predict(obs)
        assert isinstance(result, tuple) and len(result) == 2 and result[1] is None
        batch, _ = result
        single, state = agent.predict(obs[0], state=None, episode_start=None, deterministic=True)
        assert state is None
        action_shape = agent.action_space.shape  # () for Discrete, (1,) for Pendulum
        assert batch.shape == (5, *action_shape) and np.shape(single) == action_shape
        np.testing.assert_allclose(single, batch[0], atol=1e-6)  # kernels may differ by batch size
        episode_start = np.ones(5, dtype=bool)  # accepted and ignored: the policies are feed-forward
        np.testing.assert_array_equal(agent.predict(obs, None, episode_start)[0], batch)
