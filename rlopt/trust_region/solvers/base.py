"""The :class:`Solver` interface: how the trust-region step gets d ≈ −M̃⁻¹g and its curvature dᵀM̃d.

A solver is one entry of :data:`~rlopt.trust_region.solvers.SOLVER_CLASSES`; the metrics it accepts
are not listed here but declared by each metric (:attr:`Metric.statistics_solvers`, :meth:`Metric.rows`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from rlopt.trust_region.cg import CGResult
from rlopt.trust_region.metrics.base import Metric, MetricInputs


class Direction(NamedTuple):
    """What a solver returns: the direction, its curvature and the solve's diagnostics."""

    direction: Tensor
    """d ≈ −M̃⁻¹g, M̃ = M + λI."""
    quadratic: Tensor
    """dᵀM̃d, the curvature the step is scaled by (0-dim)."""
    cg: CGResult
    """CG's solve (for a statistics solver: its d, residual 0, 0 iterations)."""


@dataclass(frozen=True)
class StepProblem:
    """Everything a solver may read at θ_old: the gradient, the closure's loss and KL (graph tensors),
    the metric, the policy as functions, the optimizer's state and the closure's recorded forward."""

    params: Sequence[Tensor]
    gradient: Tensor
    loss: Tensor
    kl: Tensor
    metric: Metric
    inputs: MetricInputs | None
    state: MutableMapping[Tensor, dict[str, Any]]
    """The optimizer's per-parameter state (K-FAC keeps its factors there)."""
    step: int
    """Number of earlier steps."""
    recorder: Any = None
    """What :meth:`Solver.recorder` opened around the closure (None if nothing)."""


class Solver(ABC):
    """One way to apply M̃⁻¹ (``actor.optim.solver``)."""

    name: ClassVar[str]
    statistics: ClassVar[bool] = True
    """Builds M from the metric's per-sample :meth:`~Metric.rows` (so it accepts only the metrics that
    list it in ``statistics_solvers``); False: any metric, through its matrix-vector product."""

    reuses_forward: ClassVar[bool] = False
    """Records the closure's forward of ``MetricInputs.module`` (:meth:`recorder`) and reuses it."""

    def recorder(self, inputs: MetricInputs | None, params: Sequence[Tensor]) -> Any:
        """A context manager to open around the closure so the solver can reuse its forward of
        ``inputs.module``, or None (the default: the solver needs none)."""
        return None

    @abstractmethod
    def direction(self, problem: StepProblem, hyper: Mapping[str, Any]) -> Direction:
        """d ≈ −M̃⁻¹g and dᵀM̃d for ``problem``; ``hyper`` is the parameter group (``cg_damping`` is λ)."""

    def require_inputs(self, inputs: MetricInputs | None) -> MetricInputs:
        """``inputs``, or a ValueError saying the solver needs them."""
        if inputs is None:
            raise ValueError(f"solver {self.name!r} needs MetricInputs: pass TrustRegion.step(closure, inputs=...)")
        return inputs


def statistics_direction(gradient: Tensor, direction: Tensor) -> Direction:
    """A direction d = −M̃⁻¹g applied exactly (``kfac``, ``diagonal``) with the approximation's own
    quadratic dᵀM̃d = −gᵀd (ACKTR, Wu et al. 2017, eq. 6), so scaling lands on ½ dᵀM̃d = lr² δ exactly."""
    direction = direction.detach()
    solve = CGResult(solution=direction, residual_norm=torch.zeros((), dtype=gradient.dtype), iterations=0)
    return Direction(direction, -torch.dot(gradient, direction), solve)
