"""The ``cg`` solver: conjugate gradient on v ↦ (M + λI)v, Hessian-free (TRPO, Schulman et al. 2015,
App. C). Works with every metric: it only needs the metric's matrix-vector product."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from rlopt.trust_region.cg import conjugate_gradient
from rlopt.trust_region.solvers.base import Direction, Solver, StepProblem


def cg_direction(
    gradient: Tensor, metric_mvp: Callable[[Tensor], Tensor], damping: float, cg_iters: int, cg_tol: float
) -> Direction:
    """d solving (M + λI) d = −g by CG, and dᵀ(M + λI)d by one extra product (not −gᵀd, so the step
    sits on the quadratic model's boundary even when CG stopped early).

    Indefinite M̃ (Hessian, GGN of a non-convex loss): CG stops at the first dᵀM̃d ≤ 0 and keeps its
    last iterate, which has positive curvature. If even the first direction (−g) fails, d = −g and
    the region is measured by the damping alone, ½λ‖d‖² ≤ δ (no valid step if λ = 0).
    """

    def damped_mvp(vector: Tensor) -> Tensor:
        # (M + λI) v: the damping λ keeps M̃ positive definite (Martens 2010).
        return torch.add(metric_mvp(vector), vector, alpha=damping)

    cg = conjugate_gradient(damped_mvp, -gradient, cg_iters, cg_tol)
    if cg.negative_curvature and cg.iterations == 0:  # no positive-curvature iterate: along −g
        direction = -gradient
        quadratic = damping * torch.dot(direction, direction)
    else:
        direction = cg.solution
        quadratic = torch.dot(direction, damped_mvp(direction))
    return Direction(direction, quadratic, cg)


class CGSolver(Solver):
    """M̃⁻¹g by conjugate gradient on the metric's products (every metric)."""

    name: ClassVar[str] = "cg"
    statistics: ClassVar[bool] = False

    def direction(self, problem: StepProblem, hyper: Mapping[str, Any]) -> Direction:
        mvp = problem.metric.mvp(problem.params, problem.loss, problem.kl, problem.inputs)
        return cg_direction(problem.gradient, mvp, hyper["cg_damping"], hyper["cg_iters"], hyper["cg_tol"])
