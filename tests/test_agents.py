"""The five agents on the shared layer: one update each on both action-space kinds, the stats
contract, parameter separation, the Python API, and that NPG/TRPO are one code path."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import ACKTR, AGENTS, NPG, PPO, TRPO, A2C, REINFORCE, Agent
from rlopt.envs import make_vec_env
from rlopt.errors import ConfigError
from rlopt.rollout import RolloutCollector

COMMON_TAGS = {
    "actor/loss", "actor/entropy", "actor/kl", "actor/kl_max", "actor/grad_norm", "actor/lr",
}
CRITIC_TAGS = {"critic/loss", "critic/grad_norm", "critic/lr", "critic/explained_variance"}
TRUST_REGION_TAGS = {
    "actor/cg_residual", "actor/line_search_steps", "actor/step_accepted", "actor/cos_to_grad",
    "actor/expected_improvement", "actor/actual_improvement", "actor/improvement_ratio", "actor/step_norm",
    "actor/step_fraction", "actor/cg_iterations", "actor/negative_curvature",
}
SCHEDULE_TAGS = {"ppo": {"schedule/ppo_clip"}, **dict.fromkeys(("npg", "trpo", "acktr"), {"schedule/max_kl"})}
"""The coefficients an agent reads, beside ``schedule/entropy_coef`` (every agent)."""
TINY = {"total_steps": 512, "env": {"num_envs": 2}, "rollout": {"n_steps": 64}}


def make_agent(name: str, env_id: str, **values) -> Agent:
    preset = f"configs/{name}_{'cartpole' if env_id.startswith('CartPole') else 'pendulum'}.yaml"
    merged = {**TINY, **values}
    merged["env"] = {**TINY["env"], "id": env_id, **values.get("env", {})}
    if name == "ppo":
        merged.setdefault("ppo", {"minibatch_size": 32, "epochs": 2})
    if name in ("npg", "trpo", "reinforce"):
        merged.setdefault("critic", {"minibatch_size": 64})
    return AGENTS[name].from_config(preset, **merged)


def one_update(agent: Agent):
    envs = make_vec_env(agent.cfg.env.id, agent.cfg.env.num_envs, seed=0)
    collector = RolloutCollector(envs, agent.cfg.rollout.n_steps, obs_normalizer=agent.obs_normalizer, seed=0)
    collector.collect(agent.act, agent.value)
    batch = agent.prepare_batch(collector.buffer)
    envs.close()
    return batch, agent.update(batch)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("name", sorted(AGENTS))
def test_update_reports_the_tag_contract(name: str, env_id: str) -> None:
    agent = make_agent(name, env_id)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    _, stats = one_update(agent)
    tags = stats.scalars()
    expected = set(COMMON_TAGS)
    if agent.critic is not None:
        expected |= CRITIC_TAGS
    if name in ("npg", "trpo", "acktr"):
        expected |= TRUST_REGION_TAGS
    if name == "ppo":
        expected |= {"actor/clip_fraction"}
    expected |= SCHEDULE_TAGS.get(name, set()) | {"schedule/entropy_coef"}
    assert set(tags) == expected
    assert all(math.isfinite(v) for v in tags.values()), tags
    assert not stats.skipped
    assert tags["actor/kl"] >= 0 and tags["actor/kl_max"] >= tags["actor/kl"] - 1e-7
    moved = any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    assert moved == (tags.get("actor/step_accepted", 1.0) == 1.0)


def test_kl_is_exact_mean_over_the_batch_after_the_update() -> None:
    agent = make_agent("a2c", "CartPole-v1")
    envs = make_vec_env("CartPole-v1", 2, seed=0)
    collector = RolloutCollector(envs, 64, seed=0)
    collector.collect(agent.act, agent.value)
    batch = agent.prepare_batch(collector.buffer)
    with torch.no_grad():
        old = agent.actor(batch.obs).detach()
    stats = agent.update(batch)
    with torch.no_grad():
        new = agent.actor(batch.obs)
    expected = (old.probs * (old.log_probs - new.log_probs)).sum(-1).mean().item()
    assert stats.actor_kl == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert expected > 0


def test_actor_and_critic_are_separated_by_construction() -> None:
    agent = make_agent("ppo", "Pendulum-v1")
    actor_ids = {id(p) for p in agent.actor.parameters()}
    critic_ids = {id(p) for p in agent.critic.parameters()}
    assert actor_ids.isdisjoint(critic_ids)
    assert {id(p) for g in agent.actor_optimizer.param_groups for p in g["params"]} == actor_ids
    assert {id(p) for g in agent.critic_optimizer.param_groups for p in g["params"]} == critic_ids
    # the critic loss gives gradients to critic parameters only (TorchRL's test)
    obs = torch.randn(8, 3)
    agent.critic(obs).pow(2).mean().backward()
    assert all(p.grad is None for p in agent.actor.parameters())
    assert all(p.grad is not None for p in agent.critic.parameters())


def test_separate_optimizers_learning_rates_and_schedules() -> None:
    agent = make_agent(
        "a2c", "CartPole-v1",
        actor={"optim": {"name": "momentum", "lr": 0.05}, "schedule": {"name": "linear"}},
        critic={"optim": {"name": "rmsprop", "lr": 0.002, "alpha": 0.9}, "schedule": {"name": "step", "step_size": 1, "gamma": 0.5}},
    )
    assert isinstance(agent.actor_optimizer, torch.optim.SGD) and agent.actor_optimizer.param_groups[0]["momentum"] == 0.9
    assert isinstance(agent.critic_optimizer, torch.optim.RMSprop)
    _, first = one_update(agent)
    _, second = one_update(agent)
    assert first.actor_lr == pytest.approx(0.05) and first.critic_lr == pytest.approx(0.002)
    horizon = agent.cfg.num_updates
    assert second.actor_lr == pytest.approx(0.05 * (1 - 1 / horizon))
    assert second.critic_lr == pytest.approx(0.001)


def test_entropy_coefficient_schedule_changes_the_loss() -> None:
    agent = make_agent("a2c", "CartPole-v1", entropy_coef={"value": 0.5, "name": "linear"})
    assert agent.current_entropy_coef == pytest.approx(0.5)
    one_update(agent)
    assert agent.current_entropy_coef == pytest.approx(0.5 * (1 - 1 / agent.cfg.num_updates))


def test_npg_and_trpo_share_the_trust_region_step() -> None:
    npg, trpo = make_agent("npg", "CartPole-v1"), make_agent("trpo", "CartPole-v1")
    assert type(npg.actor_optimizer) is type(trpo.actor_optimizer)
    assert TRPO.actor_step is NPG.actor_step and issubclass(TRPO, NPG)
    assert npg.actor_optimizer.param_groups[0]["line_search"] is False
    assert trpo.actor_optimizer.param_groups[0]["line_search"] is True
    # the preset's line_search decides, not the class, when given explicitly
    npg_with_search = make_agent("npg", "CartPole-v1", actor={"optim": {"name": "trust_region", "line_search": True}})
    assert npg_with_search.actor_optimizer.param_groups[0]["line_search"] is True


def test_each_agent_overrides_one_hook_of_its_parent() -> None:
    hooks = ("compute_targets", "actor_step", "optimize")
    overridden = {
        cls.name: [h for h in hooks if h in vars(cls) and hasattr(cls.__base__, h)]
        for cls in (REINFORCE, A2C, NPG, TRPO, PPO, ACKTR)
    }
    assert overridden == {"reinforce": ["compute_targets"], "a2c": ["optimize"], "npg": ["actor_step"], "trpo": [],
                          "ppo": ["optimize"], "acktr": []}  # fmt: skip
    assert A2C.__base__ is PPO.__base__ is Agent and Agent.__abstractmethods__ == {"optimize"}


def test_the_base_class_is_abstract() -> None:
    agent = make_agent("a2c", "CartPole-v1")
    with pytest.raises(TypeError, match="abstract"):
        Agent(agent.cfg, agent.observation_space, agent.action_space)


def test_trust_region_only_for_npg_and_trpo() -> None:
    # Switching the optimizer by name drops the old one's options with a notice, before the refusal.
    with pytest.raises(ConfigError, match="actor.optim.name"), pytest.warns(UserWarning, match="does not take eps"):
        make_agent("ppo", "CartPole-v1", actor={"optim": {"name": "trust_region"}})
    with pytest.raises(ConfigError, match="actor.optim.name"), pytest.warns(UserWarning, match="does not take max_kl"):
        make_agent("trpo", "CartPole-v1", actor={"optim": {"name": "adam", "lr": 1e-3}})


def test_reinforce_without_baseline_has_no_critic_and_uses_monte_carlo_returns() -> None:
    agent = make_agent("reinforce", "CartPole-v1", reinforce={"baseline": "none"}, gamma=1.0)
    assert agent.critic is None and agent.critic_optimizer is None
    batch, stats = one_update(agent)
    assert "critic/loss" not in stats.scalars()
    # with γ = 1 and reward 1 per step the return counts the remaining steps of the rollout/episode
    assert torch.all(batch.returns >= 1) and torch.equal(batch.advantages, batch.returns)


def test_reinforce_with_baseline_bootstraps_the_window_end_and_subtracts_the_value() -> None:
    agent = make_agent("reinforce", "Pendulum-v1")  # the preset learns a value baseline
    envs = make_vec_env("Pendulum-v1", 2, seed=0)
    collector = RolloutCollector(envs, 64, obs_normalizer=agent.obs_normalizer, seed=0)
    collector.collect(agent.act, agent.value)
    envs.close()
    buf, gamma = collector.buffer, agent.cfg.gamma
    assert not (buf.terminated | buf.truncated).any()  # 64 steps < Pendulum's 200-step limit
    advantages, returns = agent.compute_targets(buf)
    # G_{T-1} = r_{T-1} + γ V(s_T) (the window cuts the episode), then G_t = r_t + γ G_{t+1}.
    torch.testing.assert_close(returns[-1], buf.rewards[-1] + gamma * buf.last_values)
    torch.testing.assert_close(returns[-2], buf.rewards[-2] + gamma * returns[-1])
    torch.testing.assert_close(advantages, returns - buf.values)
    assert buf.values.abs().min() > 0  # a real baseline, so the subtraction is checked


def test_ppo_target_kl_stops_the_epochs_early(monkeypatch: pytest.MonkeyPatch) -> None:
    steps_taken = {}
    for target in (None, 1e-3):
        agent = make_agent("ppo", "CartPole-v1", ppo={"epochs": 8, "minibatch_size": 32, "target_kl": target},
                           actor={"optim": {"name": "adam", "lr": 0.01}})
        calls = []
        original = agent.gradient_steps
        monkeypatch.setattr(
            agent, "gradient_steps", lambda loss, *steps: calls.extend(s[0] for s in steps) or original(loss, *steps)
        )
        _, stats = one_update(agent)
        steps_taken[target] = sum(opt is agent.actor_optimizer for opt in calls)
        if target is not None:
            assert stats.actor_kl_max > target  # the minibatch that tripped the stop is reported
    assert steps_taken[None] == 8 * 4  # 128 transitions / 32 per minibatch, 8 epochs
    assert 1 <= steps_taken[1e-3] < steps_taken[None]


def test_predict_matches_spaces_and_is_deterministic() -> None:
    for name, env_id in (("ppo", "CartPole-v1"), ("trpo", "Pendulum-v1")):
        agent = make_agent(name, env_id, env={"normalize_obs": True})
        env = gym.make(env_id)
        obs, _ = env.reset(seed=0)
        single, single_state = agent.predict(obs)
        batch, batch_state = agent.predict(np.stack([obs, obs]))
        assert single_state is None and batch_state is None
        assert env.action_space.contains(single.astype(env.action_space.dtype) if env_id == "Pendulum-v1" else int(single))
        assert batch.shape[0] == 2 and np.allclose(batch[0], batch[1], atol=1e-6)  # kernels may differ by batch size
        assert np.array_equal(agent.predict(obs)[0], single)


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_updates_with_a_squashed_mean(name: str) -> None:
    """The tanh-bounded mean goes through every update path, incl. the trust-region Fisher products."""
    agent = make_agent(name, "Pendulum-v1", actor={"squash_mean": True})
    before = [p.detach().clone() for p in agent.actor.parameters()]
    _, stats = one_update(agent)
    tags = stats.scalars()
    assert not stats.skipped and all(math.isfinite(v) for v in tags.values()), tags
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    if name == "trpo":  # the line search accepted a step inside the trust region
        assert tags["actor/step_accepted"] == 1.0 and tags["actor/kl"] <= agent.cfg.actor.optim["max_kl"]


def test_squash_mean_from_the_config_keeps_the_mean_inside_the_box_through_updates() -> None:
    agent = make_agent("a2c", "Pendulum-v1", actor={"squash_mean": True, "optim": {"name": "sgd", "lr": 50.0}})
    assert agent.actor.squash_mean
    for _ in range(3):  # a huge lr drives the head far outside [-2, 2]; the mean must stay inside
        one_update(agent)
    obs = torch.randn(256, 3) * 10
    with torch.no_grad():
        head, mean = agent.actor.body(obs), agent.actor(obs).mean
    assert head.abs().max() > 2 and mean.abs().max() <= 2.0


def test_learn_through_the_python_api() -> None:
    agent = PPO.from_config("configs/ppo_cartpole.yaml", total_steps=1024, eval={"episodes": 2})
    summary = agent.learn(progress=False)
    assert summary["agent"] == "ppo" and summary["total_steps"] >= 1024 and summary["eval_episodes"] == 2


@pytest.mark.slow
def test_ppo_solves_cartpole_within_100k_steps() -> None:
    agent = PPO.from_config("configs/ppo_cartpole.yaml")
    summary = agent.learn(progress=False)
    assert summary["eval_return_mean"] >= 475
