"""rlopt.losses against hand-computed values: PPO's clipped objective and clip fraction, the clipped
value loss, the entropy bonus, the surrogate and policy-gradient losses, explained variance and
advantage normalisation -- and every loss's ``(loss, info)`` contract."""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
from torch import Tensor

from rlopt.losses import (
    LossInfo,
    explained_variance,
    normalize,
    policy_gradient_loss,
    ppo_clip_loss,
    surrogate_loss,
    surrogate_loss_per_sample,
    value_loss,
)

F64 = torch.float64
CLIP = 0.2


def tensor(values: list[float], grad: bool = False) -> Tensor:
    return torch.tensor(values, dtype=F64, requires_grad=grad)


def log_ratio(ratios: list[float], grad: bool = True) -> Tensor:
    """Log-probabilities whose ratio to ``old_log_probs = 0`` is ``ratios``."""
    return torch.tensor(ratios, dtype=F64).log().requires_grad_(grad)


# ------------------------------------------------------------------------------------------------
# PPO clip loss (Schulman et al. 2017, eq. 7)
# ------------------------------------------------------------------------------------------------

# One row per case of min(r A, clip(r, 0.8, 1.2) A), clip = 0.2:
#   ratio  adv   r A    clip(r) A   min    clipped branch active?   |r - 1| > clip?
#   0.5    +1    0.5    0.8         0.5    no  (pessimistic: below the range, A > 0)   yes
#   0.5    -1   -0.5   -0.8        -0.8    yes                                         yes
#   0.9    -2   -1.8   -1.8        -1.8    inside the range                             no
#   1.1    +3    3.3    3.3         3.3    inside the range                             no
#   1.5    +2    3.0    2.4         2.4    yes                                         yes
#   1.5    -1   -1.5   -1.2        -1.5    no  (pessimistic: above the range, A < 0)   yes
PPO_RATIOS = [0.5, 0.5, 0.9, 1.1, 1.5, 1.5]
PPO_ADVANTAGES = [1.0, -1.0, -2.0, 3.0, 2.0, -1.0]
PPO_OBJECTIVE = [0.5, -0.8, -1.8, 3.3, 2.4, -1.5]
PPO_CLIPPED = [False, True, False, False, True, False]


def test_ppo_clip_loss_matches_hand_values_inside_and_outside_the_range() -> None:
    log_probs = log_ratio(PPO_RATIOS)
    entropy = tensor([0.0] * 6)
    loss, info = ppo_clip_loss(log_probs, torch.zeros(6, dtype=F64), tensor(PPO_ADVANTAGES), entropy, CLIP, 0.0)
    expected = -sum(PPO_OBJECTIVE) / 6  # = -0.35
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert info["policy_loss"].item() == pytest.approx(expected, abs=1e-12)
    assert info["clip_fraction"].item() == pytest.approx(4 / 6, rel=1e-7)  # 0.5, 0.5, 1.5, 1.5 (float32)

    loss.backward()
    # d(-r A / B)/d log r = -r A / B where the unclipped branch is the minimum, 0 where the clip holds.
    expected_grad = [0.0 if clipped else -r * a / 6 for r, a, clipped in zip(PPO_RATIOS, PPO_ADVANTAGES, PPO_CLIPPED)]
    torch.testing.assert_close(log_probs.grad, tensor(expected_grad), rtol=1e-12, atol=1e-12)


def test_ppo_clip_fraction_counts_ratios_outside_the_range_only() -> None:
    ratios = [0.79, 0.81, 1.0, 1.19, 1.21]  # two outside [0.8, 1.2]
    _, info = ppo_clip_loss(log_ratio(ratios, grad=False), torch.zeros(5, dtype=F64), tensor([1.0] * 5),
                            tensor([0.0] * 5), CLIP, 0.0)
    assert info["clip_fraction"].item() == pytest.approx(2 / 5, rel=1e-7)


def test_ppo_at_the_old_policy_is_the_policy_gradient() -> None:
    """At r = 1 no term is clipped: loss = -mean(A) and grad = -A / B, like -E[log pi A]."""
    advantages = tensor([1.0, -2.0, 0.5])
    log_probs = torch.zeros(3, dtype=F64, requires_grad=True)
    loss, info = ppo_clip_loss(log_probs, torch.zeros(3, dtype=F64), advantages, tensor([0.0] * 3), CLIP, 0.0)
    assert loss.item() == pytest.approx(0.5 / 3, abs=1e-15)
    assert info["clip_fraction"].item() == 0.0
    loss.backward()
    torch.testing.assert_close(log_probs.grad, -advantages / 3, rtol=1e-15, atol=0.0)


# ------------------------------------------------------------------------------------------------
# Value loss, plain and clipped
# ------------------------------------------------------------------------------------------------


