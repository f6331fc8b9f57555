"""Backtracking line search on a trust-region step (TRPO, Schulman et al. 2015, App. C).

The quadratic model behind the step (docs/theory.md#trust-region-step) is only local, so TRPO shrinks the step
geometrically, θ_old + βᵏ·Δθ, until the true surrogate improves and the true mean KL stays
within δ. If no fraction passes, the parameters go back to θ_old exactly (Tianshou PR #1287 is
the bug where a failed search left them moved).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rlopt.options import Check, finite, integer, real
from rlopt.trust_region.flat import flat_params, set_flat_params_


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of :func:`backtracking_line_search` (python scalars, ready to log)."""

    accepted: bool
    """Whether some fraction of the step passed all tests (else parameters are restored)."""
    steps: int
    """Number of trial points evaluated."""
    step_fraction: float
    """βᵏ of the accepted point, 0.0 if none was accepted."""
    loss: float
    """Loss at the final parameters (``loss_before`` if rejected)."""
    kl: float
    """Mean KL(π_old‖π_θ) at the final parameters (0.0 if rejected)."""
    improvement: float
    """loss_before − loss at the final parameters (0.0 if rejected)."""


check_finite_real = finite
"""Raise :class:`ConfigError` unless ``value`` is a finite int or float (not bool or str)."""

LINE_SEARCH_CHECKS: dict[str, Check] = {
    "max_kl": real(0.0, low_open=True),
    "backtrack_coef": real(0.0, 1.0, low_open=True),
    "max_backtracks": integer(1),
    "accept_ratio": real(0.0, 1.0),
}
"""The range of each line-search argument (the trust-region step declares its options with these)."""


def validate_line_search_args(
    max_kl: float, backtrack_coef: float, max_backtracks: int, accept_ratio: float
) -> None:
    """Raise :class:`ConfigError` for a hyper-parameter outside its valid range."""
    values = {"max_kl": max_kl, "backtrack_coef": backtrack_coef, "max_backtracks": max_backtracks, "accept_ratio": accept_ratio}
    for name, check in LINE_SEARCH_CHECKS.items():
        check(name, values[name])


def backtracking_line_search(
    params: Sequence[Tensor],
    full_step: Tensor,
    evaluate: Callable[[], tuple[Tensor, Tensor]],
    loss_before: Tensor,
    max_kl: float,
    backtrack_coef: float,
    max_backtracks: int,
    expected_improvement: Tensor | None = None,
    accept_ratio: float = 0.0,
) -> LineSearchResult:
    """Try θ_old + βᵏ·full_step for k = 0, …, max_backtracks − 1; keep the first acceptable one.

    Args:
        params: the parameters, at θ_old on entry; modified in place.
        full_step: the flat step Δθ (k = 0).
        evaluate: returns (loss to minimise, mean KL(π_old‖π_θ)) at the current parameters;
            called under ``torch.no_grad()``.
        loss_before: the loss at θ_old.
        max_kl: the trust radius δ on the mean KL.
        backtrack_coef: β ∈ (0, 1).
        max_backtracks: number of trial points.
        expected_improvement: −gᵀΔθ, the first-order predicted improvement of the full step.
        accept_ratio: if > 0 (and ``expected_improvement`` is given) also require
            improvement ≥ accept_ratio · βᵏ · expected_improvement (Armijo condition).

    A point is accepted when loss and KL are finite, improvement = loss_before − loss > 0,
    the Armijo condition holds (if enabled) and KL ≤ max_kl. Each trial costs one host sync,
    needed to decide in Python whether to continue.
    """
    validate_line_search_args(max_kl, backtrack_coef, max_backtracks, accept_ratio)
    params = list(params)
    saved = [p.detach().clone() for p in params]  # for a bit-exact restore
    theta_old = flat_params(params)
    trial_point = torch.empty_like(theta_old)
    loss_before_value = float(loss_before)
    use_armijo = accept_ratio > 0 and expected_improvement is not None
    expected_value = float(expected_improvement) if use_armijo else 0.0

    for trial in range(max_backtracks):
        fraction = backtrack_coef**trial
        torch.add(theta_old, full_step.detach(), alpha=fraction, out=trial_point)
        set_flat_params_(params, trial_point)
        with torch.no_grad():
            loss, kl = evaluate()
        loss_value, kl_value = float(loss), float(kl)
        improvement = loss_before_value - loss_value
        acceptable = (
            math.isfinite(loss_value)
            and math.isfinite(kl_value)
            and improvement > 0
            and (not use_armijo or improvement >= accept_ratio * fraction * expected_value)
            and kl_value <= max_kl
        )
        if acceptable:
            return LineSearchResult(
                accepted=True,
                steps=trial + 1,
                step_fraction=fraction,
                loss=loss_value,
                kl=kl_value,
                improvement=improvement,
            )

    with torch.no_grad():
        for p, original in zip(params, saved):
            p.copy_(original)
    return LineSearchResult(
        accepted=False,
        steps=max_backtracks,
        step_fraction=0.0,
        loss=loss_before_value,
        kl=0.0,
        improvement=0.0,
    )
