"""How the trust-region step applies M̃⁻¹ (``actor.optim.solver``; docs/theory.md#solvers).

==========  ===============================================  ==========================================
solver      M̃⁻¹g by                                          metrics it accepts
==========  ===============================================  ==========================================
``cg``      conjugate gradient on v ↦ (M + λI)v (Hessian-    every metric
            free, TRPO)
``kfac``    Kronecker-factored blocks A ⊗ G per Linear layer  the metrics that declare it
            (Martens & Grosse 2015; ACKTR, Wu et al. 2017)
``diagonal`` diag(M) + λI (Lehman et al. 2018)                the metrics that declare it
==========  ===============================================  ==========================================

``kfac`` and ``diagonal`` build M from per-sample statistics (:meth:`Metric.rows`), so they need a
metric that is a sum of gradient outer products and says so (``Metric.statistics_solvers``):
:func:`solver_metrics` derives the table from those declarations, never kept by hand. Their quadratic is
the approximation's own, dᵀM̃d = −gᵀd, and the optimizer scales and line-searches d exactly as it
does CG's.
"""

from __future__ import annotations

from typing import Any

from rlopt.errors import ConfigError
from rlopt.trust_region.metrics import METRICS
from rlopt.trust_region.solvers.base import Direction, Solver, StepProblem
from rlopt.trust_region.solvers.cg import CGSolver
from rlopt.trust_region.solvers.diagonal import DiagonalSolver
from rlopt.trust_region.solvers.kfac import KFACSolver

SOLVER_CLASSES: dict[str, type[Solver]] = {cls.name: cls for cls in (CGSolver, KFACSolver, DiagonalSolver)}
"""Every solver by name."""
SOLVERS: tuple[str, ...] = tuple(SOLVER_CLASSES)


def solver_metrics() -> dict[str, tuple[str, ...] | None]:
    """Every solver and the metrics it accepts (None: all), derived from the declarations of the
    metrics registered now (``Metric.statistics_solvers``)."""
    return {
        name: tuple(metric for metric, cls in METRICS.items() if name in cls.statistics_solvers) if solver.statistics else None
        for name, solver in SOLVER_CLASSES.items()
    }


SOLVER_METRICS: dict[str, tuple[str, ...] | None] = solver_metrics()
"""The solver × metric table of the built-in metrics (:func:`solver_metrics`)."""


def check_solver(solver: Any, metric: str | None = None) -> None:
    """One-line :class:`ConfigError` for an unknown solver or (``metric`` given) a metric/solver pair
    that makes no sense."""
    if not isinstance(solver, str) or solver not in SOLVER_CLASSES:
        raise ConfigError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    accepted = solver_metrics()[solver]
    if accepted is not None and metric is not None and metric not in accepted:
        raise ConfigError(
            f"solver {solver!r} does not work with metric {metric!r}: {solver} needs a metric of "
            f"gradient outer products ({', '.join(accepted)}); use solver cg for {metric}"
        )


def build_solver(name: str) -> Solver:
    """The solver named ``name`` (checked with :func:`check_solver` first)."""
    check_solver(name)
    return SOLVER_CLASSES[name]()


__all__ = ["SOLVERS", "SOLVER_CLASSES", "SOLVER_METRICS", "Direction", "Solver", "StepProblem", "build_solver", "check_solver",
           "solver_metrics"]  # fmt: skip
