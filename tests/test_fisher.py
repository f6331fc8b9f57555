"""Metrics M(θ): the Fisher-vector product against explicit Fisher matrices (float64).

The Fisher matrix is built two independent ways for tiny linear policies:
  1. the Hessian of mean KL(π_old‖π_θ) at θ = θ_old (torch.func.hessian of a closed-form KL);
  2. E_s E_{a~π}[∇log π ∇log πᵀ], summed exactly over actions (categorical) or from the
     analytic Gaussian Fisher diag(1/σ², 2) in (mean, log σ) coordinates.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.func import hessian, jacrev

from rlopt.errors import ConfigError
from rlopt.trust_region.flat import flat_grad
from rlopt.trust_region.metrics import (
    METRICS,
    FisherMetric,
    IdentityMetric,
    Metric,
    build_metric,
    fisher_vector_product,
)

OBS_DIM, NUM_ACTIONS, ACTION_DIM, BATCH = 3, 4, 2, 16
DTYPE = torch.float64


def _observations(seed: int = 0) -> Tensor:
    return torch.randn(BATCH, OBS_DIM, dtype=DTYPE, generator=torch.Generator().manual_seed(seed))


def _unflatten(theta: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    pieces, offset = [], 0
    for shape in shapes:
        count = torch.Size(shape).numel()
        pieces.append(theta[offset : offset + count].view(shape))
        offset += count
    return pieces


# --- categorical policy: logits = W s + b ------------------------------------------------------
CATEGORICAL_SHAPES = [(NUM_ACTIONS, OBS_DIM), (NUM_ACTIONS,)]


def _categorical_log_probs(theta: Tensor, obs: Tensor) -> Tensor:
    weight, bias = _unflatten(theta, CATEGORICAL_SHAPES)
    return torch.log_softmax(obs @ weight.T + bias, dim=-1)


def _categorical_mean_kl(theta_old: Tensor, theta: Tensor, obs: Tensor) -> Tensor:
    """mean_s Σ_a π_old(a|s) (log π_old(a|s) − log π_θ(a|s))."""
    log_old = _categorical_log_probs(theta_old, obs).detach()
    return (log_old.exp() * (log_old - _categorical_log_probs(theta, obs))).sum(-1).mean()


def _categorical_score_fisher(theta: Tensor, obs: Tensor) -> Tensor:
    """E_s Σ_a π(a|s) ∇log π(a|s) ∇log π(a|s)ᵀ."""
    scores = jacrev(_categorical_log_probs)(theta, obs)  # (B, A, n)
    probs = _categorical_log_probs(theta, obs).exp()  # (B, A)
    return torch.einsum("ba,ban,bam->nm", probs, scores, scores) / obs.shape[0]


# --- diagonal Gaussian policy: mean = W s + b, state-independent log σ ------------------------
GAUSSIAN_SHAPES = [(ACTION_DIM, OBS_DIM), (ACTION_DIM,), (ACTION_DIM,)]


def _gaussian_mean_and_log_std(theta: Tensor, obs: Tensor) -> tuple[Tensor, Tensor]:
    weight, bias, log_std = _unflatten(theta, GAUSSIAN_SHAPES)
    return obs @ weight.T + bias, log_std


def _gaussian_mean_kl(theta_old: Tensor, theta: Tensor, obs: Tensor) -> Tensor:
    """mean_s Σ_i [log σ_i − log σ_old,i + (σ_old,i² + (μ_old,i − μ_i)²) / (2σ_i²) − ½]."""
    mean_old, log_std_old = (t.detach() for t in _gaussian_mean_and_log_std(theta_old, obs))
    mean, log_std = _gaussian_mean_and_log_std(theta, obs)
    var, var_old = torch.exp(2 * log_std), torch.exp(2 * log_std_old)
    per_dim = log_std - log_std_old + (var_old + (mean_old - mean) ** 2) / (2 * var) - 0.5
    return per_dim.sum(-1).mean()


def _gaussian_analytic_fisher(theta: Tensor, obs: Tensor) -> Tensor:
    """E_s [J_μᵀ diag(1/σ²) J_μ + J_logσᵀ diag(2) J_logσ] (Gaussian Fisher in (μ, log σ))."""
    mean_jac = jacrev(lambda t: _gaussian_mean_and_log_std(t, obs)[0])(theta)  # (B, d, n)
    log_std_jac = jacrev(lambda t: _gaussian_mean_and_log_std(t, obs)[1])(theta)  # (d, n)
    inv_var = torch.exp(-2 * _gaussian_mean_and_log_std(theta, obs)[1])
    mean_part = torch.einsum("bdn,d,bdm->nm", mean_jac, inv_var, mean_jac) / obs.shape[0]
    return mean_part + 2.0 * log_std_jac.T @ log_std_jac


Shapes = list[tuple[int, ...]]
MeanKL = Callable[[Tensor, Tensor, Tensor], Tensor]  # (θ_old, θ, obs) ↦ mean KL(π_old‖π_θ)
IndependentFisher = Callable[[Tensor, Tensor], Tensor]  # (θ, obs) ↦ F
PolicyCase = tuple[Shapes, MeanKL, IndependentFisher]
CASES: dict[str, PolicyCase] = {
    "categorical": (CATEGORICAL_SHAPES, _categorical_mean_kl, _categorical_score_fisher),
    "gaussian": (GAUSSIAN_SHAPES, _gaussian_mean_kl, _gaussian_analytic_fisher),
}


def _theta_old(shapes: list[tuple[int, ...]], seed: int = 1) -> Tensor:
    n = sum(torch.Size(s).numel() for s in shapes)
    assert n <= 50
    return 0.5 * torch.randn(n, dtype=DTYPE, generator=torch.Generator().manual_seed(seed))


def _live_params_and_kl(case: str) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
    """Leaf parameters at θ_old (one tensor per layer) and the graph of mean KL(π_old‖π_θ)."""
    shapes, mean_kl, _ = CASES[case]
    theta_old, obs = _theta_old(shapes), _observations()
    params = [p.clone().requires_grad_() for p in _unflatten(theta_old, shapes)]
    theta = torch.cat([p.reshape(-1) for p in params])
    return params, mean_kl(theta_old, theta, obs), theta_old, obs


@pytest.mark.parametrize("case", sorted(CASES))
def test_kl_hessian_equals_score_outer_product_fisher(case: str) -> None:
    shapes, mean_kl, independent_fisher = CASES[case]
    theta_old, obs = _theta_old(shapes), _observations()
    kl_hessian = hessian(lambda theta: mean_kl(theta_old, theta, obs))(theta_old)
    fisher = independent_fisher(theta_old, obs)
    assert fisher.abs().max() > 0.1  # a non-trivial matrix
    torch.testing.assert_close(kl_hessian, fisher, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fisher_vector_product_matches_dense_fisher(case: str) -> None:
    params, kl, theta_old, obs = _live_params_and_kl(case)
    fisher = CASES[case][2](theta_old, obs)
    kl_grad = flat_grad(kl, params, create_graph=True)
    for seed in range(3):  # one first-order graph serves every product
        vector = torch.randn(fisher.shape[0], dtype=DTYPE, generator=torch.Generator().manual_seed(10 + seed))
        product = fisher_vector_product(kl_grad, params, vector)
        torch.testing.assert_close(product, fisher @ vector, rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in params)  # .grad untouched


@pytest.mark.parametrize("case", sorted(CASES))
def test_fisher_metric_mvp_is_undamped_fisher_and_reusable(case: str) -> None:
    params, kl, theta_old, obs = _live_params_and_kl(case)
    fisher = CASES[case][2](theta_old, obs)
    unrelated_loss = torch.zeros((), dtype=DTYPE)
    mvp = FisherMetric().mvp(params, unrelated_loss, kl)
    basis = torch.eye(fisher.shape[0], dtype=DTYPE)
    rebuilt = torch.stack([mvp(column) for column in basis], dim=1)
    torch.testing.assert_close(rebuilt, fisher, rtol=1e-10, atol=1e-12)


def test_fisher_metric_builds_first_order_graph_once() -> None:
    params, kl, _, _ = _live_params_and_kl("categorical")
    backward_calls_through_kl = []
    kl.register_hook(lambda grad: backward_calls_through_kl.append(grad))
    mvp = FisherMetric().mvp(params, kl, kl)
    for seed in range(4):
        mvp(torch.randn(16, dtype=DTYPE, generator=torch.Generator().manual_seed(seed)))
    # ∇KL is formed once in mvp(); each product only differentiates (∇KL)ᵀv again.
    assert len(backward_calls_through_kl) == 1


def test_fisher_vector_product_zero_for_params_outside_the_kl() -> None:
    params, kl, theta_old, obs = _live_params_and_kl("categorical")
    critic_weight = torch.ones(3, dtype=DTYPE, requires_grad=True)
    vector = torch.randn(16 + 3, dtype=DTYPE, generator=torch.Generator().manual_seed(5))
    all_params = [*params, critic_weight]
    product = fisher_vector_product(flat_grad(kl, all_params, create_graph=True), all_params, vector)
    fisher = _categorical_score_fisher(theta_old, obs)
    torch.testing.assert_close(product[:16], fisher @ vector[:16], rtol=1e-10, atol=1e-12)
    assert torch.equal(product[16:], torch.zeros(3, dtype=DTYPE))


def test_identity_metric_returns_the_vector() -> None:
    params, kl, _, _ = _live_params_and_kl("gaussian")
    vector = torch.randn(10, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(IdentityMetric().mvp(params, kl, kl)(vector), vector)


def test_build_metric_by_name_instance_and_error() -> None:
    assert {"fisher", "identity"} <= set(METRICS)
    assert isinstance(build_metric("fisher"), FisherMetric)
    assert isinstance(build_metric("identity"), IdentityMetric)
    custom = IdentityMetric()
    assert build_metric(custom) is custom
    valid_names = r"actor\.optim\.metric must be one of \[.*'fisher', .*'identity'\]"
    with pytest.raises(ConfigError, match=valid_names):
        build_metric("newton")
    with pytest.raises(ConfigError, match="critic.metric"):
        build_metric("kfac", key="critic.metric")
    assert issubclass(FisherMetric, Metric) and FisherMetric.name == "fisher"
