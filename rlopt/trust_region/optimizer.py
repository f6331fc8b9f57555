"""TrustRegion: a ``torch.optim.Optimizer`` solving the trust-region problem of docs/theory.md#trust-region-step.

    min_δθ  ∇Lᵀδθ   subject to  ½ δθᵀ (M(θ) + λI) δθ ≤ δ

has the solution δθ* = −√(2δ / gᵀM̃⁻¹g) · M̃⁻¹g with M̃ = M + λI (its Lagrangian, Pierrot et al. 2018;
Schulman et al. 2015, App. C). M̃⁻¹g comes from conjugate gradient on v ↦ M̃ v (``solver="cg"``),
or from K-FAC's Kronecker factors or diag(M) (``"kfac"``, ``"diagonal"``: :mod:`.solvers`). With M = Fisher
this is the natural policy gradient step (NPG, Kakade 2002); followed by a backtracking line
search on the true surrogate and KL it is TRPO. Like ``torch.optim.LBFGS`` the step takes a
closure and returns the loss; its diagnostics (:class:`TrustRegionStats`) are kept in
``optimizer.last_stats``. All parameters form one flat vector (no per-group options).

A step is the four steps of the algorithm, each a function: :func:`solve_direction` (d ≈ −M̃⁻¹g),
:func:`scale_step` (to the trust radius), :func:`search_step` (line search or plain step) and
:func:`step_stats` (diagnostics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.options import check_all, resolve, signature
from rlopt.trust_region.cg import CGResult
from rlopt.trust_region.flat import flat_grad, flat_params, set_flat_params_
from rlopt.trust_region.hyperparameters import TRUST_REGION_HYPERPARAMETERS
from rlopt.trust_region.line_search import backtracking_line_search
from rlopt.trust_region.metrics import Metric, MetricInputs, build_metric
from rlopt.trust_region.solvers import Direction, StepProblem, build_solver, check_solver
from rlopt.trust_region.solvers.base import statistics_direction
from rlopt.trust_region.solvers.cg import cg_direction

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


def scale_step(gradient: Tensor, solved: Direction, lr: float, max_kl: float) -> StepProposal:
    """Scale d so that ½ dᵀM̃d = δ: Δθ = lr · √(2δ / dᵀM̃d) · d (Schulman et al. 2015, App. C), i.e.
    δθ* = −√(2δ / gᵀM̃⁻¹g) · M̃⁻¹g when d is exact. Valid only if g, d, dᵀM̃d are finite and dᵀM̃d > 0."""
    direction, quadratic = solved.direction, solved.quadratic
    finite = torch.isfinite(gradient).all() & torch.isfinite(direction).all() & torch.isfinite(quadratic)
    scale = lr * torch.sqrt(2.0 * max_kl / quadratic)
    return StepProposal(step=scale * direction, cg=solved.cg, finite=finite, valid=finite & (quadratic > 0))


def propose_step(
    gradient: Tensor,
    metric_mvp: Callable[[Tensor], Tensor],
    lr: float,
    max_kl: float,
    damping: float,
    cg_iters: int,
    cg_tol: float,
) -> StepProposal:
    """The scaled CG step for gradient g and metric product v ↦ M v: d solves (M + λI) d = −g
    (:func:`~rlopt.trust_region.solvers.cg.cg_direction`, which also handles indefinite M̃), then
    :func:`scale_step`."""
    return scale_step(gradient, cg_direction(gradient, metric_mvp, damping, cg_iters, cg_tol), lr, max_kl)


def propose_preconditioned_step(gradient: Tensor, direction: Tensor, lr: float, max_kl: float) -> StepProposal:
    """The scaled step for a direction d = −M̃⁻¹g applied exactly (``kfac``, ``diagonal`` solvers),
    with the approximation's own quadratic dᵀM̃d = −gᵀd."""
    return scale_step(gradient, statistics_direction(gradient, direction), lr, max_kl)


class Solved(NamedTuple):
    """What :func:`solve_direction` leaves for the rest of the step (the autograd graph released)."""

    loss: Tensor
    """The closure's loss at θ_old (detached)."""
    gradient: Tensor
    """g = ∇_θ loss, flat."""
    direction: Direction
    """The solver's d ≈ −M̃⁻¹g and dᵀM̃d."""


