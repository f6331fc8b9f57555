"""The ``diagonal`` solver: M̃ ≈ diag(M) + λI (Lehman et al. 2018, "Safe mutations ... through output
gradients"; Pierrot et al. 2018's simplest approximation; docs/theory.md#solvers).

diag(M)_p = E_i[Σ_j (∂r_j(y_i)/∂θ_p)²] from per-sample gradients (``torch.func``, once per step),
for the rows r_j of the metric (:mod:`.rows`); the direction is d = −g / (diag(M) + λ). The
optimizer scales d to the trust radius with the quadratic dᵀM̃d = −gᵀd (exact for this M̃).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from rlopt.trust_region.metrics.base import MetricInputs, Row
from rlopt.trust_region.metrics.outer_product import per_sample_gradients
from rlopt.trust_region.solvers.base import Direction, Solver, StepProblem, statistics_direction


def metric_diagonal(
    inputs: MetricInputs, params: Sequence[Tensor], rows: Sequence[Row], only: Sequence[int] | None = None
) -> Tensor:
    """diag(M) = E_i[Σ_j g_ij ⊙ g_ij] over ``params`` (or the indices ``only``), flat, in their order."""
    total: Tensor | None = None
    for row in rows:
        per_sample = per_sample_gradients(
            dataclasses.replace(inputs, targets=row.targets), params, row.function, only=only
        )
        squares = per_sample.square().mean(dim=0)
        total = squares if total is None else total + squares
    if total is None:
        raise ValueError("metric_diagonal needs at least one row")
    return total


def diagonal_direction(gradient: Tensor, diagonal: Tensor, damping: float) -> Tensor:
    """d = −(diag(M) + λI)⁻¹ g, elementwise."""
    return -gradient / (diagonal + damping)


def diagonal_solver_direction(
    inputs: MetricInputs, params: Sequence[Tensor], gradient: Tensor, rows: Sequence[Row], damping: float
) -> Tensor:
    """The ``diagonal`` solver's d for all ``params``."""
    with torch.enable_grad():
        diagonal = metric_diagonal(inputs, params, rows)
    return diagonal_direction(gradient, diagonal, damping)


class DiagonalSolver(Solver):
    """M̃ ≈ diag(M) + λI from the metric's rows, applied exactly."""

    name: ClassVar[str] = "diagonal"

    def direction(self, problem: StepProblem, hyper: Mapping[str, Any]) -> Direction:
        inputs = self.require_inputs(problem.inputs)
        with torch.no_grad():
            outputs = inputs.outputs_of(*inputs.primals(problem.params))
        rows = problem.metric.rows(outputs, inputs)
        direction = diagonal_solver_direction(inputs, problem.params, problem.gradient, rows, hyper["cg_damping"])
        return statistics_direction(problem.gradient, direction)
