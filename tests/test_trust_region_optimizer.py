"""TrustRegion optimizer on a tiny categorical policy with the surrogate −mean(ratio · A) (float64).

The dense reference builds the Fisher matrix explicitly (Hessian of the mean KL at θ_old) and
solves with torch.linalg.solve: Δθ = −lr · √(2δ / gᵀF̃⁻¹g) · F̃⁻¹g, F̃ = F + λI (docs/theory.md#trust-region-step).
"""

from __future__ import annotations

import copy
import inspect
import io
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.func import grad, hessian

from rlopt.config import DEFAULT_TRUST_REGION
from rlopt.errors import ConfigError
from rlopt.trust_region import TRUST_REGION_OPTIONS, build_trust_region, trust_region_radius
from rlopt.trust_region.flat import flat_params
from rlopt.trust_region.metrics import IdentityMetric
from rlopt.trust_region.optimizer import TrustRegion, TrustRegionStats, propose_step

DTYPE = torch.float64
OBS_DIM, NUM_ACTIONS, BATCH = 3, 4, 64
NUM_PARAMS = NUM_ACTIONS * OBS_DIM + NUM_ACTIONS  # 16

Closure = Callable[[], tuple[Tensor, Tensor]]


class Batch:
    """A fixed rollout batch: observations, actions sampled from the initial policy, advantages."""

    def __init__(self, policy: nn.Linear, seed: int = 0, advantages: str = "random") -> None:
        generator = torch.Generator().manual_seed(seed)
        self.obs = torch.randn(BATCH, OBS_DIM, dtype=DTYPE, generator=generator)
        with torch.no_grad():
            probs = torch.softmax(policy(self.obs), dim=-1)
        self.actions = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        if advantages == "random":
            self.advantages = torch.randn(BATCH, dtype=DTYPE, generator=generator)
        else:  # favour action 0 only: pushes other actions' probabilities toward 0, KL grows fast
            self.advantages = torch.where(self.actions == 0, 1.0, -1.0).to(DTYPE)

    def log_probs(self, weight: Tensor, bias: Tensor) -> Tensor:
        return torch.log_softmax(self.obs @ weight.T + bias, dim=-1)

    def loss_and_kl(self, log_probs: Tensor, log_probs_old: Tensor) -> tuple[Tensor, Tensor]:
        """Surrogate −mean(π/π_old · A) and mean_s Σ_a π_old (log π_old − log π)."""
        taken = self.actions[:, None]
        ratio = torch.exp(log_probs.gather(1, taken) - log_probs_old.gather(1, taken)).squeeze(1)
        kl = (log_probs_old.exp() * (log_probs_old - log_probs)).sum(-1).mean()
        return -(ratio * self.advantages).mean(), kl

    def closure(self, policy: nn.Linear) -> Closure:
        """Closure at the policy's current parameters as π_old."""
        with torch.no_grad():
            log_probs_old = self.log_probs(policy.weight, policy.bias)
        return lambda: self.loss_and_kl(self.log_probs(policy.weight, policy.bias), log_probs_old)

    def dense_gradient_and_fisher(self, theta_old: Tensor) -> tuple[Tensor, Tensor]:
        """g = ∇ loss and F = ∇² mean KL at θ_old, from the flat vector (weight row-major, bias)."""
        log_probs_old = self._flat_log_probs(theta_old).detach()

        def loss(theta: Tensor) -> Tensor:
            return self.loss_and_kl(self._flat_log_probs(theta), log_probs_old)[0]

        def kl(theta: Tensor) -> Tensor:
            return self.loss_and_kl(self._flat_log_probs(theta), log_probs_old)[1]

        return grad(loss)(theta_old), hessian(kl)(theta_old)

    def evaluate_flat(self, theta: Tensor, theta_old: Tensor) -> tuple[float, float]:
        """(loss, mean KL) at flat θ with π_old at flat θ_old, as python floats."""
        with torch.no_grad():
            log_probs, log_probs_old = self._flat_log_probs(theta), self._flat_log_probs(theta_old)
            loss, kl = self.loss_and_kl(log_probs, log_probs_old)
        return loss.item(), kl.item()

    def _flat_log_probs(self, theta: Tensor) -> Tensor:
        weight = theta[: NUM_ACTIONS * OBS_DIM].view(NUM_ACTIONS, OBS_DIM)
        return self.log_probs(weight, theta[NUM_ACTIONS * OBS_DIM :])


