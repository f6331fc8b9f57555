"""Advantage and return estimators: pure functions of time-major rollout tensors.

Layer: numerics, no state and no env. In: ``[T, E]`` (steps x envs) rewards, values and
``terminated`` / ``truncated`` flags laid out as ``rlopt.rollout`` stores them under NEXT_STEP
autoreset (a done at ``t`` makes row ``t+1`` a reset step whose value is ``V(s_final)``), plus the
``[E]`` bootstrap value after the last step. Out: ``[T, E]`` advantages and returns (an agent's
``compute_targets`` returns them; ``prepare_batch`` stores them in the buffer). Estimators: GAE
(Schulman et al. 2016) and discounted Monte-Carlo returns, both bootstrapping time-limit
truncations from ``V(s_final)`` (Pardo et al. 2018, "Time Limits in Reinforcement Learning").
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_time_major(rewards: Tensor, last: Tensor, last_name: str, **others: Tensor) -> None:
    """Shape guard: every ``[T, E]`` input matches ``rewards``, ``last`` is ``[E]``."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [T, E], got shape {tuple(rewards.shape)}")
    for name, tensor in others.items():
        if tensor.shape != rewards.shape:
            raise ValueError(f"{name} must match rewards {tuple(rewards.shape)}, got {tuple(tensor.shape)}")
    if last.shape != rewards.shape[1:]:
        raise ValueError(f"{last_name} must be [E] = {tuple(rewards.shape[1:])}, got {tuple(last.shape)}")


def next_values_from(values: Tensor, last_values: Tensor) -> Tensor:
    """``V_{t+1}`` for every row: ``values`` shifted up by one step with ``last_values`` appended.

    Under NEXT_STEP autoreset, after a done at ``t`` the row ``t+1`` holds ``V(s_final)``.
    """
    return torch.cat((values[1:], last_values.unsqueeze(0)), dim=0)


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    last_values: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) with NEXT_STEP layout.

    Inputs ``[T, E]`` (``terminated``/``truncated`` bool or 0/1 floats), ``last_values`` ``[E]`` =
    V(observation after the last step). With ``V_{t+1} = next_values_from(values, last_values)[t]``
    and ``done_t = terminated_t or truncated_t``::

        delta_t = r_t + gamma * (1 - terminated_t) * V_{t+1} - V_t
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},      A_T = 0
        returns = A + V

    A truncated step keeps its bootstrap ``gamma * V(s_final)`` in ``delta_t`` but, like a
    terminated one, does not chain into the next episode. Rows of reset steps are meaningless and
    are masked out by the buffer. Returns ``(advantages, returns)`` in ``rewards.dtype``.
    """
    _check_time_major(rewards, last_values, "last_values", values=values, terminated=terminated, truncated=truncated)
    dtype = rewards.dtype
    terminated, truncated = terminated.bool(), truncated.bool()
    not_terminated = (~terminated).to(dtype)
    not_done = (~(terminated | truncated)).to(dtype)
    deltas = rewards + gamma * not_terminated * next_values_from(values, last_values) - values
    decays = (gamma * gae_lambda) * not_done
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(last_values, dtype=dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + decays[t] * running
        advantages[t] = running
    return advantages, advantages + values


def discounted_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    next_values: Tensor,
    gamma: float,
) -> Tensor:
    """Monte-Carlo returns of the episode tails inside the window, bootstrapped where they are cut.

    ``next_values`` ``[T, E]`` holds ``V_{t+1}`` (build it with ``next_values_from``). With
    ``done_t = terminated_t or truncated_t`` and the window-end value ``G_T := next_values[T-1]``::

        G_t = r_t + gamma * ((1 - done_t) * G_{t+1} + truncated_t * V_{t+1})

    so an episode tail that terminates sums rewards only, one cut by a time limit adds
    ``gamma^k * V(s_final)``, and one cut by the end of the window adds ``gamma^k * V(s_T)``.
    With ``next_values = 0`` this is the plain Monte-Carlo return (REINFORCE, Williams 1992).
    """
    _check_time_major(
        rewards, next_values[-1], "next_values[-1]", terminated=terminated, truncated=truncated, next_values=next_values
    )
    dtype = rewards.dtype
    terminated, truncated = terminated.bool(), truncated.bool()
    not_done = (~(terminated | truncated)).to(dtype)
    time_limit_bootstrap = truncated.to(dtype) * next_values
    returns = torch.empty_like(rewards)
    running = next_values[-1].to(dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * (not_done[t] * running + time_limit_bootstrap[t])
        returns[t] = running
    return returns
