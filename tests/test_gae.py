"""rlopt.returns: GAE and discounted returns under the NEXT_STEP autoreset layout, against
analytic answers and an independent forward-sum reference."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from rlopt.returns import compute_gae, discounted_returns, next_values_from

GAMMA, LAMBDA = 0.97, 0.9


def _random_rollout(seed: int, steps: int = 40, envs: int = 5) -> dict[str, Tensor]:
    """Random float64 rollout with ~10% terminations and ~7% truncations (disjoint)."""
    gen = torch.Generator().manual_seed(seed)
    uniform = torch.rand(steps, envs, generator=gen, dtype=torch.float64)
    return {
        "rewards": torch.randn(steps, envs, generator=gen, dtype=torch.float64),
        "values": torch.randn(steps, envs, generator=gen, dtype=torch.float64),
        "last_values": torch.randn(envs, generator=gen, dtype=torch.float64),
        "terminated": uniform < 0.10,
        "truncated": (uniform >= 0.10) & (uniform < 0.17),
    }


def _reference_gae(data: dict[str, Tensor], gamma: float, lam: float) -> Tensor:
    """Forward sum A_t = sum_{k=t}^{end} (gamma*lam)^{k-t} delta_k, per env, in plain Python."""
    rewards, values = data["rewards"].tolist(), data["values"].tolist()
    terminated, truncated = data["terminated"].tolist(), data["truncated"].tolist()
    last_values = data["last_values"].tolist()
    steps, envs = len(rewards), len(rewards[0])
    advantages = [[0.0] * envs for _ in range(steps)]
    for e in range(envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                v_next = values[k + 1][e] if k + 1 < steps else last_values[e]
                delta = rewards[k][e] + (0.0 if terminated[k][e] else gamma * v_next) - values[k][e]
                total += weight * delta
                if terminated[k][e] or truncated[k][e]:
                    break
                weight *= gamma * lam
            advantages[t][e] = total
    return torch.tensor(advantages, dtype=torch.float64)


def _reference_returns(data: dict[str, Tensor], gamma: float, bootstrap: bool) -> Tensor:
    """Forward sum of discounted rewards to the episode/window end, plus gamma^k V where cut."""
    rewards, values = data["rewards"].tolist(), data["values"].tolist()
    terminated, truncated = data["terminated"].tolist(), data["truncated"].tolist()
    last_values = data["last_values"].tolist()
    steps, envs = len(rewards), len(rewards[0])
    returns = [[0.0] * envs for _ in range(steps)]
    for e in range(envs):
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                total += discount * rewards[k][e]
                discount *= gamma
                v_next = values[k + 1][e] if k + 1 < steps else last_values[e]
                if terminated[k][e]:
                    break
                if truncated[k][e] or k == steps - 1:
                    total += discount * v_next if bootstrap else 0.0
                    break
            returns[t][e] = total
    return torch.tensor(returns, dtype=torch.float64)


def _gae(data: dict[str, Tensor], gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    return compute_gae(
        data["rewards"], data["values"], data["terminated"], data["truncated"], data["last_values"], gamma, lam
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_independent_per_env_loop(seed: int) -> None:
    data = _random_rollout(seed)
    assert data["terminated"].any() and data["truncated"].any()
    advantages, returns = _gae(data, GAMMA, LAMBDA)
    expected = _reference_gae(data, GAMMA, LAMBDA)
    torch.testing.assert_close(advantages, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(returns, expected + data["values"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bootstrap", [True, False])
def test_discounted_returns_match_independent_per_env_loop(bootstrap: bool) -> None:
    data = _random_rollout(seed=3)
    next_values = next_values_from(data["values"], data["last_values"])
    if not bootstrap:
        next_values = torch.zeros_like(next_values)
    returns = discounted_returns(data["rewards"], data["terminated"], data["truncated"], next_values, GAMMA)
    torch.testing.assert_close(returns, _reference_returns(data, GAMMA, bootstrap), rtol=1e-12, atol=1e-12)


def test_gae_lambda_one_zero_values_is_geometric_sum() -> None:
    steps, envs, reward, gamma = 12, 3, 0.7, 0.9
    zeros = torch.zeros(steps, envs, dtype=torch.float64)
    no_done = torch.zeros(steps, envs, dtype=torch.bool)
    advantages, returns = compute_gae(
        torch.full((steps, envs), reward, dtype=torch.float64), zeros, no_done, no_done,
        torch.zeros(envs, dtype=torch.float64), gamma, 1.0,
    )
    remaining = torch.arange(steps, 0, -1, dtype=torch.float64)  # steps left incl. t: T - t
    expected = reward * (1.0 - gamma**remaining) / (1.0 - gamma)
    torch.testing.assert_close(advantages, expected.unsqueeze(1).expand(steps, envs), rtol=1e-13, atol=0.0)
    torch.testing.assert_close(returns, advantages)


def test_gae_with_zero_gamma_lambda_is_one_step_td_error() -> None:
    data = _random_rollout(seed=4)
    advantages, _ = _gae(data, GAMMA, 0.0)
    next_values = next_values_from(data["values"], data["last_values"])
    td_error = data["rewards"] + GAMMA * (~data["terminated"]).double() * next_values - data["values"]
    torch.testing.assert_close(advantages, td_error, rtol=1e-13, atol=1e-13)


def _single_env_episode_end(kind: str) -> dict[str, Tensor]:
    """One env, T=4: done (``kind``) at t=1; row 2 is the reset step whose value is V(s_final)=5."""
    flags = torch.tensor([[False], [True], [False], [False]])
    no_flags = torch.zeros(4, 1, dtype=torch.bool)
    return {
        "rewards": torch.tensor([[1.0], [2.0], [0.0], [3.0]], dtype=torch.float64),
        "values": torch.tensor([[0.5], [0.25], [5.0], [0.0]], dtype=torch.float64),
        "last_values": torch.tensor([4.0], dtype=torch.float64),
        "terminated": flags if kind == "terminated" else no_flags,
        "truncated": flags if kind == "truncated" else no_flags,
    }


def test_termination_stops_bootstrapping() -> None:
    gamma, lam = 0.5, 1.0
    advantages, returns = _gae(_single_env_episode_end("terminated"), gamma, lam)
    # t=1: delta = 2 - 0.25, nothing after the terminal state.
    assert advantages[1, 0].item() == pytest.approx(1.75, abs=1e-15)
    # t=0: delta_0 = 1 + 0.5*0.25 - 0.5 = 0.625, plus gamma*lam*A_1.
    assert advantages[0, 0].item() == pytest.approx(0.625 + 0.5 * 1.75, abs=1e-15)
    assert returns[0, 0].item() == pytest.approx(1.0 + 0.5 * 2.0, abs=1e-15)


def test_truncation_bootstraps_from_final_observation_value() -> None:
    gamma, lam = 0.5, 1.0
    advantages, returns = _gae(_single_env_episode_end("truncated"), gamma, lam)
    # t=1: delta = 2 + 0.5*V(s_final)=0.5*5 - 0.25; the reset step does not leak into it.
    assert advantages[1, 0].item() == pytest.approx(2.0 + 2.5 - 0.25, abs=1e-15)
    assert returns[1, 0].item() == pytest.approx(4.5, abs=1e-15)
    assert returns[0, 0].item() == pytest.approx(1.0 + 0.5 * 4.5, abs=1e-15)
    # The window end bootstraps from last_values: row 3 = 3 + 0.5*4.
    assert returns[3, 0].item() == pytest.approx(5.0, abs=1e-15)


def test_gae_lambda_one_equals_discounted_returns_minus_values() -> None:
    data = _random_rollout(seed=5)
    advantages, _ = _gae(data, GAMMA, 1.0)
    next_values = next_values_from(data["values"], data["last_values"])
    returns = discounted_returns(data["rewards"], data["terminated"], data["truncated"], next_values, GAMMA)
    torch.testing.assert_close(advantages, returns - data["values"], rtol=1e-12, atol=1e-12)


def test_float32_inputs_give_float32_outputs() -> None:
    data = {k: (v.float() if v.is_floating_point() else v) for k, v in _random_rollout(seed=6).items()}
    advantages, returns = _gae(data, GAMMA, LAMBDA)
    assert advantages.dtype == returns.dtype == torch.float32
    torch.testing.assert_close(advantages.double(), _reference_gae(data, GAMMA, LAMBDA), rtol=1e-4, atol=1e-4)


def test_shape_mismatch_is_rejected() -> None:
    data = _random_rollout(seed=7)
    with pytest.raises(ValueError, match="last_values"):
        compute_gae(data["rewards"], data["values"], data["terminated"], data["truncated"],
                    data["last_values"][:-1], GAMMA, LAMBDA)