def _step(optimizer: TrustRegion, closure: Closure) -> TrustRegionStats:
    """One step; its diagnostics (``step`` itself returns the loss, like torch.optim)."""
    optimizer.step(closure)
    assert optimizer.last_stats is not None
    return optimizer.last_stats


def _policy(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(OBS_DIM, NUM_ACTIONS).to(DTYPE)


def _theta(policy: nn.Module) -> Tensor:
    return flat_params(list(policy.parameters()))


# (a) NPG: the step is the dense damped natural-gradient step, KL ≈ lr² · δ ---------------------
@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_npg_step_equals_dense_damped_natural_gradient_step(lr: float) -> None:
    policy = _policy()
    batch = Batch(policy)
    max_kl, damping = 1e-3, 0.1
    theta_old = _theta(policy)
    g, fisher = batch.dense_gradient_and_fisher(theta_old)
    natural = torch.linalg.solve(fisher + damping * torch.eye(NUM_PARAMS, dtype=DTYPE), g)
    expected_step = -lr * torch.sqrt(2 * max_kl / (g @ natural)) * natural

    optimizer = TrustRegion(
        policy.parameters(), lr=lr, max_kl=max_kl, cg_damping=damping,
        cg_iters=NUM_PARAMS, cg_tol=0.0, line_search=False,
    )  # fmt: skip
    stats = _step(optimizer, batch.closure(policy))

    torch.testing.assert_close(_theta(policy) - theta_old, expected_step, rtol=1e-9, atol=1e-12)
    assert stats.accepted and stats.finite and stats.step_fraction == 1.0
    assert stats.line_search_steps == 0
    assert stats.grad_norm == pytest.approx(g.norm().item(), rel=1e-12)
    assert stats.step_norm == pytest.approx(expected_step.norm().item(), rel=1e-9)
    assert stats.expected_improvement == pytest.approx(-(g @ expected_step).item(), rel=1e-9)
    fresh_loss, fresh_kl = batch.evaluate_flat(_theta(policy), theta_old)
    assert stats.loss_after == pytest.approx(fresh_loss, rel=1e-12)
    assert stats.kl == pytest.approx(fresh_kl, rel=1e-12)


@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_npg_kl_after_step_is_lr_squared_max_kl(lr: float) -> None:
    # ½ ΔθᵀFΔθ = lr²·δ when the damping is negligible next to F's nonzero eigenvalues (≈ 0.07+);
    # the true KL agrees to second order for a small radius.
    policy = _policy()
    max_kl = 1e-4
    optimizer = TrustRegion(
        policy.parameters(), lr=lr, max_kl=max_kl, cg_damping=1e-4,
        cg_iters=NUM_PARAMS, cg_tol=0.0, line_search=False,
    )  # fmt: skip
    stats = _step(optimizer, Batch(policy).closure(policy))
    assert stats.kl == pytest.approx(lr**2 * max_kl, rel=0.02)


# (b) TRPO: accepted steps satisfy the KL constraint and improve the loss ------------------------
@pytest.mark.parametrize(
    ("advantages", "max_kl", "damping"), [("random", 0.01, 0.1), ("one_action", 0.05, 1e-3)]
)
def test_trpo_accepted_steps_respect_kl_and_improve(
    advantages: str, max_kl: float, damping: float
) -> None:
    policy = _policy()
    batch = Batch(policy, advantages=advantages)
    optimizer = TrustRegion(policy.parameters(), max_kl=max_kl, cg_damping=damping)
    history: list[TrustRegionStats] = []
    for _ in range(4):
        theta_old = _theta(policy)
        stats = _step(optimizer, batch.closure(policy))  # π_old refreshed every update
        history.append(stats)
        assert stats.accepted and stats.finite
        assert 0 < stats.kl <= max_kl
        assert stats.loss_after < stats.loss_before
        fresh_loss, fresh_kl = batch.evaluate_flat(_theta(policy), theta_old)
        assert stats.loss_after == pytest.approx(fresh_loss, rel=1e-12)
        assert stats.kl == pytest.approx(fresh_kl, rel=1e-12)
        moved = (_theta(policy) - theta_old).norm().item()
        assert stats.step_norm == pytest.approx(moved, rel=1e-9)
        assert stats.step_fraction == pytest.approx(0.8 ** (stats.line_search_steps - 1), rel=1e-15)
    if advantages == "one_action":
        # The quadratic model underestimates this KL, so the full step overshoots δ at least once.
        assert any(stats.line_search_steps > 1 for stats in history)
    assert optimizer.state[policy.weight]["step"] == 4


def test_trpo_accept_ratio_enforces_armijo_condition() -> None:
    policy = _policy()
    accept_ratio = 0.9
    optimizer = TrustRegion(
        policy.parameters(), max_kl=1.0, cg_damping=1e-3, accept_ratio=accept_ratio
    )
    stats = _step(optimizer, Batch(policy).closure(policy))
    # At δ = 1 the first-order prediction is far too optimistic: the full step must be shrunk.
    assert stats.accepted and stats.line_search_steps > 1
    required = accept_ratio * stats.step_fraction * stats.expected_improvement
    assert stats.actual_improvement >= required


# (c) a loss that only gets worse: rejected, parameters bit-identical --------------------------
def test_rejected_line_search_leaves_parameters_bit_identical() -> None:
    policy = _policy()
    batch = Batch(policy)
    originals = [p.detach().clone() for p in policy.parameters()]
    honest = batch.closure(policy)

    def worsening_closure() -> tuple[Tensor, Tensor]:
        loss, kl = honest()
        # The gradient pass sees the honest loss; every trial point looks worse.
        return (loss if torch.is_grad_enabled() else loss + 1.0), kl

    optimizer = TrustRegion(policy.parameters(), max_backtracks=7)
    stats = _step(optimizer, worsening_closure)
    assert not stats.accepted
    assert stats.line_search_steps == 7
    assert stats.kl == 0.0 and stats.step_norm == 0.0 and stats.step_fraction == 0.0
    assert stats.loss_after == stats.loss_before and stats.actual_improvement == 0.0
    assert all(torch.equal(p.detach(), o) for p, o in zip(policy.parameters(), originals))
    assert optimizer.state[policy.weight]["rejected"] == 1


def test_non_finite_gradient_is_rejected_without_touching_parameters() -> None:
    policy = _policy()
    batch = Batch(policy)
    originals = [p.detach().clone() for p in policy.parameters()]
    honest = batch.closure(policy)
    calls = []

    def nan_closure() -> tuple[Tensor, Tensor]:
        calls.append(torch.is_grad_enabled())
        loss, kl = honest()
        return loss * torch.tensor(math.nan, dtype=DTYPE), kl

    stats = _step(TrustRegion(policy.parameters(), line_search=False), nan_closure)
    assert not stats.accepted and not stats.finite
    assert calls == [True]  # no evaluation after the guard
    assert all(torch.equal(p.detach(), o) for p, o in zip(policy.parameters(), originals))


def test_zero_gradient_makes_no_step() -> None:
    policy = _policy()
    batch = Batch(policy)
    batch.advantages.zero_()
    theta_old = _theta(policy)
    stats = _step(TrustRegion(policy.parameters(), line_search=False), batch.closure(policy))
    assert not stats.accepted and stats.finite
    assert stats.grad_norm == 0.0 and stats.cg_iterations == 0
    assert torch.equal(_theta(policy), theta_old)


def test_step_leaves_grad_attributes_alone() -> None:
    policy = _policy()
    TrustRegion(policy.parameters()).step(Batch(policy).closure(policy))
    assert all(p.grad is None for p in policy.parameters())


# (d) identity metric: a Euclidean trust region, step along −g ---------------------------------
def test_identity_metric_step_is_scaled_negative_gradient() -> None:
    policy = _policy()
    batch = Batch(policy)
    theta_old = _theta(policy)
    g, _ = batch.dense_gradient_and_fisher(theta_old)
    lr, max_kl, damping = 0.7, 0.02, 0.1
    optimizer = TrustRegion(
        policy.parameters(), metric="identity", lr=lr, max_kl=max_kl,
        cg_damping=damping, line_search=False,
    )  # fmt: skip
    stats = _step(optimizer, batch.closure(policy))
    # M + λI = (1 + λ)I ⇒ d = −g/(1+λ), Δθ = −lr · √(2δ/(1+λ)) · g/‖g‖; CG converges in 1 iteration.
    expected_step = -lr * math.sqrt(2 * max_kl / (1 + damping)) * g / g.norm()
    torch.testing.assert_close(_theta(policy) - theta_old, expected_step, rtol=1e-12, atol=1e-14)
    assert stats.cg_iterations == 1
    assert isinstance(optimizer.metric, IdentityMetric)


# (e) state_dict round trip ---------------------------------------------------------------------
def test_state_dict_round_trip_restores_hyperparameters_state_and_trajectory() -> None:
    policy = _policy()
    batch = Batch(policy)
    optimizer = TrustRegion(
        policy.parameters(), metric="identity", max_kl=0.02, cg_damping=0.05, backtrack_coef=0.6
    )
    for _ in range(2):
        optimizer.step(batch.closure(policy))

    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    clone = copy.deepcopy(policy)
    restored = TrustRegion(clone.parameters())  # defaults: fisher, max_kl 0.01, ...
    restored.load_state_dict(torch.load(buffer, weights_only=True))

    original_group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    restored_group = {k: v for k, v in restored.param_groups[0].items() if k != "params"}
    assert restored_group == original_group
    assert restored.state[clone.weight]["step"] == 2

    optimizer.step(batch.closure(policy))
    restored.step(batch.closure(clone))
    assert isinstance(restored.metric, IdentityMetric)  # rebuilt from the saved name
    assert all(torch.equal(a, b) for a, b in zip(policy.parameters(), clone.parameters()))


# (f) schedulers write param_groups[0] ---------------------------------------------------------
def _npg_step_norm(configure: Callable[[TrustRegion], None]) -> float:
    policy = _policy()
    optimizer = TrustRegion(policy.parameters(), max_kl=1e-3, line_search=False)
    configure(optimizer)
    return _step(optimizer, Batch(policy).closure(policy)).step_norm


def test_scheduled_max_kl_and_lr_scale_the_step() -> None:
    base = _npg_step_norm(lambda opt: None)

    def quadruple_max_kl(optimizer: TrustRegion) -> None:
        optimizer.param_groups[0]["max_kl"] *= 4.0

    def halve_lr(optimizer: TrustRegion) -> None:
        torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda epoch: 0.5)

    # ‖Δθ‖ ∝ lr · √δ.
    assert _npg_step_norm(quadruple_max_kl) == pytest.approx(2.0 * base, rel=1e-12)
    assert _npg_step_norm(halve_lr) == pytest.approx(0.5 * base, rel=1e-12)


