"""Losses as functions of a batch: each returns ``(loss, info)`` with named diagnostic tensors.

Shapes: ``log_probs``, ``old_log_probs``, ``advantages``, ``entropy``, ``values``, ``returns``
are all ``[B]``, or ``[K, B]`` for K seeds trained together (:mod:`rlopt.stacked`): every mean is
over the last dim, so a ``[K, B]`` batch gives per-seed ``[K]`` losses and info (the backward of
their sum gives each seed exactly its own gradient), and a ``[B]`` batch the same values as one
lone mean. ``mask`` (optional, bool, same shape) keeps only its True entries in every mean: a
seed's rows padded to a common length count for nothing. Losses are minimised, so policy
objectives carry a minus sign. No ``.item()``: info values stay tensors until the trainer logs them.
"""

from __future__ import annotations

import torch
from torch import Tensor

LossInfo = dict[str, Tensor]


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over the last dim; with a bool ``mask``, of its True entries only (0 if there are none)."""
    if mask is None:
        return values.mean(-1)
    return torch.where(mask, values, 0.0).sum(-1) / mask.sum(-1).clamp(min=1)


def normalize(advantages: Tensor, eps: float = 1e-8, mask: Tensor | None = None) -> Tensor:
    """Standardise over the last dim to zero mean and unit variance (a row of one is only centred).

    With a bool ``mask``, the statistics are those of the row's True entries; a full row gets
    exactly the unmasked values (``std(-1)``; a ragged one a two-pass unbiased variance)."""
    if mask is None:
        if advantages.shape[-1] < 2:
            return advantages - advantages.mean(-1, keepdim=True)
        return (advantages - advantages.mean(-1, keepdim=True)) / (advantages.std(-1, keepdim=True) + eps)
    centred = advantages - masked_mean(advantages, mask).unsqueeze(-1)
    if advantages.shape[-1] < 2:
        return centred
    count = mask.sum(-1, keepdim=True)
    ragged_var = torch.where(mask, centred.square(), 0.0).sum(-1, keepdim=True) / (count - 1).clamp(min=1)
    std = torch.where(count == advantages.shape[-1], advantages.std(-1, keepdim=True), ragged_var.sqrt())
    return torch.where(count >= 2, centred / (std + eps), centred)


def policy_gradient_loss(
    log_probs: Tensor, advantages: Tensor, entropy: Tensor, entropy_coef: float, mask: Tensor | None = None
) -> tuple[Tensor, LossInfo]:
    """REINFORCE / A2C: L = −E[log π(a|s) Â] − c_H E[H(π(·|s))] (Williams 1992; Mnih et al. 2016)."""
    policy_loss = -masked_mean(log_probs * advantages, mask)
    entropy_mean = masked_mean(entropy, mask)
    loss = policy_loss - entropy_coef * entropy_mean
    return loss, {"policy_loss": policy_loss.detach(), "entropy": entropy_mean.detach()}


def surrogate_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    entropy: Tensor,
    entropy_coef: float,
    mask: Tensor | None = None,
) -> tuple[Tensor, LossInfo]:
    """NPG/TRPO surrogate: L = −E[π_θ/π_old · Â] − c_H E[H] (Schulman et al. 2015, eq. 14)."""
    ratio = torch.exp(log_probs - old_log_probs)
    policy_loss = -masked_mean(ratio * advantages, mask)
    entropy_mean = masked_mean(entropy, mask)
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
    mask: Tensor | None = None,
) -> tuple[Tensor, LossInfo]:
    """PPO-clip: L = −E[min(r Â, clip(r, 1−ε, 1+ε) Â)] − c_H E[H] (Schulman et al. 2017, eq. 7)."""
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    policy_loss = -masked_mean(torch.min(unclipped, clipped), mask)
    entropy_mean = masked_mean(entropy, mask)
    loss = policy_loss - entropy_coef * entropy_mean
    clip_fraction = masked_mean(((ratio - 1.0).abs() > clip).float(), mask)
    return loss, {
        "policy_loss": policy_loss.detach(),
        "entropy": entropy_mean.detach(),
        "clip_fraction": clip_fraction.detach(),
    }


def value_loss(
    values: Tensor,
    returns: Tensor,
    old_values: Tensor | None = None,
    clip_value: float | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, LossInfo]:
    """Critic regression ½E[(V − R)²]; with ``clip_value``, PPO's pessimistic clipped variant
    max((V − R)², (V_old + clip(V − V_old, ±c) − R)²) (Schulman et al. 2017 baselines code)."""
    squared_error = (values - returns).pow(2)
    if clip_value is not None and old_values is not None:
        clipped_values = old_values + torch.clamp(values - old_values, -clip_value, clip_value)
        squared_error = torch.max(squared_error, (clipped_values - returns).pow(2))
    loss = 0.5 * masked_mean(squared_error, mask)
    return loss, {"value_loss": loss.detach()}


def explained_variance(predictions: Tensor, targets: Tensor) -> Tensor:
    """1 − Var[y − ŷ] / Var[y]: 1 is perfect, 0 is no better than a constant; if Var[y] = 0 it is
    NaN for a perfect prediction and −inf otherwise."""
    target_var = targets.var(unbiased=False)
    return 1.0 - (targets - predictions).var(unbiased=False) / target_var
