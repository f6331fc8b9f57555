"""Conjugate gradient against dense solves (float64)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from rlopt.trust_region.cg import conjugate_gradient


def _spd(n: int, condition: float, seed: int) -> torch.Tensor:
    """Random SPD matrix with eigenvalues log-spaced in [1, condition]."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
    eigenvalues = torch.logspace(0, math.log10(condition), n, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cg_matches_dense_solve_on_random_spd(seed: int) -> None:
    n = 20
    # Exact arithmetic terminates in n steps (Nocedal & Wright Thm 5.1); with condition 10 the
    # float64 loss of conjugacy is still negligible, so n iterations give a tight answer.
    matrix = _spd(n, condition=10.0, seed=seed)
    b = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + seed))
    result = conjugate_gradient(lambda v: matrix @ v, b, iters=n, tol=1e-30)
    exact = torch.linalg.solve(matrix, b)
    torch.testing.assert_close(result.solution, exact, rtol=1e-11, atol=1e-11)


def test_cg_solves_known_3x3_system_exactly() -> None:
    matrix = [[4, 1, 1], [1, 3, 0], [1, 0, 2]]
    b = [1, 2, 3]
    # Exact solution by Cramer's rule: det A = 4·6 − 1·2 + 1·(−3) = 19, x = (−7, 15, 32)/19.
    det = Fraction(19)
    exact = [Fraction(-7) / det, Fraction(15) / det, Fraction(32) / det]
    for row, rhs in zip(matrix, b):
        assert sum(Fraction(a) * x for a, x in zip(row, exact)) == rhs

    a = torch.tensor(matrix, dtype=torch.float64)
    rhs_tensor = torch.tensor(b, dtype=torch.float64)
    result = conjugate_gradient(lambda v: a @ v, rhs_tensor, iters=3, tol=1e-30)
    expected = torch.tensor([float(x) for x in exact], dtype=torch.float64)
    torch.testing.assert_close(result.solution, expected, rtol=1e-13, atol=1e-13)
    assert result.iterations == 3


def test_cg_converges_in_as_many_iterations_as_distinct_eigenvalues() -> None:
    # CG terminates after k steps when A has k distinct eigenvalues (Nocedal & Wright Thm 5.4);
    # the remaining iterations must then leave x untouched.
    matrix = torch.diag(torch.tensor([1.0, 1.0, 2.0, 2.0, 5.0, 5.0], dtype=torch.float64))
    b = torch.tensor([1.0, -1.0, 0.5, 2.0, 3.0, -4.0], dtype=torch.float64)
    result = conjugate_gradient(lambda v: matrix @ v, b, iters=50, tol=1e-24)
    assert result.iterations == 3
    torch.testing.assert_close(result.solution, b / matrix.diagonal(), rtol=1e-13, atol=1e-13)
    assert result.residual_norm.item() < 1e-12


