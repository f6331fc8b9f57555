"""Stacked NPG and TRPO (issue 17): the trust-region step of :mod:`rlopt.trust_region.optimizer`, seed by
seed, on the seeds' parameters stacked as one ``[K, P]`` tensor θ.

Why it is exactly per seed: the stacked loss and KL are sums of per-seed terms, each reading only
its seed's row of θ, so the gradient of the sum is every seed's own gradient and the metric of the
sum is block-diagonal (Fisher: ∇²Σ_k KL_k = diag(F_1, …, F_K); Hessian likewise). One product
M·[v_1; …; v_K] is therefore every seed's own M_k v_k, and conjugate gradient with per-seed dot
products (:func:`batched_conjugate_gradient`) is K independent CG runs: each seed has its own α, β,
its own stop (‖r‖² < tol, pᵀAp ≤ 0) and iteration count, exactly the lone solver's rule
(:func:`rlopt.trust_region.cg.conjugate_gradient`). Then per seed: the scaling √(2δ / dᵀM̃d)
(Schulman et al. 2015, App. C), and the backtracking line search (:func:`batched_line_search`):
each seed accepts its own βᵏ, a seed that accepted stops being evaluated, one that never does
keeps its parameters bit for bit. The critic regression is the stacked A2C one.

Per seed, as far as it is defined per seed: the metrics ``fisher``, ``hessian`` (products of the
summed KL / loss, by double backward) and ``identity``, with the ``cg`` solver. The metrics built
from per-sample gradients or output Jacobians (``empirical_fisher``, ``gradient_covariance``,
``gauss_newton``, ``generalized_gauss_newton``) and the statistics solvers (``kfac``, ``diagonal``)
need the lone policy as a function (``MetricInputs``), which the stacked network does not offer:
with them each seed takes its lone step inside the stack (:func:`trust_region_unstackable`,
:mod:`rlopt.stacked.per_seed`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rlopt.distributions import ActionDistribution, Categorical, DiagGaussian
from rlopt.losses import masked_mean, normalize, surrogate_loss
from rlopt.options import check_all
from rlopt.stacked.batch import StackedBatch
from rlopt.stacked.fisher import BatchedProduct, batched_dot, fisher_product, hessian_product, identity_product
from rlopt.trust_region.hyperparameters import TRUST_REGION_HYPERPARAMETERS

TRUST_REGION_AGENTS = ("npg", "trpo")
"""The agents whose actor step is :func:`trust_region_step`."""
STACKED_METRICS = ("fisher", "hessian", "identity")
"""The metrics with a stacked product (:mod:`rlopt.stacked.fisher`)."""
STACKED_SOLVERS = ("cg",)
"""The solvers with a stacked implementation."""

def trust_region_unstackable(spec: Mapping[str, Any]) -> str | None:
    """Why a ``trust_region`` spec's metric or solver has no stacked step (then each seed runs its
    lone step: :mod:`rlopt.stacked.per_seed`), or None."""
    metric = spec.get("metric", TRUST_REGION_HYPERPARAMETERS["metric"].default)
    if not isinstance(metric, str) or metric not in STACKED_METRICS:
        return f"actor.optim.metric: {metric!r} (it needs the lone policy as a function)"
    solver = spec.get("solver", TRUST_REGION_HYPERPARAMETERS["solver"].default)
    if solver not in STACKED_SOLVERS:
        return f"actor.optim.solver: {solver!r} (it needs the lone policy as a function)"
    return None


# ----------------------------------------------------------------- pure numerical pieces
class BatchedCG(NamedTuple):
    """Outcome of :func:`batched_conjugate_gradient`, per seed (the fields of ``CGResult``)."""

    solution: Tensor
    """``[K, P]``: each seed's approximate solution."""
    residual_norm: Tensor
    """``[K]``: ‖b_k − A_k x_k‖ as carried by the recurrence."""
    iterations: Tensor
    """``[K]`` int64: iterations that updated x_k."""
    negative_curvature: Tensor
    """``[K]`` bool: the seed stopped at pᵀA_kp ≤ 0."""