# (g) bad hyper-parameters ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_kl": 0.0}, "max_kl must be > 0"),
        ({"max_kl": math.inf}, "max_kl must be a finite number"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"lr": "1e-3"}, "lr must be a finite number"),
        ({"cg_iters": 0}, "cg_iters must be an integer >= 1"),
        ({"cg_iters": 2.5}, "cg_iters must be an integer >= 1"),
        ({"cg_damping": -0.1}, "cg_damping must be >= 0"),
        ({"cg_tol": -1.0}, "cg_tol must be >= 0"),
        ({"line_search": "yes"}, "line_search must be true or false"),
        ({"backtrack_coef": 1.0}, r"backtrack_coef must be in \(0, 1\)"),
        ({"max_backtracks": 0}, "max_backtracks must be an integer >= 1"),
        ({"accept_ratio": -0.1}, r"accept_ratio must be in \[0, 1\)"),
        ({"metric": "newton"}, r"metric must be one of \['empirical_fisher', 'fisher', 'gauss_newton', "
         r"'generalized_gauss_newton', 'gradient_covariance', 'hessian', 'identity'\]"),
    ],
)
def test_bad_hyperparameters_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrustRegion(_policy().parameters(), **kwargs)


def test_multiple_param_groups_and_bad_scheduled_values_raise_config_error() -> None:
    policy = _policy()
    with pytest.raises(ConfigError, match="single parameter group"):
        TrustRegion([{"params": [policy.weight]}, {"params": [policy.bias]}])
    optimizer = TrustRegion(policy.parameters())
    optimizer.param_groups[0]["max_kl"] = -1.0
    with pytest.raises(ConfigError, match="max_kl must be > 0"):
        optimizer.step(Batch(policy).closure(policy))


