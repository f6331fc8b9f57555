"""rlopt.normalization: RunningMeanStd against numpy and the pooled-statistics formula, its state
round trip, and RewardScaler against a hand-rolled running discounted return."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlopt.normalization import RewardScaler, RunningMeanStd


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
