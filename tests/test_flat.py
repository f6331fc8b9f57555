"""Flat parameter/gradient views: order, round trips, unused parameters, no autograd history."""

from __future__ import annotations

import pytest
import torch

from rlopt.trust_region.flat import flat_grad, flat_params, set_flat_params_


def _params() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 2, dtype=torch.float64, generator=generator).requires_grad_()
    bias = torch.randn(3, dtype=torch.float64, generator=generator).requires_grad_()
    scalar = torch.randn((), dtype=torch.float64, generator=generator).requires_grad_()
    return [weight, bias, scalar]


def test_flat_params_concatenates_row_major_in_param_order() -> None:
    weight, bias, scalar = _params()
    flat = flat_params([weight, bias, scalar])
    expected = torch.cat([weight.detach().flatten(), bias.detach(), scalar.detach().view(1)])
    assert flat.shape == (10,)
    assert torch.equal(flat, expected)
    assert not flat.requires_grad
    flat.zero_()  # a copy: the parameters are untouched
    assert weight.abs().sum() > 0


def test_set_flat_params_round_trip_is_exact_and_records_no_history() -> None:
    params = _params()
    target = torch.arange(10, dtype=torch.float64) / 7.0
    set_flat_params_(params, target)
    assert torch.equal(flat_params(params), target)
    assert torch.equal(params[0], target[:6].view(3, 2))
    assert params[2].item() == target[9].item()
    assert all(p.is_leaf and p.grad_fn is None and p.requires_grad for p in params)


def test_set_flat_params_rejects_wrong_size() -> None:
    with pytest.raises(ValueError, match="10 elements"):
        set_flat_params_(_params(), torch.zeros(9, dtype=torch.float64))


def test_flat_grad_matches_analytic_gradient_and_zero_fills_unused() -> None:
    weight, bias, unused = _params()
    x = torch.tensor([1.0, -2.0], dtype=torch.float64)
    output = ((weight @ x + bias) ** 2).sum()  # ∂/∂W = 2(Wx+b)xᵀ, ∂/∂b = 2(Wx+b)
    grad = flat_grad(output, [weight, bias, unused])
    residual = (weight @ x + bias).detach()
    zero = torch.zeros(1, dtype=torch.float64)
    expected = torch.cat([(2 * torch.outer(residual, x)).flatten(), 2 * residual, zero])
    torch.testing.assert_close(grad, expected, rtol=1e-14, atol=1e-14)
    assert weight.grad is None and bias.grad is None  # .grad untouched


def test_flat_grad_of_constant_output_is_zero() -> None:
    params = _params()
    grad = flat_grad(torch.tensor(3.0, dtype=torch.float64), params)
    assert torch.equal(grad, torch.zeros(10, dtype=torch.float64))


def test_flat_grad_create_graph_allows_second_derivative() -> None:
    (weight, bias, scalar) = _params()
    output = (scalar**3) + (bias**2).sum()
    grad = flat_grad(output, [weight, bias, scalar], create_graph=True)
    # d/dθ (g · v) with v = e_scalar gives the last row of the Hessian: [0…, 6·scalar].
    vector = torch.zeros(10, dtype=torch.float64)
    vector[-1] = 1.0
    hessian_row = flat_grad(grad @ vector, [weight, bias, scalar])
    expected = torch.zeros(10, dtype=torch.float64)
    expected[-1] = 6 * scalar.detach()
    torch.testing.assert_close(hessian_row, expected, rtol=1e-14, atol=1e-14)