def batched_conjugate_gradient(mvp: BatchedProduct, b: Tensor, iters: int, tol: float = 1e-10) -> BatchedCG:
    """K independent CG solves A_k x_k = b_k from x = 0 (Nocedal & Wright Alg. 5.2), one product
    ``mvp`` ``[K, P] → [K, P]`` per iteration for all seeds; per seed exactly the masked updates and
    stop rules of :func:`rlopt.trust_region.cg.conjugate_gradient` (a stopped seed's x and r stay
    frozen). The loop ends early once no seed runs, which changes nothing: the lone solver's later
    iterations leave frozen iterates as they are."""
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    b = b.detach()
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = residual.clone()
    residual_sq = batched_dot(residual, residual)
    running = residual_sq >= tol
    iterations = torch.zeros(b.shape[0], dtype=torch.int64, device=b.device)
    negative = torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
    for _ in range(iters):
        if not bool(running.any()):
            break
        a_direction = mvp(direction)
        curvature = batched_dot(direction, a_direction)
        negative = negative | (running & (curvature <= 0))
        running = running & (curvature > 0)
        alpha = torch.where(running, residual_sq / curvature, 0.0).unsqueeze(1)  # N&W 5.24a, 0 once stopped
        x.addcmul_(alpha, direction)
        residual.addcmul_(alpha, a_direction, value=-1.0)
        new_residual_sq = batched_dot(residual, residual)
        beta = torch.where(running, new_residual_sq / residual_sq, 0.0).unsqueeze(1)  # N&W 5.24d
        direction.mul_(beta).add_(residual)
        iterations += running
        running = running & (new_residual_sq >= tol)
        residual_sq = new_residual_sq
    return BatchedCG(x, residual_sq.sqrt(), iterations, negative)


class BatchedDirection(NamedTuple):
    """Per seed: d ≈ −M̃⁻¹g ``[K, P]``, its curvature dᵀM̃d ``[K]`` and the CG solve."""

    direction: Tensor
    quadratic: Tensor
    cg: BatchedCG


def batched_cg_direction(
    gradient: Tensor, metric_mvp: BatchedProduct, damping: float, cg_iters: int, cg_tol: float
) -> BatchedDirection:
    """:func:`rlopt.trust_region.solvers.cg.cg_direction` per seed: d solves (M + λI) d = −g by CG,
    dᵀM̃d by one more product; a seed whose first direction had no positive curvature falls back to
    d = −g measured by the damping alone (λ‖g‖²)."""

    def damped(vector: Tensor) -> Tensor:
        return torch.add(metric_mvp(vector), vector, alpha=damping)  # (M + λI) v, Martens 2010

    cg = batched_conjugate_gradient(damped, -gradient, cg_iters, cg_tol)
    fallback = cg.negative_curvature & (cg.iterations == 0)
    direction = torch.where(fallback.unsqueeze(1), -gradient, cg.solution)
    quadratic = torch.where(fallback, damping * batched_dot(direction, direction), batched_dot(direction, damped(direction)))
    return BatchedDirection(direction, quadratic, cg)


class BatchedProposal(NamedTuple):
    """Per seed: the full step Δθ ``[K, P]``, and ``[K]`` bools finite (g, d, dᵀM̃d) and valid (also dᵀM̃d > 0)."""

    step: Tensor
    finite: Tensor
    valid: Tensor


def scale_steps(gradient: Tensor, solved: BatchedDirection, lr: float, max_kl: float) -> BatchedProposal:
    """:func:`rlopt.trust_region.optimizer.scale_step` per seed: Δθ_k = lr·√(2δ / d_kᵀM̃d_k)·d_k."""
    finite = torch.isfinite(gradient).all(1) & torch.isfinite(solved.direction).all(1) & torch.isfinite(solved.quadratic)
    scale = lr * torch.sqrt(2.0 * max_kl / solved.quadratic)
    return BatchedProposal(scale.unsqueeze(1) * solved.direction, finite, finite & (solved.quadratic > 0))


class BatchedSearch(NamedTuple):
    """Outcome of :func:`batched_line_search`, per seed (the fields of ``LineSearchResult``)."""

    params: Tensor
    """``[K, P]``: θ_old + βᵏΔθ where accepted, θ_old (the same values) elsewhere."""
    accepted: Tensor
    steps: Tensor
    fraction: Tensor
    loss: Tensor
    """float64: the loss at the final parameters (``loss_before`` if rejected)."""
    kl: Tensor
    """float64: the KL at the final parameters (0 if rejected)."""