def test_value_loss_is_half_mean_squared_error() -> None:
    values = tensor([1.0, 2.0, 3.0], grad=True)
    returns = tensor([2.0, 2.0, 0.0])
    loss, info = value_loss(values, returns)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.0 + 9.0) / 3, abs=1e-15)
    assert info["value_loss"].item() == loss.item()
    loss.backward()
    torch.testing.assert_close(values.grad, (values - returns).detach() / 3, rtol=1e-15, atol=0.0)


def test_clipped_value_loss_takes_the_pessimistic_branch() -> None:
    # V_old + clip(V - V_old, ±0.2) = [1.3, 1.2, 2.2]; squared errors vs R = [2, 2, 0]:
    #   unclipped [1, 0, 9], clipped [0.49, 0.64, 4.84], max [1, 0.64, 9].
    values = tensor([1.0, 2.0, 3.0], grad=True)
    returns = tensor([2.0, 2.0, 0.0])
    old_values = tensor([1.5, 1.0, 2.0])
    loss, info = value_loss(values, returns, old_values, clip_value=CLIP)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.64 + 9.0) / 3, abs=1e-12)
    assert info["value_loss"].item() == loss.item()
    loss.backward()
    # Rows 0 and 2 take the unclipped error (grad (V - R)/B); row 1 the saturated clip (grad 0).
    torch.testing.assert_close(values.grad, tensor([-1.0 / 3, 0.0, 3.0 / 3]), rtol=1e-12, atol=1e-12)


def test_value_clipping_needs_old_values_and_is_inert_when_inside_the_range() -> None:
    values, returns = tensor([1.0, 2.0, 3.0]), tensor([2.0, 2.0, 0.0])
    plain, _ = value_loss(values, returns)
    without_old, _ = value_loss(values, returns, None, clip_value=CLIP)
    inside, _ = value_loss(values, returns, values + 0.1, clip_value=CLIP)  # |V - V_old| < clip
    assert without_old.item() == plain.item() == inside.item()


# ------------------------------------------------------------------------------------------------
# Surrogate and policy-gradient losses
# ------------------------------------------------------------------------------------------------


def test_surrogate_loss_is_the_unclipped_importance_weighted_advantage() -> None:
    log_probs = log_ratio([0.5, 2.0])
    loss, info = surrogate_loss(log_probs, torch.zeros(2, dtype=F64), tensor([1.0, -1.0]), tensor([0.0, 0.0]), 0.0)
    assert loss.item() == pytest.approx(-(0.5 - 2.0) / 2, abs=1e-12)  # no clipping, even at r = 2
    assert info["policy_loss"].item() == pytest.approx(loss.item(), abs=1e-15)
    loss.backward()
    torch.testing.assert_close(log_probs.grad, tensor([-0.5 / 2, 2.0 / 2]), rtol=1e-12, atol=1e-12)


def test_surrogate_per_sample_terms_are_hand_values_and_average_to_the_surrogate() -> None:
    log_probs, old = torch.log(tensor([0.5, 2.0])), torch.zeros(2, dtype=F64)
    advantages, entropy = tensor([1.0, -1.0]), tensor([0.3, 0.7])
    rows = surrogate_loss_per_sample(log_probs, old, advantages, entropy, 0.1)
    torch.testing.assert_close(rows, tensor([-0.5 - 0.03, 2.0 - 0.07]), rtol=1e-15, atol=1e-15)
    loss, _ = surrogate_loss(log_probs, old, advantages, entropy, 0.1)
    assert rows.mean().item() == pytest.approx(loss.item(), abs=1e-15)


def test_policy_gradient_loss_is_minus_mean_log_prob_times_advantage() -> None:
    log_probs = tensor([-1.0, -2.0], grad=True)
    advantages = tensor([2.0, -3.0])
    loss, info = policy_gradient_loss(log_probs, advantages, tensor([0.0, 0.0]), 0.0)
    assert loss.item() == pytest.approx(-(-2.0 + 6.0) / 2, abs=1e-15)
    assert info["policy_loss"].item() == loss.item()
    loss.backward()
    torch.testing.assert_close(log_probs.grad, -advantages / 2, rtol=1e-15, atol=0.0)


# ------------------------------------------------------------------------------------------------
# The entropy bonus and the (loss, info) contract of every policy loss
# ------------------------------------------------------------------------------------------------

PolicyLoss = Callable[[Tensor, Tensor, float], tuple[Tensor, LossInfo]]
"""``(log_probs, entropy, entropy_coef) -> (loss, info)`` with fixed advantages and old log-probs."""


def _pg(log_probs: Tensor, entropy: Tensor, coef: float) -> tuple[Tensor, LossInfo]:
    return policy_gradient_loss(log_probs, tensor([1.0, -0.5, 2.0]), entropy, coef)


def _surrogate(log_probs: Tensor, entropy: Tensor, coef: float) -> tuple[Tensor, LossInfo]:
    return surrogate_loss(log_probs, tensor([-0.1, 0.2, 0.0]), tensor([1.0, -0.5, 2.0]), entropy, coef)