def test_cg_ill_conditioned_error_decreases_and_converges() -> None:
    n = 20
    condition = 1e5
    matrix = _spd(n, condition=condition, seed=7)
    b = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    exact = torch.linalg.solve(matrix, b)

    def energy_error(x: torch.Tensor) -> float:
        error = x - exact
        return torch.sqrt(error @ matrix @ error).item()

    # The A-norm of the error is monotonically non-increasing in CG (Nocedal & Wright Thm 5.2),
    # even though with condition 1e5 float64 CG needs about 2n iterations instead of n.
    errors = [
        energy_error(conjugate_gradient(lambda v: matrix @ v, b, iters=k, tol=0.0).solution)
        for k in range(0, 51)
    ]
    assert all(later <= earlier * (1 + 1e-8) for earlier, later in zip(errors, errors[1:]))
    assert errors[n] > 1e-2 * errors[0]  # not yet converged after n iterations ...
    assert errors[50] < 1e-10 * errors[0]  # ... but after 2.5 n

    result = conjugate_gradient(lambda v: matrix @ v, b, iters=200, tol=1e-24)
    assert result.iterations < 200  # the tolerance stopped it
    torch.testing.assert_close(result.solution, exact, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("iters", [1, 4, 8])
def test_cg_residual_norm_equals_true_residual(iters: int) -> None:
    n = 20
    matrix = _spd(n, condition=100.0, seed=3)
    b = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    result = conjugate_gradient(lambda v: matrix @ v, b, iters=iters, tol=0.0)
    true_residual = torch.linalg.norm(b - matrix @ result.solution)
    assert true_residual > 1e-6  # not converged yet: the comparison is meaningful
    torch.testing.assert_close(result.residual_norm, true_residual, rtol=1e-9, atol=0.0)
    assert result.iterations == iters


def test_cg_zero_rhs_returns_zero_without_iterating() -> None:
    result = conjugate_gradient(lambda v: 2 * v, torch.zeros(4, dtype=torch.float64), iters=10)
    assert torch.equal(result.solution, torch.zeros(4, dtype=torch.float64))
    assert result.iterations == 0
    assert result.residual_norm.item() == 0.0


def test_cg_stops_on_non_positive_curvature() -> None:
    # A = diag(1, −1): the first direction b = (1, 1) has pᵀAp = 0, so x must stay at 0 and finite.
    matrix = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    result = conjugate_gradient(lambda v: matrix @ v, torch.ones(2, dtype=torch.float64), iters=5)
    assert torch.equal(result.solution, torch.zeros(2, dtype=torch.float64))
    assert result.iterations == 0


def test_cg_does_not_modify_rhs() -> None:
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    conjugate_gradient(lambda v: v, b, iters=3)
    assert torch.equal(b, torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_cg_keeps_the_last_positive_curvature_iterate_on_an_indefinite_matrix() -> None:
    # A = diag(4, −1), b = (1, ½): p₀ = b has p₀ᵀAp₀ = 3.75 > 0, so x₁ = (bᵀb / bᵀAb) b = b/3;
    # then r₁ = (−⅓, ⅔), β = (5/9)/(5/4) = 4/9, p₁ = (1/9, 8/9) with p₁ᵀAp₁ = (4 − 64)/81 < 0.
    matrix = torch.diag(torch.tensor([4.0, -1.0], dtype=torch.float64))
    b = torch.tensor([1.0, 0.5], dtype=torch.float64)
    result = conjugate_gradient(lambda v: matrix @ v, b, iters=10, tol=1e-30)
    assert result.negative_curvature and result.iterations == 1
    torch.testing.assert_close(result.solution, b / 3, rtol=1e-15, atol=1e-15)
    assert result.solution @ matrix @ result.solution > 0


def test_cg_reports_negative_curvature_on_the_first_direction_and_not_on_spd() -> None:
    indefinite = torch.diag(torch.tensor([1.0, -3.0], dtype=torch.float64))
    first = conjugate_gradient(lambda v: indefinite @ v, torch.ones(2, dtype=torch.float64), iters=5)
    assert first.negative_curvature and first.iterations == 0
    assert torch.equal(first.solution, torch.zeros(2, dtype=torch.float64))
    spd = _spd(6, condition=10.0, seed=0)
    assert not conjugate_gradient(lambda v: spd @ v, torch.ones(6, dtype=torch.float64), iters=6).negative_curvature


def test_cg_on_a_rotated_indefinite_matrix_stops_with_positive_curvature() -> None:
    generator = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64, generator=generator))
    matrix = q @ torch.diag(torch.tensor([5.0, 4, 3, 2, 1, 0.5, -0.5, -2], dtype=torch.float64)) @ q.T
    b = torch.randn(8, dtype=torch.float64, generator=generator)
    result = conjugate_gradient(lambda v: matrix @ v, b, iters=20, tol=1e-30)
    assert result.negative_curvature and result.iterations >= 1
    # the frozen iterate is the one of the last positive-curvature iteration
    before = conjugate_gradient(lambda v: matrix @ v, b, iters=result.iterations, tol=1e-30)
    assert not before.negative_curvature
    torch.testing.assert_close(result.solution, before.solution, rtol=0.0, atol=0.0)
    assert result.solution @ matrix @ result.solution > 0
