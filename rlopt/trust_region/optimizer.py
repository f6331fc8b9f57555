"""TrustRegion: a ``torch.optim.Optimizer`` whose step solves the trust-region problem of seed 003.

    min_δθ  ∇Lᵀδθ   subject to  ½ δθᵀ (M(θ) + λI) δθ ≤ δ

has the solution δθ* = −√(2δ / gᵀM̃⁻¹g) · M̃⁻¹g with M̃ = M + λI (seed 003, Lagrangian slide;
Schulman et al. 2015, App. C). M̃⁻¹g comes from conjugate gradient on v ↦ M̃ v (``solver="cg"``),
or from K-FAC's Kronecker factors or diag(M) (``"kfac"``, ``"diagonal"``: :mod:`.solvers`). With M = Fisher
this is the natural policy gradient step (NPG, Kakade 2002); followed by a backtracking line
search on the true surrogate and KL it is TRPO. Like ``torch.optim.LBFGS`` the step takes a
closure and returns the loss; its diagnostics (:class:`TrustRegionStats`) are kept in
``optimizer.last_stats``. All parameters form one flat vector (no per-group options).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.trust_region.cg import CGResult, conjugate_gradient
from rlopt.trust_region.flat import flat_grad, flat_params, set_flat_params_
from rlopt.trust_region.line_search import (
    backtracking_line_search,
    check_finite_real,
    validate_line_search_args,
)
from rlopt.trust_region.metrics import Metric, MetricInputs, build_metric
from rlopt.trust_region.solvers import check_solver, recorder_for, solver_direction

LossAndKL = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class TrustRegionStats:
    """Diagnostics of one :meth:`TrustRegion.step` (python scalars, ready to log)."""

    loss_before: float
    """Loss at θ_old."""
    loss_after: float
    """Loss at the parameters after the step (``loss_before`` if nothing changed)."""
    expected_improvement: float
    """−gᵀΔθ, first-order predicted improvement of the full step (0 if no step was proposed)."""
    actual_improvement: float
    """loss_before − loss_after."""
    kl: float
    """Mean KL(π_old‖π_θ) after the step (0 if the step was rejected)."""
    cg_residual: float
    """‖−g − (M + λI) d‖ at the end of CG (0 for the ``kfac``/``diagonal`` solvers: exact for their M̃)."""
    cg_iterations: int
    """CG iterations that updated the direction (0 for the ``kfac``/``diagonal`` solvers)."""
    line_search_steps: int
    """Trial points evaluated by the line search (0 without line search)."""
    accepted: bool
    """Whether the parameters moved."""
    step_norm: float
    """‖θ_new − θ_old‖."""
    grad_norm: float
    """‖g‖ = ‖∇_θ loss‖ at θ_old."""
    step_fraction: float
    """Fraction of the full step taken: βᵏ with line search, 1 without, 0 if rejected."""
    finite: bool
    """Loss, gradient, CG direction, its curvature and the post-step loss/KL were all finite."""
    cos_to_grad: float
    """cos∠(Δθ, −g) of the proposed step (1 for M = I; 0 if no step was proposed)."""
    negative_curvature: bool
    """CG met dᵀM̃d ≤ 0 and the step fell back (last positive-curvature iterate, or −g)."""

    @property
    def improvement_ratio(self) -> float:
        """actual / predicted improvement of the step taken, ``actual_improvement`` over
        ``step_fraction · expected_improvement`` (0 when nothing was taken or predicted)."""
        predicted = self.step_fraction * self.expected_improvement
        return self.actual_improvement / predicted if predicted != 0 else 0.0


class StepProposal(NamedTuple):
    """Output of :func:`propose_step`."""

    step: Tensor
    """Δθ = lr · √(2δ / dᵀM̃d) · d, the full trust-region step."""
    cg: CGResult
    """The CG solve for d ≈ −M̃⁻¹g (for another solver: its d, residual 0, 0 iterations)."""
    finite: Tensor
    """0-dim bool: g, d and dᵀM̃d are all finite."""
    valid: Tensor
    """0-dim bool: ``finite`` and dᵀM̃d > 0 (else the step must not be applied)."""


def propose_step(
    gradient: Tensor,
    metric_mvp: Callable[[Tensor], Tensor],
    lr: float,
    max_kl: float,
    damping: float,
    cg_iters: int,
    cg_tol: float,
) -> StepProposal:
    """The scaled trust-region step for gradient g and metric product v ↦ M v (seed 003).

    d solves (M + λI) d = −g by CG; scaling so that ½ dᵀ(M + λI)d = δ gives
    Δθ = lr · √(2δ / dᵀ(M + λI)d) · d, i.e. δθ* = −√(2δ / gᵀM̃⁻¹g) · M̃⁻¹g when CG is exact.
    dᵀ(M + λI)d is evaluated with one extra product rather than taken as −gᵀd, so the step
    sits on the quadratic model's boundary even when CG stopped early.

    Indefinite M̃ (Hessian, GGN of a non-convex loss): CG stops at the first dᵀM̃d ≤ 0 and keeps
    its last iterate, which has positive curvature. If even the first direction (−g) fails, d = −g
    and the region is measured by the damping alone, ½λ‖d‖² ≤ δ (no valid step if λ = 0).
    """

    def damped_mvp(vector: Tensor) -> Tensor:
        # (M + λI) v, seed 003 "Damping".
        return torch.add(metric_mvp(vector), vector, alpha=damping)

    cg = conjugate_gradient(damped_mvp, -gradient, cg_iters, cg_tol)
    if cg.negative_curvature and cg.iterations == 0:  # no positive-curvature iterate: along −g
        direction = -gradient
        quadratic = damping * torch.dot(direction, direction)
    else:
        direction = cg.solution
        quadratic = torch.dot(direction, damped_mvp(direction))
    finite = (
        torch.isfinite(gradient).all() & torch.isfinite(direction).all() & torch.isfinite(quadratic)
    )
    scale = lr * torch.sqrt(2.0 * max_kl / quadratic)
    return StepProposal(
        step=scale * direction, cg=cg, finite=finite, valid=finite & (quadratic > 0)
    )


def propose_preconditioned_step(gradient: Tensor, direction: Tensor, lr: float, max_kl: float) -> StepProposal:
    """The scaled step for a direction d = −M̃⁻¹g applied exactly (``kfac``, ``diagonal`` solvers).

    The quadratic is the approximation's own, dᵀM̃d = −gᵀd (ACKTR, Wu et al. 2017, eq. 6), so
    Δθ = lr · √(2δ / (−gᵀd)) · d lands on ½ dᵀM̃d = lr² δ exactly, as :func:`propose_step` does for CG.
    """
    quadratic = -torch.dot(gradient, direction)
    finite = torch.isfinite(gradient).all() & torch.isfinite(direction).all() & torch.isfinite(quadratic)
    scale = lr * torch.sqrt(2.0 * max_kl / quadratic)
    solve = CGResult(solution=direction, residual_norm=torch.zeros((), dtype=gradient.dtype), iterations=0)
    return StepProposal(step=scale * direction, cg=solve, finite=finite, valid=finite & (quadratic > 0))


def _validate_hyperparameters(
    lr: float,
    max_kl: float,
    cg_iters: int,
    cg_damping: float,
    cg_tol: float,
    line_search: bool,
    backtrack_coef: float,
    max_backtracks: int,
    accept_ratio: float,
    solver: str,
    kfac_stat_decay: float,
    kfac_update_every: int,
) -> None:
    """Raise :class:`ConfigError` naming the first hyper-parameter outside its valid range."""
    for name, value in (("lr", lr), ("cg_damping", cg_damping), ("cg_tol", cg_tol)):
        check_finite_real(name, value)
    if not lr > 0:
        raise ConfigError(f"lr must be > 0, got {lr}")
    if isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 1:
        raise ConfigError(f"cg_iters must be an integer >= 1, got {cg_iters!r}")
    if not cg_damping >= 0:
        raise ConfigError(f"cg_damping must be >= 0, got {cg_damping}")
    if not cg_tol >= 0:
        raise ConfigError(f"cg_tol must be >= 0, got {cg_tol}")
    if not isinstance(line_search, bool):
        raise ConfigError(f"line_search must be true or false, got {line_search!r}")
    validate_line_search_args(max_kl, backtrack_coef, max_backtracks, accept_ratio)
    check_solver(solver)  # the name only; the metric/solver pair is checked with the metric
    check_finite_real("kfac_stat_decay", kfac_stat_decay)
    if not 0 <= kfac_stat_decay < 1:
        raise ConfigError(f"kfac_stat_decay must be in [0, 1), got {kfac_stat_decay}")
    if isinstance(kfac_update_every, bool) or not isinstance(kfac_update_every, int) or kfac_update_every < 1:
        raise ConfigError(f"kfac_update_every must be an integer >= 1, got {kfac_update_every!r}")


_HYPERPARAMETERS = (
    "lr",
    "max_kl",
    "cg_iters",
    "cg_damping",
    "cg_tol",
    "line_search",
    "backtrack_coef",
    "max_backtracks",
    "accept_ratio",
    "solver",
    "kfac_stat_decay",
    "kfac_update_every",
)


class TrustRegion(torch.optim.Optimizer):
    """Natural-gradient (``line_search=False``, NPG) or TRPO (``line_search=True``) optimizer.

    Args:
        params: the policy parameters, all requiring grad (one group, a single flat vector θ).
        metric: M(θ) by name (one of :data:`~rlopt.trust_region.metrics.METRICS`) or a
            :class:`Metric` instance.
        lr: multiplier of the scaled step (1 reaches the trust radius); schedulable.
        max_kl: trust radius δ on the mean KL(π_old‖π_θ); schedulable via ``param_groups[0]``.
        cg_iters: CG iterations (matrix-vector products) per step.
        cg_damping: λ in M + λI.
        cg_tol: CG stops once ‖r‖² < cg_tol.
        line_search: backtrack on the true loss and KL (TRPO) or apply the step as is (NPG).
        backtrack_coef: β, the shrink factor of the line search.
        max_backtracks: number of trial points of the line search.
        accept_ratio: Armijo fraction of the expected improvement required (0 disables).
        solver: how M̃⁻¹g is applied: ``cg``, ``kfac`` or ``diagonal`` (:mod:`.solvers`, which
            lists the metrics each accepts; ``cg_damping`` is λ for all three).
        kfac_stat_decay: ``kfac``'s running-average decay of its factors A and G.
        kfac_update_every: ``kfac`` recomputes its damped factor inverses every this many steps.

    Hyper-parameters live in ``defaults`` / ``param_groups[0]`` and are read at every step, so
    schedulers and ``load_state_dict`` act on them.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        metric: str | Metric = "fisher",
        lr: float = 1.0,
        max_kl: float = 0.01,
        cg_iters: int = 10,
        cg_damping: float = 0.1,
        cg_tol: float = 1e-10,
        line_search: bool = True,
        backtrack_coef: float = 0.8,
        max_backtracks: int = 10,
        accept_ratio: float = 0.0,
        solver: str = "cg",
        kfac_stat_decay: float = 0.95,
        kfac_update_every: int = 1,
    ) -> None:
        self._metric = build_metric(metric, key="metric")
        if not isinstance(getattr(self._metric, "name", None), str):
            raise ConfigError(f"metric {self._metric!r} must define a string attribute 'name'")
        _validate_hyperparameters(
            lr, max_kl, cg_iters, cg_damping, cg_tol,
            line_search, backtrack_coef, max_backtracks, accept_ratio,
            solver, kfac_stat_decay, kfac_update_every,
        )  # fmt: skip
        check_solver(solver, self._metric.name)
        defaults = dict(
            metric=self._metric.name,
            lr=lr,
            max_kl=max_kl,
            cg_iters=cg_iters,
            cg_damping=cg_damping,
            cg_tol=cg_tol,
            line_search=line_search,
            backtrack_coef=backtrack_coef,
            max_backtracks=max_backtracks,
            accept_ratio=accept_ratio,
            solver=solver,
            kfac_stat_decay=kfac_stat_decay,
            kfac_update_every=kfac_update_every,
        )
        super().__init__(params, defaults)
        self.last_stats: TrustRegionStats | None = None
        """Diagnostics of the latest :meth:`step` (None before the first)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Accept exactly one group: θ is a single flat vector with one set of hyper-parameters."""
        if self.param_groups:
            raise ConfigError(
                "TrustRegion treats all parameters as one vector: pass a single parameter group"
            )
        super().add_param_group(param_group)

    @property
    def metric(self) -> Metric:
        """The metric M(θ) used by the next step."""
        return self._current_metric(self.param_groups[0]["metric"])

    def _current_metric(self, name: str) -> Metric:
        """The metric named in ``param_groups[0]`` (rebuilt if a loaded state names another)."""
        if name != self._metric.name:
            self._metric = build_metric(name, key="metric")
        return self._metric

    def step(self, closure: Callable[[], LossAndKL], inputs: MetricInputs | None = None) -> Tensor:
        """One trust-region update; returns the loss at θ_old, like every ``torch.optim`` step.

        ``closure()`` returns (loss to minimise, mean KL(π_old‖π_θ)) at the current parameters,
        with π_old fixed by the caller at θ_old. It is called once with grad enabled (gradient
        and metric), then under ``torch.no_grad()`` for the line search or diagnostics.
        ``inputs`` (the policy as pure functions of the same parameters) is read only by the
        metrics that need it (per-sample and Gauss-Newton metrics; the others ignore it).
        ``.grad`` of the parameters is neither read nor written. The step's diagnostics are
        kept in :attr:`last_stats`. With ``solver="kfac"``, a closure that runs ``inputs.module``
        on ``inputs.inputs`` lends that forward to the factors (recorded by hooks while it runs);
        otherwise the solver runs a forward of its own.
        """
        group = self.param_groups[0]
        hyper = {name: group[name] for name in _HYPERPARAMETERS}
        _validate_hyperparameters(**hyper)
        metric = self._current_metric(group["metric"])
        check_solver(hyper["solver"], metric.name)
        params: list[Tensor] = list(group["params"])
        state = self.state[params[0]]

        # kfac records the closure's forward of inputs.module and builds its factors from it.
        recorder = recorder_for(hyper["solver"], inputs, params)
        with torch.enable_grad():
            with recorder if recorder is not None else nullcontext():
                loss, kl = closure()
            gradient = flat_grad(loss, params, retain_graph=True)
            if hyper["solver"] == "cg":
                proposal = propose_step(
                    gradient,
                    metric.mvp(params, loss, kl, inputs),
                    lr=hyper["lr"],
                    max_kl=hyper["max_kl"],
                    damping=hyper["cg_damping"],
                    cg_iters=hyper["cg_iters"],
                    cg_tol=hyper["cg_tol"],
                )
            else:
                direction = solver_direction(
                    hyper["solver"], metric.name, inputs, params, gradient.detach(), self.state, state.get("step", 0), hyper,
                    recorder,
                )  # fmt: skip
                proposal = propose_preconditioned_step(gradient, direction.detach(), hyper["lr"], hyper["max_kl"])
        loss = loss.detach()
        del kl, recorder  # release the autograd graph before the line search
        expected_improvement = -torch.dot(gradient, proposal.step)
        # All pre-step scalars in one device-to-host transfer.
        loss_before, grad_norm, cg_residual, expected, full_step_norm, finite, valid = (
            torch.stack(
                [
                    loss.to(torch.float64),
                    gradient.norm().to(torch.float64),
                    proposal.cg.residual_norm.to(torch.float64),
                    expected_improvement.to(torch.float64),
                    proposal.step.norm().to(torch.float64),
                    (proposal.finite & torch.isfinite(loss)).to(torch.float64),
                    (proposal.valid & torch.isfinite(loss)).to(torch.float64),
                ]
            ).tolist()
        )
        state["step"] = state.get("step", 0) + 1

        cos_to_grad = expected / (grad_norm * full_step_norm) if valid and grad_norm * full_step_norm > 0 else 0.0
        if not valid:  # no step proposed: nothing moves
            accepted, line_search_steps, step_fraction = False, 0, 0.0
            loss_after, kl_after, expected, after_finite = loss_before, 0.0, 0.0, bool(finite)
        elif hyper["line_search"]:
            search = backtracking_line_search(
                params,
                proposal.step,
                closure,
                loss_before=loss,
                max_kl=hyper["max_kl"],
                backtrack_coef=hyper["backtrack_coef"],
                max_backtracks=hyper["max_backtracks"],
                expected_improvement=expected_improvement,
                accept_ratio=hyper["accept_ratio"],
            )
            accepted, line_search_steps = search.accepted, search.steps
            step_fraction, loss_after, kl_after = search.step_fraction, search.loss, search.kl
            after_finite = math.isfinite(loss_after) and math.isfinite(kl_after)
        else:
            set_flat_params_(params, flat_params(params).add_(proposal.step))
            with torch.no_grad():
                loss_tensor, kl_tensor = closure()
            accepted, line_search_steps, step_fraction = True, 0, 1.0
            loss_after, kl_after = float(loss_tensor), float(kl_tensor)
            after_finite = math.isfinite(loss_after) and math.isfinite(kl_after)

        if not accepted:
            state["rejected"] = state.get("rejected", 0) + 1
        self.last_stats = TrustRegionStats(
            loss_before=loss_before,
            loss_after=loss_after,
            expected_improvement=expected,
            actual_improvement=loss_before - loss_after,
            kl=kl_after,
            cg_residual=cg_residual,
            cg_iterations=proposal.cg.iterations,
            line_search_steps=line_search_steps,
            accepted=accepted,
            step_norm=step_fraction * full_step_norm,
            grad_norm=grad_norm,
            step_fraction=step_fraction,
            finite=after_finite,
            cos_to_grad=cos_to_grad,
            negative_curvature=proposal.cg.negative_curvature,
        )
        return loss
