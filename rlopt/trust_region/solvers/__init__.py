"""How the trust-region step applies M̃⁻¹ (``actor.optim.solver``; seed 003, "Practical computation").

==========  ===============================================  ==========================================
solver      M̃⁻¹g by                                          metrics it accepts
==========  ===============================================  ==========================================
``cg``      conjugate gradient on v ↦ (M + λI)v (Hessian-    every metric
            free, TRPO)
``kfac``    Kronecker-factored blocks A ⊗ G per Linear layer  fisher, empirical_fisher, gauss_newton
            (Martens & Grosse 2015; ACKTR, Wu et al. 2017)
``diagonal`` diag(M) + λI (Lehman et al. 2018)                fisher, empirical_fisher,
                                                               gradient_covariance, gauss_newton
==========  ===============================================  ==========================================

``kfac`` and ``diagonal`` build M from per-sample statistics (:mod:`.rows`), so they need a metric
that is a sum of gradient outer products; ``hessian``, ``generalized_gauss_newton`` (indefinite) and
``identity`` (nothing to factor) are CG's only. Their quadratic is the approximation's own,
dᵀM̃d = −gᵀd, and the optimizer scales and line-searches d exactly as it does CG's.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import torch
from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.trust_region.metrics.base import MetricInputs
from rlopt.trust_region.solvers.diagonal import diagonal_solver_direction
from rlopt.trust_region.solvers.kfac import ForwardRecorder, kfac_solver_direction, linear_layers
from rlopt.trust_region.solvers.rows import metric_rows

SOLVER_METRICS: dict[str, tuple[str, ...] | None] = {
    "cg": None,
    "kfac": ("fisher", "empirical_fisher", "gauss_newton"),
    "diagonal": ("fisher", "empirical_fisher", "gradient_covariance", "gauss_newton"),
}
"""Every solver and the metrics it accepts (None: all)."""
SOLVERS: tuple[str, ...] = tuple(SOLVER_METRICS)


def check_solver(solver: Any, metric: str | None = None) -> None:
    """One-line :class:`ConfigError` for an unknown solver or (``metric`` given) a metric/solver pair
    that makes no sense."""
    if not isinstance(solver, str) or solver not in SOLVER_METRICS:
        raise ConfigError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    accepted = SOLVER_METRICS[solver]
    if accepted is not None and metric is not None and metric not in accepted:
        raise ConfigError(
            f"solver {solver!r} does not work with metric {metric!r}: {solver} needs a metric of "
            f"gradient outer products ({', '.join(accepted)}); use solver cg for {metric}"
        )


def solver_direction(
    solver: str,
    metric: str,
    inputs: MetricInputs | None,
    params: Sequence[Tensor],
    gradient: Tensor,
    state: MutableMapping[Tensor, dict[str, Any]],
    step: int,
    hyper: dict[str, Any],
    recorder: ForwardRecorder | None = None,
) -> Tensor:
    """d ≈ −M̃⁻¹g by the statistics solver ``solver`` (``kfac`` or ``diagonal``) for ``metric``.

    ``state`` is the optimizer's per-parameter state (K-FAC keeps its factors there), ``step`` the
    number of earlier steps, ``hyper`` the parameter group (``cg_damping`` is λ for every solver);
    ``recorder`` (``kfac``, from :func:`recorder_for`) holds the closure's forward for reuse.
    """
    if inputs is None:
        raise ValueError(f"solver {solver!r} needs MetricInputs: pass TrustRegion.step(closure, inputs=...)")
    damping = hyper["cg_damping"]
    if solver == "diagonal":
        with torch.no_grad():
            outputs = inputs.outputs_of(*inputs.primals(params))
        return diagonal_solver_direction(inputs, params, gradient, metric_rows(inputs, metric, outputs), damping)
    if solver == "kfac":

        def rows_of(outputs: Tensor) -> list:
            return metric_rows(inputs, metric, outputs)

        return kfac_solver_direction(
            inputs, params, gradient, rows_of, state, step,
            damping=damping, stat_decay=hyper["kfac_stat_decay"], update_every=hyper["kfac_update_every"],
            recorder=recorder,
        )  # fmt: skip
    raise ValueError(f"solver {solver!r} is not a statistics solver")


def recorder_for(solver: str, inputs: MetricInputs | None, params: Sequence[Tensor]) -> ForwardRecorder | None:
    """The hooks to open around the closure so ``solver`` can reuse its forward (``kfac`` only: its
    factors need each layer's input and pre-activation, which the closure's forward of
    ``inputs.module`` provides); None for the others or without a module."""
    if solver != "kfac" or inputs is None or inputs.module is None:
        return None
    return ForwardRecorder(inputs.module, linear_layers(inputs.module, params))


__all__ = ["SOLVERS", "SOLVER_METRICS", "check_solver", "recorder_for", "solver_direction"]