def batched_line_search(
    theta_old: Tensor,
    full_step: Tensor,
    evaluate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    loss_before: Tensor,
    searching: Tensor,
    max_kl: float,
    backtrack_coef: float,
    max_backtracks: int,
    expected_improvement: Tensor,
    accept_ratio: float = 0.0,
) -> BatchedSearch:
    """:func:`rlopt.trust_region.line_search.backtracking_line_search` per seed: the ``searching``
    seeds try θ_old + βᵏΔθ, k = 0, 1, …, each keeping its first point with finite loss and KL,
    improvement > 0 (≥ ``accept_ratio``·βᵏ·expected, if > 0) and KL ≤ δ. ``evaluate(params [S, P],
    seeds [S])`` returns the loss and KL ``[S]`` of the seeds still searching -- one forward per
    trial for them all. The tests are the lone ones, in float64 as Python does them."""
    before, expected = loss_before.double(), expected_improvement.double()
    params = theta_old.clone()
    accepted = torch.zeros_like(searching)
    steps = torch.zeros(searching.shape, dtype=torch.int64)
    fraction = torch.zeros(searching.shape, dtype=torch.float64)
    loss, kl = before.clone(), torch.zeros_like(before)
    pending = searching.clone()
    for trial in range(max_backtracks):
        seeds = pending.nonzero().squeeze(1)
        if seeds.numel() == 0:
            break
        coef = backtrack_coef**trial
        point = torch.add(theta_old[seeds], full_step[seeds], alpha=coef)
        trial_loss, trial_kl = (t.double() for t in evaluate(point, seeds))
        improvement = before[seeds] - trial_loss
        good = torch.isfinite(trial_loss) & torch.isfinite(trial_kl) & (improvement > 0) & (trial_kl <= max_kl)
        if accept_ratio > 0:  # Armijo
            good &= improvement >= accept_ratio * coef * expected[seeds]
        steps[seeds] = trial + 1
        won = seeds[good]
        params[won], accepted[won], fraction[won] = point[good], True, coef
        loss[won], kl[won] = trial_loss[good], trial_kl[good]
        pending[won] = False
    return BatchedSearch(params, accepted, steps, fraction, loss, kl)


def seed_rows(dist: ActionDistribution, seeds: Tensor | None) -> ActionDistribution:
    """The ``[S, R]`` distribution of the seeds ``seeds`` of a ``[K, R]`` one (None: all)."""
    if seeds is None:
        return dist
    if isinstance(dist, Categorical):
        return Categorical._from_log_probs(dist.log_probs[seeds])
    assert isinstance(dist, DiagGaussian)
    return DiagGaussian(dist.mean[seeds], dist.log_std[seeds])


