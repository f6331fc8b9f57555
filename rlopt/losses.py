"""Losses as functions of a batch: each returns ``(loss, info)`` with named diagnostic tensors.

Shapes: ``log_probs``, ``old_log_probs``, ``advantages``, ``entropy``, ``values``, ``returns``
are all ``[B]``. Losses are minimised, so policy objectives carry a minus sign. No ``.item()``:
info values stay tensors until the trainer logs them.
"""

from __future__ import annotations

import torch
from torch import Tensor

LossInfo = dict[str, Tensor]


def normalize(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise to zero mean and unit variance (a batch of one is only centred)."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def policy_gradient_loss(
    log_probs: Tensor, advantages: Tensor, entropy: Tensor, entropy_coef: float
) -> tuple[Tensor, LossInfo]:
    """REINFORCE / A2C: L = −E[log π(a|s) Â] − c_H E[H(π(·|s))] (Williams 1992; Mnih et al. 2016)."""
    policy_loss = -(log_probs * advantages).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - entropy_coef * entropy_mean
    return loss, {"policy_loss": policy_loss.detach(), "entropy": entropy_mean.detach()}


def surrogate_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, entropy: Tensor, entropy_coef: float
) -> tuple[Tensor, LossInfo]:
    """NPG/TRPO surrogate: L = −E[π_θ/π_old · Â] − c_H E[H] (Schulman et al. 2015, eq. 14)."""
    ratio = torch.exp(log_probs - old_log_probs)
    policy_loss = -(ratio * advantages).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - entropy_coef * entropy_mean
    return loss, {"policy_loss": policy_loss.detach(), "entropy": entropy_mean.detach()}


def surrogate_loss_per_sample(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, entropy: Tensor, entropy_coef: float
) -> Tensor:
    """The surrogate's per-sample terms l_i = −π_θ/π_old · Â_i − c_H H_i, ``[B]``: their mean is
    :func:`surrogate_loss` (the trust-region metrics that need per-sample terms read these)."""
    return -torch.exp(log_probs - old_log_probs) * advantages - entropy_coef * entropy


def ppo_clip_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    entropy: Tensor,
    clip: float,
    entropy_coef: float,
) -> tuple[Tensor, LossInfo]:
    """PPO-clip: L = −E[min(r Â, clip(r, 1−ε, 1+ε) Â)] − c_H E[H] (Schulman et al. 2017, eq. 7)."""
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    policy_loss = -torch.min(unclipped, clipped).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - entropy_coef * entropy_mean
    clip_fraction = ((ratio - 1.0).abs() > clip).float().mean()
    return loss, {
        "policy_loss": policy_loss.detach(),
        "entropy": entropy_mean.detach(),
        "clip_fraction": clip_fraction.detach(),
    }


def value_loss(
    values: Tensor, returns: Tensor, old_values: Tensor | None = None, clip_value: float | None = None
) -> tuple[Tensor, LossInfo]:
    """Critic regression ½E[(V − R)²]; with ``clip_value``, PPO's pessimistic clipped variant
    max((V − R)², (V_old + clip(V − V_old, ±c) − R)²) (Schulman et al. 2017 baselines code)."""
    squared_error = (values - returns).pow(2)
    if clip_value is not None and old_values is not None:
        clipped_values = old_values + torch.clamp(values - old_values, -clip_value, clip_value)
        squared_error = torch.max(squared_error, (clipped_values - returns).pow(2))
    loss = 0.5 * squared_error.mean()
    return loss, {"value_loss": loss.detach()}


def explained_variance(predictions: Tensor, targets: Tensor) -> Tensor:
    """1 − Var[y − ŷ] / Var[y]: 1 is perfect, 0 is no better than a constant; if Var[y] = 0 it is
    NaN for a perfect prediction and −inf otherwise."""
    target_var = targets.var(unbiased=False)
    return 1.0 - (targets - predictions).var(unbiased=False) / target_var
