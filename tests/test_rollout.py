"""Vector-env construction, rollout collection under NEXT_STEP autoreset, and RunningMeanStd."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.rollout import (
    ActFn,
    RolloutCollector,
    RunningMeanStd,
    ValueFn,
    make_vec_env,
)

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


# ------------------------------------------------------------------------------------------------
# make_vec_env
# ------------------------------------------------------------------------------------------------


def test_make_vec_env_uses_vector_entry_point_for_cartpole() -> None:
    envs = make_vec_env("CartPole-v1", 3, seed=0)
    assert isinstance(envs, CartPoleVectorEnv)
    assert envs.num_envs == 3
    assert envs.single_action_space == spaces.Discrete(2)
    assert envs.single_observation_space.shape == (4,)
    envs.close()


def test_make_vec_env_falls_back_to_sync_and_forwards_kwargs() -> None:
    envs = make_vec_env("Pendulum-v1", 2, g=3.5)
    assert isinstance(envs, gym.vector.SyncVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert [env.unwrapped.g for env in envs.envs] == [3.5, 3.5]
    envs.close()


def test_make_vec_env_accepts_module_prefixed_id() -> None:
    envs = make_vec_env("gymnasium.envs.classic_control:CartPole-v1", 2)
    assert isinstance(envs, CartPoleVectorEnv)
    envs.close()


def test_make_vec_env_seeds_action_space() -> None:
    samples = [make_vec_env("Pendulum-v1", 2, seed=5).action_space.sample() for _ in range(2)]
    np.testing.assert_array_equal(samples[0], samples[1])


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "no_such_module_rlopt:CartPole-v1"])
def test_make_vec_env_rejects_unknown_id(env_id: str) -> None:
    with pytest.raises(ConfigError, match=f"^env.id: unknown environment '{env_id}' \\("):
        make_vec_env(env_id, 2)


def test_make_vec_env_rejects_zero_envs() -> None:
    with pytest.raises(ConfigError, match="^env.num_envs must be >= 1, got 0$"):
        make_vec_env("CartPole-v1", 0)


def test_make_vec_env_rejects_unsupported_spaces_and_kwargs() -> None:
    with pytest.raises(ConfigError, match="observation space must be a 1-D Box"):
        make_vec_env("FrozenLake-v1", 2)
    with pytest.raises(ConfigError, match="env.kwargs"):
        make_vec_env("Pendulum-v1", 2, no_such_kwarg=1)


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
# Deterministic env: clipping, cross-rollout bookkeeping, flatten, buffer targets
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


def test_flatten_and_buffer_targets() -> None:
    steps, num_envs, gamma = 9, 2, 1.0
    collector = RolloutCollector(make_vec_env(ECHO_ID, num_envs, episode_length=3), steps, seed=0)
    collector.collect(random_box_act(2, scale=0.5, seed=1, value=lambda obs: torch.zeros(obs.shape[0])),
                      lambda obs: torch.zeros(obs.shape[0]))
    buf = collector.buffer

    buf.compute_discounted_returns(gamma, bootstrap=False)
    # Per env: episodes occupy steps 0-2 and 4-6 (rewards 1, 2, 3), step 3 and 7 are reset steps,
    # step 8 starts a third episode cut by the window (reward 1, no bootstrap). Reset-step rows
    # are meaningless and masked out.
    real = buf.valid[:, 0]
    assert real.tolist() == [True, True, True, False, True, True, True, False, True]
    expected_returns = torch.tensor([6.0, 5.0, 3.0, 6.0, 5.0, 3.0, 1.0])
    torch.testing.assert_close(buf.returns[real, 0], expected_returns)
    torch.testing.assert_close(buf.advantages, buf.returns - buf.values)

    batch = buf.flatten()
    assert len(batch) == int(buf.valid.sum()) == num_envs * 7
    torch.testing.assert_close(batch.returns, buf.returns[buf.valid])
    torch.testing.assert_close(batch.obs, buf.obs[buf.valid])
    assert batch.actions.shape == (num_envs * 7, 2)
    full = buf.flatten(valid_only=False)
    assert len(full) == steps * num_envs
    torch.testing.assert_close(full.obs[5 * num_envs + 1], buf.obs[5, 1])

    buf.compute_gae(gamma=0.5, gae_lambda=1.0)  # V = 0: GAE(lambda=1) is the discounted return
    torch.testing.assert_close(buf.returns[:3, 0], torch.tensor([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]))


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

    buf.compute_gae(gamma, gae_lambda)
    final_values = linear_value(buf.obs[PENDULUM_TIME_LIMIT])
    torch.testing.assert_close(buf.values[PENDULUM_TIME_LIMIT], final_values)
    torch.testing.assert_close(buf.returns[last_real], buf.rewards[last_real] + gamma * final_values)
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


def test_running_mean_std_matches_numpy_for_uneven_batches() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(loc=[3.0, -1.0, 0.0], scale=[2.0, 0.1, 5.0], size=(1000, 3))
    exact = RunningMeanStd(3, epsilon=0.0)
    for start, stop in [(0, 1), (1, 8), (8, 300), (300, 301), (301, 1000)]:
        exact.update(torch.from_numpy(data[start:stop]))
    np.testing.assert_allclose(exact.mean.numpy(), data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(exact.var.numpy(), data.var(0), rtol=1e-11)
    assert exact.count == 1000

    # With the default prior (mean 0, var 1, pseudo-count eps) the answer is the pooled statistics.
    prior = RunningMeanStd(3)
    prior.update(torch.from_numpy(data[:10]).float())
    prior.update(torch.from_numpy(data[10:]).float())
    eps, n = 1e-4, 1000.0
    data32 = data.astype(np.float32).astype(np.float64)
    mean, var = data32.mean(0), data32.var(0)
    np.testing.assert_allclose(prior.mean.numpy(), mean * n / (n + eps), rtol=1e-10)
    pooled_var = (eps * 1.0 + n * var + mean**2 * eps * n / (n + eps)) / (n + eps)
    np.testing.assert_allclose(prior.var.numpy(), pooled_var, rtol=1e-10)


def test_running_mean_std_incremental_equals_batch() -> None:
    data = torch.randn(64, 5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    batch, incremental = RunningMeanStd((2,)), RunningMeanStd((2,))
    batch.update(data)  # [64, 5, 2]: all leading dims are samples
    for row in data:
        incremental.update(row)
    torch.testing.assert_close(incremental.mean, batch.mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(incremental.var, batch.var, rtol=1e-12, atol=1e-14)
    assert incremental.count == pytest.approx(batch.count, rel=1e-15)


def test_running_mean_std_state_round_trip_and_normalize() -> None:
    gen = torch.Generator().manual_seed(2)
    source = RunningMeanStd(3)
    source.update(torch.randn(50, 3, generator=gen) * 4.0 + 1.0)
    restored = RunningMeanStd(3)
    restored.load_state_dict(source.state_dict())
    probe = torch.tensor([[1.0, 2.0, 3.0], [1e6, -1e6, 0.0]])
    out = restored.normalize(probe, clip=5.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, source.normalize(probe, clip=5.0), rtol=0.0, atol=0.0)
    expected_row = (probe[0].double() - source.mean) / (source.var + source.std_epsilon).sqrt()
    torch.testing.assert_close(out[0], expected_row.float())
    assert out[1, :2].tolist() == [5.0, -5.0]
    more = torch.randn(7, 3, generator=gen)
    source.update(more)
    restored.update(more)
    assert torch.equal(source.mean, restored.mean) and torch.equal(source.var, restored.var)
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd(4).load_state_dict(source.state_dict())


def test_reward_scaler_divides_by_the_std_of_the_discounted_return() -> None:
    from rlopt.rollout import RewardScaler

    gamma = 0.9
    scaler = RewardScaler(num_envs=2, gamma=gamma, clip=100.0, epsilon=0.0)
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(50, 2))
    dones = np.zeros((50, 2), dtype=bool)
    dones[20, 0] = True
    running = np.zeros(2)
    seen = []
    for t in range(50):
        scaled = scaler.scale(rewards[t], dones[t])
        running = running * gamma + rewards[t]
        seen.append(running.copy())
        running[dones[t]] = 0.0
        expected_std = np.sqrt(np.var(np.concatenate(seen)) + 1e-8)
        np.testing.assert_allclose(scaled, rewards[t] / expected_std, rtol=1e-5)
    state = scaler.state_dict()
    other = RewardScaler(num_envs=2, gamma=gamma, clip=100.0, epsilon=0.0)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.scale(rewards[0], dones[0]), scaler.scale(rewards[0], dones[0]))