def _ppo(log_probs: Tensor, entropy: Tensor, coef: float) -> tuple[Tensor, LossInfo]:
    return ppo_clip_loss(log_probs, tensor([-0.1, 0.2, 0.0]), tensor([1.0, -0.5, 2.0]), entropy, CLIP, coef)


POLICY_LOSSES: dict[str, tuple[PolicyLoss, set[str]]] = {
    "policy_gradient": (_pg, {"policy_loss", "entropy"}),
    "surrogate": (_surrogate, {"policy_loss", "entropy"}),
    "ppo_clip": (_ppo, {"policy_loss", "entropy", "clip_fraction"}),
}


@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_entropy_bonus_lowers_the_loss_by_coef_times_mean_entropy(name: str) -> None:
    policy_loss, _ = POLICY_LOSSES[name]
    log_probs = tensor([-0.3, -1.2, -0.7])
    entropy = tensor([0.5, 1.0, 1.5], grad=True)
    coef = 0.01
    without, info_without = policy_loss(log_probs, entropy, 0.0)
    with_bonus, info = policy_loss(log_probs, entropy, coef)
    assert info["entropy"].item() == pytest.approx(1.0, abs=1e-15)
    # L = policy_loss - c_H E[H]: more entropy means a lower loss; policy_loss itself is unchanged.
    assert with_bonus.item() == pytest.approx(without.item() - coef * 1.0, abs=1e-15)
    assert info["policy_loss"].item() == info_without["policy_loss"].item() == without.item()
    with_bonus.backward()
    torch.testing.assert_close(entropy.grad, torch.full((3,), -coef / 3, dtype=F64), rtol=1e-15, atol=0.0)


def _value(log_probs: Tensor, entropy: Tensor, coef: float) -> tuple[Tensor, LossInfo]:
    return value_loss(log_probs, tensor([0.0, 1.0, -1.0]), tensor([0.1, 0.9, -0.5]), clip_value=CLIP)


@pytest.mark.parametrize("name", [*sorted(POLICY_LOSSES), "value"])
def test_loss_info_contract(name: str) -> None:
    """A scalar loss that carries gradient; info: the documented names, detached 0-d tensors."""
    loss_fn, keys = POLICY_LOSSES[name] if name != "value" else (_value, {"value_loss"})
    log_probs = tensor([-0.3, -1.2, -0.7], grad=True)
    loss, info = loss_fn(log_probs, tensor([0.5, 1.0, 1.5], grad=True), 0.01)
    assert loss.dim() == 0 and loss.requires_grad and loss.dtype == F64
    assert set(info) == keys
    for key, value in info.items():
        assert isinstance(value, Tensor) and value.dim() == 0 and not value.requires_grad, key
        assert math.isfinite(value.item()), key
    loss.backward()
    assert log_probs.grad is not None and bool(log_probs.grad.ne(0).any())


# ------------------------------------------------------------------------------------------------
# Diagnostics and advantage normalisation
# ------------------------------------------------------------------------------------------------


def test_explained_variance_hand_values() -> None:
    targets = tensor([1.0, 2.0, 3.0, 4.0])  # population variance 1.25
    # residual [0, 0, 0, -1]: population variance 0.25 - 0.0625 = 0.1875 -> 1 - 0.1875 / 1.25
    assert explained_variance(tensor([1.0, 2.0, 3.0, 5.0]), targets).item() == pytest.approx(0.85, abs=1e-15)
    assert explained_variance(targets, targets).item() == 1.0
    assert explained_variance(torch.full((4,), 2.5, dtype=F64), targets).item() == pytest.approx(0.0, abs=1e-15)
    assert explained_variance(targets + 7.0, targets).item() == pytest.approx(1.0, abs=1e-15)  # offsets are free
    assert explained_variance(-targets, targets).item() == pytest.approx(-3.0, abs=1e-15)  # worse than a constant
    # Constant targets: 0/0 is NaN, any residual makes it -inf (never a finite number to trust).
    assert math.isnan(explained_variance(tensor([3.0, 3.0]), tensor([3.0, 3.0])).item())
    assert explained_variance(tensor([1.0, 2.0]), tensor([3.0, 3.0])).item() == -math.inf


def test_normalize_hand_values_and_degenerate_batches() -> None:
    x = tensor([1.0, 2.0, 3.0, 4.0])  # mean 2.5, unbiased std sqrt(5/3)
    expected = (x - 2.5) / (math.sqrt(5.0 / 3.0) + 1e-8)
    torch.testing.assert_close(normalize(x), expected, rtol=1e-15, atol=1e-15)
    out = normalize(x, eps=0.0)
    assert out.mean().item() == pytest.approx(0.0, abs=1e-15) and out.std().item() == pytest.approx(1.0, abs=1e-15)
    assert normalize(tensor([5.0])).tolist() == [0.0]  # a batch of one is only centred
    assert normalize(tensor([3.0, 3.0])).tolist() == [0.0, 0.0]  # zero spread: eps keeps it finite
