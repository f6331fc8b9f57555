"""Rollout collection under NEXT_STEP autoreset: buffer layout, valid mask, episode statistics,
seeding, state round trip, action clipping, flatten, truncation bootstrap and the collector's use of
an observation normaliser. Estimators are checked in test_gae.py, envs in test_envs.py."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import Tensor

from rlopt.envs import make_vec_env
from rlopt.normalization import RunningMeanStd
from rlopt.returns import compute_gae, discounted_returns, next_values_from
from rlopt.rollout import ActFn, RolloutCollector, ValueFn

# CartPole-v1 termination thresholds (gymnasium's cartpole.py): |x| > 2.4 or |theta| > 12 degrees.
CARTPOLE_X_LIMIT = 2.4
CARTPOLE_THETA_LIMIT = 12 * 2 * math.pi / 360
CARTPOLE_RESET_BOUND = 0.05  # reset state ~ U(-0.05, 0.05)
PENDULUM_TIME_LIMIT = 200


class EchoActionEnv(gym.Env):
    """Tiny deterministic env: obs = [received action (2 dims), step index]; reward = step index
    (1, 2, ..., L); terminates after ``episode_length`` steps. The next obs reveals exactly what
    action the env received."""

    def __init__(self, episode_length: int = 3) -> None:
        self.episode_length = episode_length
        self.observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._step_index = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._step_index = 0
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._step_index += 1
        obs = np.array([action[0], action[1], self._step_index], dtype=np.float32)
        return obs, float(self._step_index), self._step_index >= self.episode_length, False, {}


ECHO_ID = "RloptTest/EchoAction-v0"
if ECHO_ID not in gym.registry:
    gym.register(id=ECHO_ID, entry_point=EchoActionEnv)


def random_discrete_act(num_actions: int, seed: int) -> ActFn:
    """Uniform random actions from a private generator; value = sum of the observation."""
    gen = torch.Generator().manual_seed(seed)

    def act(obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = obs.shape[0]
        actions = torch.randint(num_actions, (batch,), generator=gen)
        return actions, torch.full((batch,), -math.log(num_actions)), obs.sum(dim=1)

    return act


def random_box_act(act_dim: int, scale: float, seed: int, value: ValueFn) -> ActFn:
    """Gaussian actions ``scale * N(0, 1)`` (often outside the bounds) with the given value fn."""
    gen = torch.Generator().manual_seed(seed)

    def act(obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        actions = scale * torch.randn(obs.shape[0], act_dim, generator=gen)
        return actions, -0.5 * actions.square().sum(dim=1), value(obs)

    return act


def obs_sum(obs: Tensor) -> Tensor:
    return obs.sum(dim=1)


def zero_value(obs: Tensor) -> Tensor:
    return torch.zeros(obs.shape[0])


# ------------------------------------------------------------------------------------------------
# Collection on CartPole (vector entry point, Discrete actions)
# ------------------------------------------------------------------------------------------------


def independent_episode_counts(valid: np.ndarray, done: np.ndarray) -> list[int]:
    """Episode lengths from the stored flags: count valid steps until a done (time-major order)."""
    steps, envs = valid.shape
    running = [0] * envs
    lengths = []
    for t in range(steps):
        for e in range(envs):
            running[e] += int(valid[t, e])
            if done[t, e]:
                lengths.append(running[e])
                running[e] = 0
    return lengths


def test_cartpole_collect_layout_valid_mask_and_episode_stats() -> None:
    steps, num_envs = 150, 4
    collector = RolloutCollector(make_vec_env("CartPole-v1", num_envs), steps, seed=3)
    stats = collector.collect(random_discrete_act(2, seed=0), obs_sum)
    buf = collector.buffer

    assert buf.obs.shape == (steps, num_envs, 4) and buf.obs.dtype == torch.float32
    assert buf.actions.shape == (steps, num_envs) and buf.actions.dtype == torch.int64
    for name in ("log_probs", "values", "rewards", "advantages", "returns"):
        assert getattr(buf, name).shape == (steps, num_envs)
    assert buf.terminated.dtype == buf.truncated.dtype == buf.valid.dtype == torch.bool
    assert buf.last_obs.shape == (num_envs, 4) and buf.last_values.shape == (num_envs,)
    assert stats.env_steps == steps * num_envs == collector.total_env_steps
    assert collector.obs_dim == 4 and collector.action_space == spaces.Discrete(2)

    valid, done = buf.valid.numpy(), (buf.terminated | buf.truncated).numpy()
    assert done.sum() >= 10  # a random policy ends ~20 episodes per env here
    # valid[t] is False exactly on the step after a done.
    assert valid[0].all()
    np.testing.assert_array_equal(valid[1:], ~done[:-1])
    # Reset steps carry reward 0 and no done; real CartPole steps give reward 1.
    np.testing.assert_array_equal(buf.rewards.numpy(), valid.astype(np.float32))
    assert not done[~valid].any()

    # NEXT_STEP: the obs after a termination is the true final state (outside the limits), the
    # one after the reset step is a fresh reset state.
    obs = buf.obs.numpy()
    out_of_bounds = (np.abs(obs[..., 0]) > CARTPOLE_X_LIMIT) | (np.abs(obs[..., 2]) > CARTPOLE_THETA_LIMIT)
    np.testing.assert_array_equal(out_of_bounds[1:], buf.terminated.numpy()[:-1])
    after_reset = np.zeros_like(valid)
    after_reset[2:] = done[:-2]
    assert (np.abs(obs[after_reset]) <= CARTPOLE_RESET_BOUND).all()

    # Stored values/log-probs are what act returned on the stored obs.
    torch.testing.assert_close(buf.values, buf.obs.sum(dim=2))
    torch.testing.assert_close(buf.log_probs, torch.full((steps, num_envs), -math.log(2)))
    torch.testing.assert_close(buf.last_values, buf.last_obs.sum(dim=1))

    lengths = independent_episode_counts(valid, done)
    assert stats.episode_lengths == lengths
    assert stats.episode_returns == [float(n) for n in lengths]  # reward 1 per step


def test_same_seed_reproduces_rollout_and_other_seed_does_not() -> None:
    def run(env_seed: int) -> tuple[RolloutCollector, list[float]]:
        collector = RolloutCollector(make_vec_env("CartPole-v1", 3, seed=env_seed), 60, seed=env_seed)
        act = random_discrete_act(2, seed=0)
        returns = collector.collect(act, obs_sum).episode_returns + collector.collect(act, obs_sum).episode_returns
        return collector, returns

    (first, first_returns), (second, second_returns), (other, _) = run(7), run(7), run(8)
    for name in ("obs", "actions", "rewards", "terminated", "truncated", "valid", "last_obs"):
        assert torch.equal(getattr(first.buffer, name), getattr(second.buffer, name)), name
    assert first_returns == second_returns
    assert not torch.equal(first.buffer.obs, other.buffer.obs)


def test_state_dict_round_trip_continues_rollout_identically() -> None:
    act_seed, env_seed, steps = 1, 4, 37
    reference = RolloutCollector(make_vec_env("CartPole-v1", 3), steps, seed=env_seed)
    reference_act = random_discrete_act(2, act_seed)
    reference.collect(reference_act, obs_sum)
    reference_stats = reference.collect(reference_act, obs_sum)

    envs = make_vec_env("CartPole-v1", 3)
    resumed_act = random_discrete_act(2, act_seed)
    before = RolloutCollector(envs, steps, seed=env_seed)
    before.collect(resumed_act, obs_sum)
    after = RolloutCollector(envs, steps, seed=123)  # seed unused: the state says "already reset"
    after.load_state_dict(before.state_dict())
    resumed_stats = after.collect(resumed_act, obs_sum)

    for name in ("obs", "actions", "rewards", "terminated", "valid", "last_values"):
        assert torch.equal(getattr(reference.buffer, name), getattr(after.buffer, name)), name
    assert resumed_stats == reference_stats
    assert after.total_env_steps == 2 * steps * 3


# ------------------------------------------------------------------------------------------------
# Deterministic env: clipping, cross-rollout bookkeeping, flatten, returns of collected data
# ------------------------------------------------------------------------------------------------


def test_box_actions_clipped_for_env_but_stored_unclipped() -> None:
    steps = 12
    collector = RolloutCollector(make_vec_env(ECHO_ID, 2), steps, seed=0)
    collector.collect(random_box_act(2, scale=3.0, seed=0, value=obs_sum), obs_sum)
    buf = collector.buffer
    stored = buf.actions
    assert stored.shape == (steps, 2, 2) and stored.dtype == torch.float32
    assert (stored.abs() > 1.0).any()  # the test exercises clipping
    # The obs after a real step echoes the action the env received.
    next_obs = torch.cat((buf.obs[1:], buf.last_obs.unsqueeze(0)))
    real = buf.valid
    torch.testing.assert_close(next_obs[real][:, :2], stored[real].clamp(-1.0, 1.0), rtol=0.0, atol=0.0)


def test_episodes_spanning_rollouts_and_reset_step_at_rollout_start() -> None:
    # Episode length 3 -> each episode takes 4 env steps (3 real + 1 reset step); with 5 steps per
    # rollout, episodes cross rollout boundaries and global step 15 (rollout 4, step 0) is a reset step.
    collector = RolloutCollector(make_vec_env(ECHO_ID, 2, episode_length=3), 5, seed=0)
    act = random_box_act(2, scale=0.5, seed=0, value=obs_sum)
    valid_per_rollout, all_stats = [], []
    for _ in range(4):
        all_stats.append(collector.collect(act, obs_sum))
        valid_per_rollout.append(collector.buffer.valid[:, 0].tolist())
    period = [True, True, True, False]
    assert sum(valid_per_rollout, []) == [period[t % 4] for t in range(20)]
    assert [len(s.episode_lengths) for s in all_stats] == [2, 2, 4, 2]  # dones at global 2, 6, 10+14, 18
    assert all(n == 3 for s in all_stats for n in s.episode_lengths)
    assert all(r == 1.0 + 2.0 + 3.0 for s in all_stats for r in s.episode_returns)


def test_flatten_and_returns_of_a_collected_rollout() -> None:
    steps, num_envs, gamma = 9, 2, 1.0
    collector = RolloutCollector(make_vec_env(ECHO_ID, num_envs, episode_length=3), steps, seed=0)
    collector.collect(random_box_act(2, scale=0.5, seed=1, value=zero_value), zero_value)
    buf = collector.buffer

    # Plain Monte-Carlo returns (next values 0: no bootstrap) of what the collector stored.
    no_bootstrap = torch.zeros_like(next_values_from(buf.values, buf.last_values))
    returns = discounted_returns(buf.rewards, buf.terminated, buf.truncated, no_bootstrap, gamma)
    # Per env: episodes occupy steps 0-2 and 4-6 (rewards 1, 2, 3), step 3 and 7 are reset steps,
    # step 8 starts a third episode cut by the window (reward 1, no bootstrap). Reset-step rows
    # are meaningless and masked out.
    real = buf.valid[:, 0]
    assert real.tolist() == [True, True, True, False, True, True, True, False, True]
    expected_returns = torch.tensor([6.0, 5.0, 3.0, 6.0, 5.0, 3.0, 1.0])
    torch.testing.assert_close(returns[real, 0], expected_returns)

    # Store targets as Agent.prepare_batch does; advantages differ from returns so that flatten
    # cannot swap the two columns unnoticed.
    buf.returns.copy_(returns)
    buf.advantages.copy_(returns - 10.0)
    batch = buf.flatten()
    assert len(batch) == int(buf.valid.sum()) == num_envs * 7
    torch.testing.assert_close(batch.returns, buf.returns[buf.valid])
    torch.testing.assert_close(batch.advantages, buf.advantages[buf.valid])
    torch.testing.assert_close(batch.obs, buf.obs[buf.valid])
    assert batch.actions.shape == (num_envs * 7, 2)
    full = buf.flatten(valid_only=False)
    assert len(full) == steps * num_envs
    torch.testing.assert_close(full.obs[5 * num_envs + 1], buf.obs[5, 1])

    # V = 0: GAE(lambda=1) is the discounted return.
    _, gae_returns = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.last_values, 0.5, 1.0)
    torch.testing.assert_close(gae_returns[:3, 0], torch.tensor([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]))


# ------------------------------------------------------------------------------------------------
# Truncation bootstrap on Pendulum (SyncVectorEnv, TimeLimit at 200 steps)
# ------------------------------------------------------------------------------------------------


def test_pendulum_truncation_bootstraps_from_final_observation() -> None:
    steps, num_envs, seed, gamma, gae_lambda = 202, 2, 11, 0.99, 0.95
    weights = torch.tensor([1.0, -2.0, 0.5])

    def linear_value(obs: Tensor) -> Tensor:
        return obs @ weights

    collector = RolloutCollector(make_vec_env("Pendulum-v1", num_envs), steps, seed=seed)
    stats = collector.collect(random_box_act(1, scale=2.5, seed=0, value=linear_value), linear_value)
    buf = collector.buffer
    last_real = PENDULUM_TIME_LIMIT - 1

    assert not buf.terminated.any()
    assert buf.truncated[last_real].all() and buf.truncated.sum() == num_envs
    assert (~buf.valid).nonzero()[:, 0].tolist() == [PENDULUM_TIME_LIMIT] * num_envs

    # Independent replay with a single env: the obs stored at the reset step is the true final obs.
    for e in range(num_envs):
        env = gym.make("Pendulum-v1")
        env.reset(seed=seed + e)
        episode_return = 0.0
        for t in range(PENDULUM_TIME_LIMIT):
            final_obs, reward, _, truncated, _ = env.step(buf.actions[t, e].numpy().clip(-2.0, 2.0))
            episode_return += reward
            assert buf.rewards[t, e].item() == pytest.approx(reward, rel=1e-6)
        assert truncated
        torch.testing.assert_close(buf.obs[PENDULUM_TIME_LIMIT, e], torch.from_numpy(final_obs))
        assert stats.episode_returns[e] == pytest.approx(episode_return, rel=1e-12)
    assert stats.episode_lengths == [PENDULUM_TIME_LIMIT] * num_envs

    _, returns = compute_gae(
        buf.rewards, buf.values, buf.terminated, buf.truncated, buf.last_values, gamma, gae_lambda
    )
    final_values = linear_value(buf.obs[PENDULUM_TIME_LIMIT])
    torch.testing.assert_close(buf.values[PENDULUM_TIME_LIMIT], final_values)
    torch.testing.assert_close(returns[last_real], buf.rewards[last_real] + gamma * final_values)
    assert not torch.allclose(final_values, linear_value(buf.obs[PENDULUM_TIME_LIMIT + 1]))


# ------------------------------------------------------------------------------------------------
# Observation normalisation
# ------------------------------------------------------------------------------------------------


def test_collector_updates_and_applies_normalizer() -> None:
    steps, num_envs, clip = 20, 3, 2.0
    plain = RolloutCollector(make_vec_env("CartPole-v1", num_envs), steps, seed=2)
    plain.collect(random_discrete_act(2, seed=0), obs_sum)
    raw = plain.buffer.obs.double().numpy()

    normalizer = RunningMeanStd(4, epsilon=0.0)
    normed = RolloutCollector(make_vec_env("CartPole-v1", num_envs), steps, obs_normalizer=normalizer, seed=2,
                              obs_clip=clip)
    normed.collect(random_discrete_act(2, seed=0), obs_sum)

    seen = raw.reshape(-1, 4)
    assert normalizer.count == steps * num_envs
    np.testing.assert_allclose(normalizer.mean.numpy(), seen.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(normalizer.var.numpy(), seen.var(axis=0), rtol=1e-10, atol=1e-12)
    for t in (1, 7, steps - 1):  # step t is normalised with the statistics of steps 0..t
        history = raw[: t + 1].reshape(-1, 4)
        expected = np.clip((raw[t] - history.mean(0)) / np.sqrt(history.var(0) + normalizer.std_epsilon), -clip, clip)
        np.testing.assert_allclose(normed.buffer.obs[t].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert (normed.buffer.obs.abs() <= clip).all() and (normed.buffer.obs.abs() == clip).any()
    expected_last = normalizer.normalize(plain.buffer.last_obs, clip=clip)
    torch.testing.assert_close(normed.buffer.last_obs, expected_last)
    assert normed.state_dict()["obs_normalizer"]["count"] == steps * num_envs