# ----------------------------------------------------------------- the stacked NPG / TRPO update
def trust_region_step(learner: Any, batch: StackedBatch, old_dist: ActionDistribution, ok: Tensor) -> tuple[dict, Tensor]:
    """``NPG.actor_step`` per seed: one trust-region step of every seed in ``ok`` (its hyper-parameters
    from ``learner.actor_optimizer``'s param group, the lone optimizer's). A seed whose step is not
    finite leaves ``ok`` (rolled back by the caller); one whose step is invalid or whose line search
    fails keeps its parameters and stays in ``ok`` (its critic is fitted, as alone)."""
    optimizer = learner.actor_optimizer
    group = optimizer.param_groups[0]
    hyper = {name: group[name] for name in TRUST_REGION_HYPERPARAMETERS}
    check_all(hyper, TRUST_REGION_HYPERPARAMETERS)
    entropy_coef = learner.coefficient("entropy_coef")
    advantages = normalize(batch.advantages, mask=batch.mask) if learner.agents[0].normalize_advantage else batch.advantages
    leaves = learner.actor.leaves()
    theta_old = torch.stack(leaves).detach()

    def closure(dist: ActionDistribution, seeds: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The lone closure per seed: (surrogate loss, mean KL(π_old‖π_θ)) ``[S]`` of ``dist``."""
        take = (lambda t: t) if seeds is None else (lambda t: t[seeds])
        mask = take(batch.mask)
        loss, _ = surrogate_loss(dist.log_prob(take(batch.actions)), take(batch.log_probs), take(advantages),
                                 dist.entropy(), entropy_coef, mask=mask)  # fmt: skip
        return loss, masked_mean(seed_rows(old_dist, seeds).kl(dist), mask)

    def evaluate(params: Tensor, seeds: Tensor | None = None) -> tuple[Tensor, Tensor]:
        seeds = None if seeds is None or seeds.numel() == len(leaves) else seeds
        return closure(learner.actor(batch.obs if seeds is None else batch.obs[seeds], params), seeds)

    theta = theta_old.clone().requires_grad_()
    with torch.enable_grad():
        head = learner.actor.head(batch.obs, theta)  # = learner.actor(obs, θ), its outputs kept for the Fisher
        loss, kl = closure(learner.actor.distribution(head, learner.actor.log_std(theta)))
        gradient = torch.autograd.grad(loss.sum(), theta, retain_graph=True)[0]
        product = _metric_product(hyper["metric"], learner.actor, batch, old_dist, theta, head, loss)
        solved = batched_cg_direction(gradient, product, hyper["cg_damping"], hyper["cg_iters"], hyper["cg_tol"])
    del product, head
    loss = loss.detach()
    proposal = scale_steps(gradient, solved, hyper["lr"], hyper["max_kl"])
    expected = -batched_dot(gradient, proposal.step)
    finite_before = proposal.finite & torch.isfinite(loss)
    valid = proposal.valid & torch.isfinite(loss)
    with torch.no_grad():
        search = _move(theta_old, proposal.step, evaluate, loss, valid & ok, expected, hyper)
        finite = torch.where(valid, torch.isfinite(search.loss) & torch.isfinite(search.kl), finite_before)
        moved = (search.accepted & ok).tolist()
        if any(moved):  # the seeds that stay were never written: their θ_old bit for bit
            torch._foreach_copy_([leaf for leaf, m in zip(leaves, moved) if m], [row for row, m in zip(search.params, moved) if m])
        entropy = masked_mean(learner.actor(batch.obs).entropy(), batch.mask)
    for leaf, entered, accepted in zip(leaves, ok.tolist(), search.accepted.tolist()):
        if entered:  # the lone TrustRegion's counts, on the seed's leaf
            state = optimizer.state[leaf]
            state["step"] = state.get("step", 0) + 1
            if not accepted:
                state["rejected"] = state.get("rejected", 0) + 1
    optimizer._opt_called = True  # the step is taken here, not by optimizer.step(): tell the LR scheduler
    ok = ok & finite
    out = _statistics(loss, gradient, solved, proposal, expected, valid, search, ok)
    out.update({"actor_entropy": (entropy, ok), "schedule/entropy_coef": (entropy_coef, None),
                "schedule/max_kl": (hyper["max_kl"], None)})  # fmt: skip
    return out, ok


def _metric_product(
    metric: str, actor: Any, batch: StackedBatch, old_dist: ActionDistribution, theta: Tensor, head: Tensor, loss: Tensor
) -> BatchedProduct:
    """The stacked product of ``metric`` (one of :data:`STACKED_METRICS`)."""
    if metric == "fisher":
        return fisher_product(actor, batch.obs, batch.mask, old_dist, theta, head)
    if metric == "hessian":
        return hessian_product(loss, theta)
    return identity_product


def _move(
    theta_old: Tensor, step: Tensor, evaluate: Callable[..., tuple[Tensor, Tensor]], loss: Tensor, valid: Tensor,
    expected: Tensor, hyper: Mapping[str, Any],
) -> BatchedSearch:  # fmt: skip
    """``search_step`` per seed: TRPO's line search, or NPG's plain step with the loss and KL after it."""
    if hyper["line_search"]:
        return batched_line_search(theta_old, step, evaluate, loss, valid, hyper["max_kl"], hyper["backtrack_coef"],
                                   hyper["max_backtracks"], expected, hyper["accept_ratio"])  # fmt: skip
    params = torch.where(valid.unsqueeze(1), theta_old + step, theta_old)
    loss_after, kl_after = (t.double() for t in evaluate(params))
    return BatchedSearch(params, valid.clone(), torch.zeros(valid.shape, dtype=torch.int64), valid.double(),
                         torch.where(valid, loss_after, loss.double()), torch.where(valid, kl_after, 0.0))  # fmt: skip


def _statistics(
    loss: Tensor, gradient: Tensor, solved: BatchedDirection, proposal: BatchedProposal, expected: Tensor,
    valid: Tensor, search: BatchedSearch, ok: Tensor,
) -> dict[str, tuple[Tensor, Tensor]]:  # fmt: skip
    """The lone ``TrustRegionStats`` per seed (``step_stats`` / ``final_stats``, in float64 as there),
    as ``NPG.actor_step`` names them."""
    grad_norm, full_norm = gradient.norm(dim=1).double(), proposal.step.norm(dim=1).double()
    expected = torch.where(valid, expected.double(), 0.0)  # no step proposed: none expected
    denominator = grad_norm * full_norm
    cos = torch.where(valid & (denominator > 0), expected / denominator, 0.0)
    actual = loss.double() - search.loss
    predicted = search.fraction * expected
    values = {
        "actor_loss": loss, "actor_grad_norm": grad_norm,
        "actor/cg_residual": solved.cg.residual_norm, "actor/line_search_steps": search.steps,
        "actor/step_accepted": search.accepted, "actor/cos_to_grad": cos, "actor/expected_improvement": expected,
        "actor/actual_improvement": actual,
        "actor/improvement_ratio": torch.where(predicted != 0, actual / predicted, 0.0),
        "actor/step_norm": search.fraction * full_norm, "actor/step_fraction": search.fraction,
        "actor/cg_iterations": solved.cg.iterations, "actor/negative_curvature": solved.cg.negative_curvature,
    }  # fmt: skip
    return {name: (value.double(), ok) for name, value in values.items()}
