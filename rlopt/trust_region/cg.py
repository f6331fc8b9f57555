"""Conjugate gradient: solve A x = b for SPD A given only v ↦ A v ("Hessian-free"; docs/theory.md#conjugate-gradient).

TRPO never forms the Fisher matrix; it solves (F + λI) x = −g with a few CG iterations, each
costing one matrix-vector product (Schulman et al. 2015, App. C).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class CGResult(NamedTuple):
    """Outcome of :func:`conjugate_gradient`."""

    solution: Tensor
    """The approximate solution x (same shape as b)."""
    residual_norm: Tensor
    """‖b − A x‖ as carried by the CG recurrence (0-dim tensor)."""
    iterations: int
    """Iterations that updated x (≤ ``iters``)."""
    negative_curvature: bool = False
    """CG stopped at a direction with pᵀAp ≤ 0 (A not positive definite along it); x is then the
    last iterate built from positive-curvature directions (0 if the first one already failed)."""


def conjugate_gradient(
    mvp: Callable[[Tensor], Tensor],
    b: Tensor,
    iters: int,
    tol: float = 1e-10,
) -> CGResult:
    """Solve A x = b from x₀ = 0 with CG (Hestenes & Stiefel 1952; Nocedal & Wright Alg. 5.2).

    Args:
        mvp: v ↦ A v for a symmetric positive-definite A; must not modify its argument.
        b: right-hand side, 1-D.
        iters: maximum number of iterations (= matrix-vector products).
        tol: stop once the squared residual ‖r‖² falls below ``tol``.

    The loop has no host synchronisation: convergence (‖r‖² < tol) and non-positive curvature
    (pᵀAp ≤ 0, where A is not positive definite along p) freeze the iterate through masked
    updates instead of a Python ``break``, so exactly ``iters`` products are evaluated. Since the
    iterate x_k = Σ_j α_j p_j has x_kᵀAx_k = Σ_j α_j² p_jᵀAp_j > 0 (conjugacy), the frozen iterate
    keeps positive curvature (Steihaug 1983); ``negative_curvature`` reports the stop. The only
    sync is the final conversion of the iteration count and that flag to Python.
    """
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    b = b.detach()
    x = torch.zeros_like(b)
    residual = b.clone()  # r₀ = b − A x₀ with x₀ = 0
    direction = residual.clone()  # p₀ = r₀
    residual_sq = torch.dot(residual, residual)
    running = residual_sq >= tol
    iterations = torch.zeros((), dtype=torch.int64, device=b.device)
    negative = torch.zeros((), dtype=torch.bool, device=b.device)
    for _ in range(iters):
        a_direction = mvp(direction)
        curvature = torch.dot(direction, a_direction)
        negative = negative | (running & (curvature <= 0))
        running = running & (curvature > 0)
        # α = rᵀr / pᵀAp (N&W 5.24a); zero once stopped, so x and r stay frozen.
        alpha = torch.where(running, residual_sq / curvature, 0.0)
        x.addcmul_(alpha, direction)
        residual.addcmul_(alpha, a_direction, value=-1.0)
        new_residual_sq = torch.dot(residual, residual)
        # β = r₊ᵀr₊ / rᵀr (N&W 5.24d); p₊ = r₊ + β p.
        beta = torch.where(running, new_residual_sq / residual_sq, 0.0)
        direction.mul_(beta).add_(residual)
        iterations += running
        running = running & (new_residual_sq >= tol)
        residual_sq = new_residual_sq
    iteration_count, stopped_negative = torch.stack([iterations, negative.to(torch.int64)]).tolist()
    return CGResult(
        solution=x,
        residual_norm=residual_sq.sqrt(),
        iterations=iteration_count,
        negative_curvature=bool(stopped_negative),
    )