def solve_direction(
    closure: Callable[[], LossAndKL],
    inputs: MetricInputs | None,
    params: Sequence[Tensor],
    metric: Metric,
    state: dict[Tensor, dict[str, Any]],
    hyper: Mapping[str, Any],
) -> Solved:
    """Step 1: run the closure with grad (and the solver's recorder, if it reuses the forward), take
    g = ∇L and let the solver find d ≈ −M̃⁻¹g with its curvature dᵀM̃d."""
    solver = build_solver(hyper["solver"])
    recorder = solver.recorder(inputs, params)
    with torch.enable_grad():
        with recorder if recorder is not None else nullcontext():
            loss, kl = closure()
        gradient = flat_grad(loss, params, retain_graph=True)
        step = state[params[0]].get("step", 0)
        problem = StepProblem(params, gradient, loss, kl, metric, inputs, state, step, recorder)
        direction = solver.direction(problem, hyper)
    return Solved(loss.detach(), gradient, direction)


class Searched(NamedTuple):
    """Outcome of :func:`search_step`."""

    accepted: bool
    steps: int
    fraction: float
    loss: float
    kl: float
    finite: bool


def search_step(
    params: Sequence[Tensor],
    proposal: StepProposal,
    closure: Callable[[], LossAndKL],
    loss: Tensor,
    expected_improvement: Tensor,
    hyper: Mapping[str, Any],
) -> Searched:
    """Step 3 (a valid proposal): backtrack on the true loss and KL (TRPO) or apply it as is and
    measure the loss and KL after (NPG)."""
    if hyper["line_search"]:
        search = backtracking_line_search(
            params, proposal.step, closure, loss_before=loss, max_kl=hyper["max_kl"],
            backtrack_coef=hyper["backtrack_coef"], max_backtracks=hyper["max_backtracks"],
            expected_improvement=expected_improvement, accept_ratio=hyper["accept_ratio"],
        )  # fmt: skip
        loss_after, kl_after = search.loss, search.kl
        accepted, steps, fraction = search.accepted, search.steps, search.step_fraction
    else:
        set_flat_params_(params, flat_params(params).add_(proposal.step))
        with torch.no_grad():
            loss_tensor, kl_tensor = closure()
        accepted, steps, fraction = True, 0, 1.0
        loss_after, kl_after = float(loss_tensor), float(kl_tensor)
    return Searched(accepted, steps, fraction, loss_after, kl_after, math.isfinite(loss_after) and math.isfinite(kl_after))


def step_stats(
    solved: Solved, proposal: StepProposal, expected_improvement: Tensor
) -> tuple[dict[str, float], bool]:
    """Step 4, before the move: the pre-step scalars in one device-to-host transfer (loss, ‖g‖, CG
    residual, −gᵀΔθ, ‖Δθ‖, finiteness, cos∠(Δθ, −g)) and whether the proposal may be applied."""
    loss_before, grad_norm, cg_residual, expected, full_step_norm, finite, valid = (
        torch.stack(
            [
                solved.loss.to(torch.float64),
                solved.gradient.norm().to(torch.float64),
                proposal.cg.residual_norm.to(torch.float64),
                expected_improvement.to(torch.float64),
                proposal.step.norm().to(torch.float64),
                (proposal.finite & torch.isfinite(solved.loss)).to(torch.float64),
                (proposal.valid & torch.isfinite(solved.loss)).to(torch.float64),
            ]
        ).tolist()
    )
    cos_to_grad = expected / (grad_norm * full_step_norm) if valid and grad_norm * full_step_norm > 0 else 0.0
    scalars = {"loss_before": loss_before, "grad_norm": grad_norm, "cg_residual": cg_residual, "expected": expected,
               "full_step_norm": full_step_norm, "finite": finite, "cos_to_grad": cos_to_grad}  # fmt: skip
    return scalars, bool(valid)


def final_stats(before: Mapping[str, float], proposal: StepProposal, searched: Searched | None) -> TrustRegionStats:
    """Step 4, after the move: :class:`TrustRegionStats` of the step (``searched`` None: no valid
    proposal, nothing moved)."""
    expected = before["expected"] if searched is not None else 0.0  # no step proposed: none expected
    if searched is None:
        searched = Searched(False, 0, 0.0, before["loss_before"], 0.0, bool(before["finite"]))
    return TrustRegionStats(
        loss_before=before["loss_before"],
        loss_after=searched.loss,
        expected_improvement=expected,
        actual_improvement=before["loss_before"] - searched.loss,
        kl=searched.kl,
        cg_residual=before["cg_residual"],
        cg_iterations=proposal.cg.iterations,
        line_search_steps=searched.steps,
        accepted=searched.accepted,
        step_norm=searched.fraction * before["full_step_norm"],
        grad_norm=before["grad_norm"],
        step_fraction=searched.fraction,
        finite=searched.finite,
        cos_to_grad=before["cos_to_grad"],
        negative_curvature=proposal.cg.negative_curvature,
    )


