"""The trust-region step's hyper-parameters, each listed once: default, range check, meaning.

:class:`~rlopt.trust_region.optimizer.TrustRegion`'s signature, its ``defaults``, its checks (at
construction and at every step), the options a ``trust_region`` spec accepts and the schema's
default spec (``rlopt.config.DEFAULT_TRUST_REGION``) all derive from :data:`TRUST_REGION_HYPERPARAMETERS`.
"""

from __future__ import annotations

from typing import Any

from rlopt.options import Option, boolean, integer, real
from rlopt.trust_region.line_search import LINE_SEARCH_CHECKS
from rlopt.trust_region.metrics import build_metric
from rlopt.trust_region.solvers import check_solver
from rlopt.trust_region.solvers.kfac import STAT_DECAY, UPDATE_EVERY


def _metric(name: str, value: Any) -> None:
    build_metric(value, key=name)  # a registered name or a Metric instance


def _solver(name: str, value: Any) -> None:
    check_solver(value)  # the name only; the metric/solver pair is checked with the metric


TRUST_REGION_HYPERPARAMETERS: dict[str, Option] = {
    "metric": Option("fisher", _metric, "M(θ) by name (rlopt.trust_region.METRICS) or a Metric instance"),
    "lr": Option(1.0, real(0.0, low_open=True), "multiplier of the scaled step (1 reaches the trust radius)"),
    "max_kl": Option(0.01, LINE_SEARCH_CHECKS["max_kl"], "trust radius δ on the mean KL(π_old‖π_θ); schedulable"),
    "cg_iters": Option(10, integer(1), "CG iterations (matrix-vector products) per step"),
    "cg_damping": Option(0.1, real(0.0), "λ in M + λI (for every solver)"),
    "cg_tol": Option(1e-10, real(0.0), "CG stops once ‖r‖² < cg_tol"),
    "line_search": Option(True, boolean, "backtrack on the true loss and KL (TRPO) or apply the step as is (NPG)"),
    "backtrack_coef": Option(0.8, LINE_SEARCH_CHECKS["backtrack_coef"], "β, the shrink factor of the line search"),
    "max_backtracks": Option(10, LINE_SEARCH_CHECKS["max_backtracks"], "number of trial points of the line search"),
    "accept_ratio": Option(0.0, LINE_SEARCH_CHECKS["accept_ratio"], "Armijo fraction of the expected improvement required (0 disables)"),
    "solver": Option("cg", _solver, "how M̃⁻¹g is applied: cg, kfac or diagonal (rlopt.trust_region.solvers)"),
    "kfac_stat_decay": Option(STAT_DECAY.default, STAT_DECAY.check, f"kfac: {STAT_DECAY.doc}"),
    "kfac_update_every": Option(UPDATE_EVERY.default, UPDATE_EVERY.check, f"kfac: {UPDATE_EVERY.doc}"),
}  # fmt: skip
"""Every hyper-parameter of the trust-region step, in signature order."""

TRUST_REGION_OPTIONS: tuple[str, ...] = tuple(TRUST_REGION_HYPERPARAMETERS)
"""Keywords a ``trust_region`` spec may set besides ``name``: exactly the optimizer's."""