# (h) the torch.optim contract and the one builder of a config spec ---------------------------
@pytest.mark.parametrize("line_search", [False, True])
def test_step_returns_the_loss_before_the_step_and_keeps_stats_in_last_stats(line_search: bool) -> None:
    policy = _policy()
    batch = Batch(policy)
    closure = batch.closure(policy)
    with torch.no_grad():
        expected_loss, _ = closure()
    optimizer = TrustRegion(policy.parameters(), line_search=line_search)
    assert optimizer.last_stats is None
    loss = optimizer.step(closure)
    assert isinstance(loss, Tensor) and loss.dim() == 0 and not loss.requires_grad  # like LBFGS.step
    assert loss.item() == expected_loss.item()
    stats = optimizer.last_stats
    assert isinstance(stats, TrustRegionStats)
    assert stats.loss_before == loss.item() and stats.accepted and stats.loss_after < stats.loss_before
    assert (stats.line_search_steps >= 1) == line_search
    second = _step(optimizer, batch.closure(policy))
    assert optimizer.last_stats is second and second is not stats  # refreshed by every step


def test_build_trust_region_takes_a_config_spec_with_a_scheduled_max_kl() -> None:
    policy = _policy()
    spec = {"name": "trust_region", "max_kl": {"value": 0.04, "name": "linear", "end_factor": 0.5},
            "cg_iters": 7, "line_search": False}
    optimizer = build_trust_region(policy.parameters(), spec, horizon=10)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, TrustRegion)
    assert (group["max_kl"], group["cg_iters"], group["line_search"]) == (0.04, 7, False)  # max_kl at update 0
    radius = trust_region_radius(spec, horizon=10)
    assert radius.value(0) == pytest.approx(0.04) and radius.value(10) == pytest.approx(0.02)
    assert trust_region_radius({"name": "trust_region"}, horizon=10).value(3) == 0.01  # the optimizer's default
    assert set(TRUST_REGION_OPTIONS) == set(inspect.signature(TrustRegion.__init__).parameters) - {"self", "params"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "trust_region", "cg_iter": 5},
         r"^actor\.optim\.cg_iter: unknown option for trust_region; accepted: name, metric"),
        ({"name": "trust_region", "cg_iters": 0}, r"^actor\.optim\.cg_iters must be an integer >= 1"),
        ({"name": "trust_region", "max_kl": {"value": 0.01, "name": "cosine", "min_factor": 2}},
         r"^actor\.optim\.max_kl\.min_factor"),
        ({"name": "trust_region", "cg_damping": 10**400}, r"^actor\.optim"),
        ({"name": "adam", "lr": 0.1}, r"^actor\.optim\.name"),
    ],
)
def test_build_trust_region_names_the_bad_option(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_trust_region(_policy().parameters(), spec, horizon=10, key="actor.optim")


def test_default_trust_region_spec_matches_the_optimizer_signature() -> None:
    """The schema's DEFAULT_TRUST_REGION is the optimizer's own defaults (line_search is the agent's)."""
    parameters = inspect.signature(TrustRegion.__init__).parameters
    assert {k: v for k, v in DEFAULT_TRUST_REGION.items() if k != "name"} == {
        name: p.default for name, p in parameters.items() if name not in ("self", "params", "line_search")
    }


# (h) indefinite metric: CG stops at dᵀM̃d ≤ 0, the step falls back and says so -------------------
def test_indefinite_metric_step_uses_the_last_positive_curvature_iterate() -> None:
    # M̃ = diag(4, −1) (λ = 0), −g = (1, ½): CG stops after one iterate d = −g/3 (see test_cg).
    matrix = torch.diag(torch.tensor([4.0, -1.0], dtype=DTYPE))
    gradient = -torch.tensor([1.0, 0.5], dtype=DTYPE)
    proposal = propose_step(gradient, lambda v: matrix @ v, lr=1.0, max_kl=0.02, damping=0.0, cg_iters=5, cg_tol=0.0)
    direction = -gradient / 3
    expected = math.sqrt(2 * 0.02 / float(direction @ matrix @ direction)) * direction
    assert proposal.cg.negative_curvature and bool(proposal.valid)
    torch.testing.assert_close(proposal.step, expected, rtol=1e-14, atol=0.0)


def test_indefinite_metric_without_positive_curvature_steps_along_minus_gradient() -> None:
    # −gᵀM(−g) = 1 − 3 < 0 at once: d = −g, scaled by the damping alone, ½λ‖d‖² = δ.
    matrix = torch.diag(torch.tensor([1.0, -3.0], dtype=DTYPE))
    gradient = -torch.ones(2, dtype=DTYPE)
    proposal = propose_step(gradient, lambda v: matrix @ v, lr=1.0, max_kl=0.01, damping=0.5, cg_iters=5, cg_tol=0.0)
    assert proposal.cg.negative_curvature and proposal.cg.iterations == 0 and bool(proposal.valid)
    torch.testing.assert_close(proposal.step, math.sqrt(2 * 0.01 / (0.5 * 2.0)) * -gradient, rtol=1e-14, atol=0.0)
    undamped = propose_step(gradient, lambda v: matrix @ v, lr=1.0, max_kl=0.01, damping=0.0, cg_iters=5, cg_tol=0.0)
    assert not bool(undamped.valid)  # no damping, no bounded region: no step


def test_stats_report_cosine_to_gradient_ratio_and_curvature_flag() -> None:
    policy = _policy()
    batch = Batch(policy)
    optimizer = TrustRegion(policy.parameters(), metric="identity", max_kl=1e-4, line_search=True)
    stats = _step(optimizer, batch.closure(policy))
    assert stats.accepted and not stats.negative_curvature
    assert stats.cos_to_grad == pytest.approx(1.0, rel=1e-12)  # M = I: the step is along −g
    predicted = stats.step_fraction * stats.expected_improvement
    assert stats.improvement_ratio == pytest.approx(stats.actual_improvement / predicted, rel=1e-12)
    assert 0.5 < stats.improvement_ratio < 1.5  # a small step: the linear model is accurate
