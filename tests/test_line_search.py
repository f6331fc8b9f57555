"""Backtracking line search with scripted (loss, KL) sequences."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.trust_region.flat import flat_params
from rlopt.trust_region.line_search import backtracking_line_search

DTYPE = torch.float64
BETA = 0.5
MAX_KL = 0.01
LOSS_BEFORE = 1.0


def _params() -> list[Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(2, 3, dtype=DTYPE, generator=generator).requires_grad_(),
        torch.randn(4, dtype=DTYPE, generator=generator).requires_grad_(),
    ]


def _full_step() -> Tensor:
    return torch.randn(10, dtype=DTYPE, generator=torch.Generator().manual_seed(1))


class ScriptedEvaluate:
    """Returns scripted (loss, kl) pairs in order and records the parameters it saw."""

    def __init__(self, params: list[Tensor], script: list[tuple[float, float]]) -> None:
        self.params = params
        self.script = list(script)
        self.seen: list[Tensor] = []

    def __call__(self) -> tuple[Tensor, Tensor]:
        assert not torch.is_grad_enabled(), "evaluate must run under torch.no_grad()"
        self.seen.append(flat_params(self.params))
        loss, kl = self.script[len(self.seen) - 1]
        return torch.tensor(loss, dtype=DTYPE), torch.tensor(kl, dtype=DTYPE)


def _search(script: list[tuple[float, float]], max_backtracks: int = 5, **kwargs: object):
    params = _params()
    theta_old = flat_params(params)
    evaluate = ScriptedEvaluate(params, script)
    result = backtracking_line_search(
        params,
        _full_step(),
        evaluate,
        loss_before=torch.tensor(LOSS_BEFORE, dtype=DTYPE),
        max_kl=MAX_KL,
        backtrack_coef=BETA,
        max_backtracks=max_backtracks,
        **kwargs,
    )
    return result, params, theta_old, evaluate


def test_trial_points_are_geometric_fractions_of_the_step() -> None:
    script = [(2.0, 0.5), (1.5, 0.02), (0.9, 0.004), (0.1, 0.0)]
    result, params, theta_old, evaluate = _search(script)
    assert len(evaluate.seen) == 3
    for k, seen in enumerate(evaluate.seen):
        torch.testing.assert_close(seen, theta_old + BETA**k * _full_step(), rtol=1e-15, atol=1e-15)
    assert result.accepted and result.steps == 3
    assert result.step_fraction == BETA**2
    assert result.loss == 0.9 and result.kl == 0.004
    assert result.improvement == pytest.approx(0.1, rel=1e-12)
    accepted_point = theta_old + BETA**2 * _full_step()
    torch.testing.assert_close(flat_params(params), accepted_point, rtol=1e-15, atol=1e-15)


def test_full_step_accepted_when_it_improves_within_radius() -> None:
    result, params, theta_old, _ = _search([(0.5, MAX_KL)])  # KL exactly at the radius is allowed
    assert result.accepted and result.steps == 1 and result.step_fraction == 1.0
    full_point = theta_old + _full_step()
    torch.testing.assert_close(flat_params(params), full_point, rtol=1e-15, atol=1e-15)


def test_kl_violation_is_rejected_even_with_large_improvement() -> None:
    result, _, _, _ = _search([(-100.0, MAX_KL * 1.001), (0.99, 0.001)])
    assert result.steps == 2 and result.step_fraction == BETA


def test_non_improving_points_are_rejected() -> None:
    script = [(LOSS_BEFORE, 0.0), (LOSS_BEFORE + 1e-9, 0.0), (LOSS_BEFORE - 1e-9, 0.0)]
    result, _, _, _ = _search(script)
    assert result.accepted and result.steps == 3


@pytest.mark.parametrize(
    "bad", [(math.nan, 0.0), (0.5, math.nan), (-math.inf, 0.0), (0.5, math.inf)]
)
def test_non_finite_loss_or_kl_is_rejected(bad: tuple[float, float]) -> None:
    result, _, _, _ = _search([bad, (0.5, 0.001)])
    assert result.accepted and result.steps == 2 and result.loss == 0.5


def test_all_rejected_restores_parameters_bit_exactly() -> None:
    params = _params()
    originals = [p.detach().clone() for p in params]
    evaluate = ScriptedEvaluate(params, [(LOSS_BEFORE + 1.0, 0.0)] * 4)
    # A step with a huge and a tiny component: θ − (θ + s) would not round-trip exactly.
    full_step = _full_step() * torch.tensor([1e8, 1e-8] * 5, dtype=DTYPE)
    result = backtracking_line_search(
        params, full_step, evaluate, torch.tensor(LOSS_BEFORE, dtype=DTYPE), MAX_KL, BETA, 4
    )
    assert not result.accepted
    assert result.steps == 4 and len(evaluate.seen) == 4
    assert result.step_fraction == 0.0 and result.kl == 0.0 and result.improvement == 0.0
    assert result.loss == LOSS_BEFORE
    assert all(torch.equal(p.detach(), original) for p, original in zip(params, originals))
    assert all(p.requires_grad and p.grad_fn is None for p in params)


def test_accept_ratio_requires_fraction_of_expected_improvement() -> None:
    # expected improvement of the full step = 1.0, accept_ratio = 0.5:
    # k=0 needs ≥ 0.5 (has 0.3), k=1 needs ≥ 0.25 (has 0.3) → accept k=1.
    script = [(LOSS_BEFORE - 0.3, 0.0), (LOSS_BEFORE - 0.3, 0.0)]
    expected = torch.tensor(1.0, dtype=DTYPE)
    result, _, _, _ = _search(script, expected_improvement=expected, accept_ratio=0.5)
    assert result.accepted and result.steps == 2

    # With accept_ratio = 0 the same script accepts the full step.
    result, _, _, _ = _search(script, expected_improvement=expected, accept_ratio=0.0)
    assert result.steps == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_kl": 0.0}, "max_kl must be > 0"),
        ({"backtrack_coef": 1.0}, "backtrack_coef must be in"),
        ({"max_backtracks": 0}, "max_backtracks must be an integer >= 1"),
        ({"accept_ratio": 1.0}, "accept_ratio must be in"),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs: dict[str, float], message: str) -> None:
    params = _params()
    arguments = {"max_kl": MAX_KL, "backtrack_coef": BETA, "max_backtracks": 3} | kwargs
    with pytest.raises(ConfigError, match=message):
        backtracking_line_search(
            params,
            _full_step(),
            ScriptedEvaluate(params, []),
            torch.tensor(1.0, dtype=DTYPE),
            **arguments,
        )