class TrustRegion(torch.optim.Optimizer):
    """Natural-gradient (``line_search=False``, NPG) or TRPO (``line_search=True``) optimizer.

    Args:
        params: the policy parameters, all requiring grad (one group, a single flat vector θ).
        **hyperparameters: any of :data:`~rlopt.trust_region.hyperparameters.TRUST_REGION_HYPERPARAMETERS`
            (``metric``, ``lr``, ``max_kl``, ``cg_iters``, ``cg_damping``, ``solver``, ...), each
            declared there once with its default, range and meaning (``help(TrustRegion)`` shows them).

    Hyper-parameters live in ``defaults`` / ``param_groups[0]`` and are read and checked at every
    step, so schedulers (``lr``, ``max_kl``) and ``load_state_dict`` act on them.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], **hyperparameters: Any) -> None:
        values = resolve(TRUST_REGION_HYPERPARAMETERS, hyperparameters, "TrustRegion")
        self._metric = build_metric(values["metric"], key="metric")
        if not isinstance(getattr(self._metric, "name", None), str):
            raise ConfigError(f"metric {self._metric!r} must define a string attribute 'name'")
        values["metric"] = self._metric.name
        check_solver(values["solver"], self._metric.name)
        super().__init__(params, values)
        self.last_stats: TrustRegionStats | None = None
        """Diagnostics of the latest :meth:`step` (None before the first)."""

    __init__.__signature__ = signature(TRUST_REGION_HYPERPARAMETERS)  # type: ignore[attr-defined]

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

    def reuses_forward(self, inputs: MetricInputs | None) -> bool:
        """Whether the next step's solver records the closure's forward of ``inputs.module`` (to reuse
        it for its statistics): a closure then computes the policy through that module."""
        reuses = build_solver(self.param_groups[0]["solver"]).reuses_forward
        return reuses and inputs is not None and inputs.module is not None

    def step(self, closure: Callable[[], LossAndKL], inputs: MetricInputs | None = None) -> Tensor:
        """One trust-region update; returns the loss at θ_old, like every ``torch.optim`` step.

        ``closure()`` returns (loss to minimise, mean KL(π_old‖π_θ)) at the current parameters,
        with π_old fixed by the caller at θ_old. It is called once with grad enabled (gradient
        and metric), then under ``torch.no_grad()`` for the line search or diagnostics.
        ``inputs`` (the policy as pure functions of the same parameters) is read only by the
        metrics and solvers that need it. ``.grad`` of the parameters is neither read nor written.
        The step's diagnostics are kept in :attr:`last_stats`. A solver that :meth:`reuses_forward`
        records the closure's run of ``inputs.module`` on ``inputs.inputs`` instead of running its own.
        """
        group = self.param_groups[0]
        hyper = {name: group[name] for name in TRUST_REGION_HYPERPARAMETERS}
        check_all(hyper, TRUST_REGION_HYPERPARAMETERS)
        metric = self._current_metric(group["metric"])
        check_solver(hyper["solver"], metric.name)
        params: list[Tensor] = list(group["params"])
        state = self.state[params[0]]

        solved = solve_direction(closure, inputs, params, metric, self.state, hyper)  # 1. d ≈ −M̃⁻¹g
        proposal = scale_step(solved.gradient, solved.direction, hyper["lr"], hyper["max_kl"])  # 2. to δ
        expected_improvement = -torch.dot(solved.gradient, proposal.step)
        before, valid = step_stats(solved, proposal, expected_improvement)
        state["step"] = state.get("step", 0) + 1
        searched = (  # 3. line search (TRPO) or the plain step (NPG); nothing moves without a valid step
            search_step(params, proposal, closure, solved.loss, expected_improvement, hyper) if valid else None
        )
        if searched is None or not searched.accepted:
            state["rejected"] = state.get("rejected", 0) + 1
        self.last_stats = final_stats(before, proposal, searched)  # 4. diagnostics
        return solved.loss
