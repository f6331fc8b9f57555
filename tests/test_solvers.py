"""The ``kfac`` and ``diagonal`` solvers of the trust-region step (float64, dense references).

K-FAC factors against hand-built Kronecker products (Martens & Grosse 2015), the π-damped block
inverse against a dense solve, the diagonal solver against diag of the dense metric built with
``torch.func.jacrev``, metric/solver pairs, and the full step on the trust-region boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor
from torch.func import functional_call, jacrev

from rlopt.errors import ConfigError
from tests import test_metrics as metrics_tests
from rlopt.trust_region import TrustRegion, build_trust_region
from rlopt.trust_region.flat import flat_grad, flat_params
from rlopt.trust_region.metrics import per_sample_gradients
from rlopt.trust_region.solvers import SOLVER_METRICS, check_solver
from rlopt.trust_region.solvers.diagonal import diagonal_solver_direction
from rlopt.losses import surrogate_loss
from rlopt.trust_region.metrics import MetricInputs
from rlopt.trust_region.solvers.kfac import (
    ForwardRecorder,
    add_to_diagonal,
    input_factor,
    kfac_precondition,
    layer_statistics,
    linear_layers,
    pi_damped_inverses,
    running_average,
    spd_inverse,
)
from rlopt.trust_region.solvers.rows import Row, metric_rows

DTYPE = torch.float64
OBS_DIM, BATCH, ENTROPY_COEF = 3, 16, 0.01
SPACES = {"discrete": gym.spaces.Discrete(3), "box": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)}


class Problem(metrics_tests.Problem):
    """tests/test_metrics.py's tiny actor at θ_old with its closure and MetricInputs, on this file's batch."""

    def __init__(self, space: str, hidden: tuple[int, ...] = (4,), seed: int = 0, same_state: bool = False) -> None:
        super().__init__(space, seed=seed, hidden=hidden, same_state=same_state, batch=BATCH)


def _dense_rows_jacobian(problem: Problem, row: Row) -> Tensor:
    """J [N, P] of θ ↦ row(y(θ), *targets) by jacrev over the flat θ (no vmap, no per-sample code)."""
    inputs = problem.inputs()
    names, shapes = list(inputs.params), [p.shape for p in problem.params]

    def rows(theta: Tensor) -> Tensor:
        pieces, offset = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape)) if len(shape) else 1
            pieces[name] = theta[offset : offset + size].view(shape)
            offset += size
        return row.function(functional_call(inputs.module, pieces, (problem.obs,)), *row.targets)

    return jacrev(rows)(flat_params(problem.params).detach())


# ----------------------------------------------------------------- K-FAC factors
def test_kfac_factors_equal_hand_built_kronecker_products_on_one_layer_policy() -> None:
    problem = Problem("discrete", hidden=(), same_state=True)  # one Linear layer, one state: K-FAC is exact
    inputs = problem.inputs()
    layers = linear_layers(inputs.module, problem.params)
    assert len(layers) == 1 and layers[0].weight == 0 and layers[0].bias == 1
    sampled = problem.old_dist.sample()
    row = Row(inputs.sample_log_prob, (sampled,))
    (a_factor,), (g_factor,) = layer_statistics(inputs.module, problem.obs, layers, lambda outputs: [row])
    with_one = torch.cat([problem.obs, torch.ones(BATCH, 1, dtype=DTYPE)], dim=1)
    assert torch.allclose(a_factor, with_one.T @ with_one / BATCH, rtol=0, atol=1e-12)
    # The exact sampled Fisher block E_i[vec(V_i) vec(V_i)ᵀ] from torch.func per-sample gradients.
    per_sample = per_sample_gradients(dataclasses.replace(inputs, targets=(sampled,)), problem.params, row.function)
    out_dim = g_factor.shape[0]
    weights, biases = per_sample[:, : out_dim * OBS_DIM].view(BATCH, out_dim, OBS_DIM), per_sample[:, out_dim * OBS_DIM :]
    blocks = torch.cat([weights, biases[:, :, None]], dim=2)  # V_i = g_i āᵢᵀ, [N, out, in+1]
    vec = blocks.transpose(1, 2).reshape(BATCH, -1)  # column-major vec
    exact = vec.T @ vec / BATCH
    assert torch.allclose(g_factor, biases.T @ biases / BATCH, rtol=0, atol=1e-12)
    assert (torch.kron(a_factor, g_factor) - exact).abs().max() < 1e-10


def test_kfac_factors_on_a_batch_are_the_means_of_inputs_and_output_gradients() -> None:
    problem = Problem("discrete", hidden=())
    inputs = problem.inputs()
    layers = linear_layers(inputs.module, problem.params)
    row = Row(inputs.sample_log_prob, inputs.targets)  # empirical Fisher: the batch's actions
    (a_factor,), (g_factor,) = layer_statistics(inputs.module, problem.obs, layers, lambda outputs: [row])
    assert torch.allclose(a_factor, input_factor(problem.obs, bias=True), rtol=0, atol=1e-12)
    bias_grads = per_sample_gradients(inputs, problem.params, row.function)[:, -g_factor.shape[0] :]
    assert torch.allclose(g_factor, bias_grads.T @ bias_grads / BATCH, rtol=0, atol=1e-12)


def test_gauss_newton_output_factor_sums_each_output_units_jacobian_row() -> None:
    problem = Problem("discrete", hidden=())
    inputs = problem.inputs()
    layers = linear_layers(inputs.module, problem.params)
    rows = metric_rows(inputs, "gauss_newton", inputs.outputs_of(*inputs.primals(problem.params)))
    _, (g_factor,) = layer_statistics(inputs.module, problem.obs, layers, lambda outputs: rows)
    # One Linear layer, outputs = its pre-activations: ∂y_k/∂s = e_k, so G = Σ_k e_k e_kᵀ = I.
    assert torch.allclose(g_factor, torch.eye(3, dtype=DTYPE), rtol=0, atol=1e-12)


def test_running_average_takes_the_first_statistic_then_decays() -> None:
    first, second = torch.full((2, 2), 4.0), torch.full((2, 2), 2.0)
    assert torch.equal(running_average(None, first, 0.9), first)
    assert torch.allclose(running_average(first, second, 0.75), torch.full((2, 2), 3.5))


def test_pi_damped_inverse_applied_to_v_equals_the_dense_kronecker_solve() -> None:
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(9, 4, dtype=DTYPE, generator=generator), torch.randn(9, 3, dtype=DTYPE, generator=generator)
    a_factor, g_factor = x.T @ x / 9, y.T @ y / 9 * 5.0  # different scales: π ≠ 1
    layer_grad = torch.randn(3, 4, dtype=DTYPE, generator=generator)
    damping = 0.01
    a_inv, g_inv = pi_damped_inverses(a_factor, g_factor, damping)
    pi = ((torch.trace(a_factor) / 4) / (torch.trace(g_factor) / 3)).sqrt()
    a_damped = a_factor + pi * damping**0.5 * torch.eye(4, dtype=DTYPE)
    g_damped = g_factor + damping**0.5 / pi * torch.eye(3, dtype=DTYPE)
    dense = torch.linalg.solve(torch.kron(a_damped, g_damped), layer_grad.T.reshape(-1))  # column-major vec(V)
    got = kfac_precondition(layer_grad, a_inv, g_inv)
    assert (got.T.reshape(-1) - dense).abs().max() < 1e-10 * dense.abs().max()


def test_pi_damping_falls_back_to_one_for_a_dead_layer() -> None:
    a_inv, g_inv = pi_damped_inverses(torch.eye(2, dtype=DTYPE), torch.zeros(2, 2, dtype=DTYPE), 0.04)
    assert torch.allclose(a_inv, torch.eye(2, dtype=DTYPE) / 1.2) and torch.allclose(g_inv, torch.eye(2, dtype=DTYPE) / 0.2)


# ----------------------------------------------------------------- diagonal solver
@pytest.mark.parametrize("metric", SOLVER_METRICS["diagonal"])
@pytest.mark.parametrize("space", sorted(SPACES))
def test_diagonal_solver_equals_the_dense_diagonal_solve(metric: str, space: str) -> None:
    problem = Problem(space)
    inputs = problem.inputs()
    with torch.no_grad():
        outputs = inputs.outputs_of(*inputs.primals(problem.params))
    torch.manual_seed(5)
    rows = metric_rows(inputs, metric, outputs)
    loss, _ = problem.closure()
    gradient = flat_grad(loss, problem.params)
    dense_diagonal = sum((_dense_rows_jacobian(problem, row) ** 2).mean(dim=0) for row in rows)
    expected = -gradient / (dense_diagonal + 0.1)
    got = diagonal_solver_direction(inputs, problem.params, gradient, rows, 0.1)
    assert (got - expected).abs().max() < 1e-10 * expected.abs().max()


# ----------------------------------------------------------------- metric/solver pairs
@pytest.mark.parametrize(
    "solver, metric",
    [("kfac", "hessian"), ("diagonal", "hessian"), ("kfac", "identity"), ("kfac", "generalized_gauss_newton"),
     ("kfac", "gradient_covariance"), ("diagonal", "identity")],
)  # fmt: skip
def test_a_metric_solver_pair_that_makes_no_sense_is_a_config_error_naming_both(solver: str, metric: str) -> None:
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ConfigError, match=f"solver '{solver}'.*metric '{metric}'") as error:
        TrustRegion(params, metric=metric, solver=solver)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=f"^actor.optim.solver '{solver}'.*metric '{metric}'"):
        build_trust_region(params, {"name": "trust_region", "solver": solver, "metric": metric}, horizon=1)


def test_unknown_solver_lists_the_valid_ones_and_valid_pairs_build() -> None:
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ConfigError, match=r"^actor.optim.solver must be one of cg, kfac, diagonal, got 'lbfgs'"):
        build_trust_region(params, {"name": "trust_region", "solver": "lbfgs"}, horizon=1)
    for solver, metrics in SOLVER_METRICS.items():
        for metric in metrics or ("hessian", "identity"):
            check_solver(solver, metric)
            assert TrustRegion(params, metric=metric, solver=solver).param_groups[0]["solver"] == solver
    with pytest.raises(ConfigError, match="kfac_stat_decay must be in"):
        TrustRegion(params, solver="kfac", kfac_stat_decay=1.0)
    with pytest.raises(ConfigError, match="kfac_update_every must be an integer"):
        TrustRegion(params, solver="kfac", kfac_update_every=0)


# ----------------------------------------------------------------- the full step
def _damped_quadratic(optimizer: TrustRegion, problem: Problem, step: Tensor, dense_diagonal: Tensor) -> float:
    """½ ΔθᵀM̃Δθ in the solver's own M̃ (K-FAC blocks from the optimizer's stored factors; dense
    diag(M) + λ elsewhere), built independently of the solver's code path."""
    damping = optimizer.param_groups[0]["cg_damping"]
    pieces = list(torch.split(step, [p.numel() for p in problem.params]))
    pieces = [piece.view_as(p) for piece, p in zip(pieces, problem.params)]
    total = torch.zeros((), dtype=DTYPE)
    covered = set()
    if optimizer.param_groups[0]["solver"] == "kfac":
        for layer in linear_layers(problem.inputs().module, problem.params):
            state = optimizer.state[problem.params[layer.weight]]
            a_factor, g_factor = state["kfac_A"], state["kfac_G"]
            pi = ((torch.trace(a_factor) / a_factor.shape[0]) / (torch.trace(g_factor) / g_factor.shape[0])).sqrt()
            a_damped = a_factor + pi * damping**0.5 * torch.eye(a_factor.shape[0], dtype=DTYPE)
            g_damped = g_factor + damping**0.5 / pi * torch.eye(g_factor.shape[0], dtype=DTYPE)
            block = torch.cat([pieces[layer.weight], pieces[layer.bias][:, None]], dim=1)
            total = total + torch.sum(block * (g_damped @ block @ a_damped))
            covered |= {layer.weight, layer.bias}
    diag_pieces = torch.split(dense_diagonal, [p.numel() for p in problem.params])
    for i, (piece, diagonal) in enumerate(zip(pieces, diag_pieces)):
        if i not in covered:
            total = total + torch.sum(piece.reshape(-1) ** 2 * (diagonal + damping))
    return 0.5 * float(total)


@pytest.mark.parametrize("solver", ["kfac", "diagonal"])
@pytest.mark.parametrize("metric", ["fisher", "empirical_fisher", "gauss_newton"])
@pytest.mark.parametrize("space", sorted(SPACES))
def test_full_step_lands_on_the_kl_boundary_of_its_quadratic_and_decreases_the_surrogate(
    solver: str, metric: str, space: str
) -> None:
    problem = Problem(space)
    max_kl, lr = 1e-4, 0.8
    optimizer = TrustRegion(problem.params, metric=metric, solver=solver, max_kl=max_kl, lr=lr, line_search=False)
    theta_old = flat_params(problem.params).clone()
    inputs = problem.inputs()
    state = torch.get_rng_state()
    with torch.no_grad():
        rows = metric_rows(inputs, metric, inputs.outputs_of(*inputs.primals(problem.params)))  # same draw as the step's
    dense_diagonal = sum((_dense_rows_jacobian(problem, row) ** 2).mean(dim=0) for row in rows)  # diag(M) at θ_old
    torch.set_rng_state(state)
    optimizer.step(problem.closure, inputs)
    stats = optimizer.last_stats
    step = flat_params(problem.params) - theta_old
    assert stats.accepted and stats.cg_iterations == 0
    assert _damped_quadratic(optimizer, problem, step, dense_diagonal) == pytest.approx(lr**2 * max_kl, rel=1e-8)
    assert stats.actual_improvement > 0 and stats.cos_to_grad > 0


# ----------------------------------------------------------------- K-FAC state
def test_kfac_state_round_trips_through_state_dict_and_inverses_refresh_every_k_steps() -> None:
    problem, twin = Problem("box"), Problem("box")
    spec = dict(metric="fisher", solver="kfac", max_kl=1e-3, line_search=False, kfac_stat_decay=0.5, kfac_update_every=2)
    optimizer = TrustRegion(problem.params, **spec)
    torch.manual_seed(11)
    optimizer.step(problem.closure, problem.inputs())
    first_weight = linear_layers(problem.inputs().module, problem.params)[0].weight  # log_std is params[0]
    first_layer = optimizer.state[problem.params[first_weight]]
    inverse_after_first = first_layer["kfac_A_inv"].clone()
    factor_after_first = first_layer["kfac_G"].clone()
    optimizer.step(problem.closure, problem.inputs())  # step index 1: factors move, inverses are kept
    assert torch.equal(first_layer["kfac_A_inv"], inverse_after_first)
    assert not torch.equal(first_layer["kfac_G"], factor_after_first)

    copy_ = TrustRegion(twin.params, **spec)
    with torch.no_grad():
        for mine, theirs in zip(twin.params, problem.params):
            mine.copy_(theirs)
    copy_.load_state_dict(optimizer.state_dict())
    assert copy_.state[twin.params[0]]["step"] == 2
    for index in (0, 2):  # the step after a load is the next step of the same run (step 2 refreshes)
        torch.manual_seed(index)
        optimizer.step(problem.closure, problem.inputs())
        torch.manual_seed(index)
        copy_.step(twin.closure, twin.inputs())
        assert all(torch.equal(a, b) for a, b in zip(problem.params, twin.params))
    assert not torch.equal(first_layer["kfac_A_inv"], inverse_after_first)


# ----------------------------------------------------------------- forward reuse
def _closure_through_outputs(problem: Problem, inputs: MetricInputs) -> Callable[[], tuple[Tensor, Tensor]]:
    """The NPG closure with the policy run through ``inputs.module`` (what agents do with ``kfac``)."""

    def closure() -> tuple[Tensor, Tensor]:
        dist = problem.actor.distribution(inputs.module(problem.obs))
        loss, _ = surrogate_loss(dist.log_prob(problem.actions), problem.old_log_probs, problem.advantages, dist.entropy(), ENTROPY_COEF)
        return loss, problem.old_dist.kl(dist).mean()

    return closure


def _count_first_layer_forwards(problem: Problem) -> list[int]:
    """A counter of the first Linear layer's forwards (a hook left on the tiny actor)."""
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    first = next(m for m in problem.actor.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(count)
    return calls


@pytest.mark.parametrize("space", sorted(SPACES))
def test_kfac_reuses_the_closures_forward_and_takes_the_same_step_as_with_its_own(space: str) -> None:
    recorded, own = Problem(space), Problem(space)
    spec = dict(metric="fisher", solver="kfac", max_kl=1e-3, line_search=False)
    steps, counts = [], []
    for problem, reuse in ((recorded, True), (own, False)):
        optimizer = TrustRegion(problem.params, **spec)
        calls = _count_first_layer_forwards(problem)
        inputs = problem.inputs()
        closure = _closure_through_outputs(problem, inputs) if reuse else problem.closure
        torch.manual_seed(3)  # the same sampled actions for the factors
        optimizer.step(closure, inputs)
        steps.append(flat_params(problem.params) - problem.theta_old)
        counts.append(calls[0])
    # closure + post-step diagnostics (+ the log-std's diagonal for a Gaussian); the statistics run
    # a forward of their own only when nothing was recorded.
    assert counts == ([2, 3] if space == "discrete" else [3, 4])
    assert torch.allclose(steps[0], steps[1], rtol=1e-10, atol=1e-14)


def test_forward_recorder_lends_only_one_forward_of_the_module_on_the_same_inputs() -> None:
    problem = Problem("box")
    inputs = problem.inputs()
    layers = linear_layers(inputs.module, problem.params)
    with ForwardRecorder(inputs.module, layers) as once:
        inputs.module(problem.obs)
    record = once.record(problem.obs)
    assert record is not None and len(record.pre_activations) == len(layers) == 2
    assert once.record(problem.obs.clone()) is None  # another tensor: not the batch the solver was given
    with ForwardRecorder(inputs.module, layers) as twice:
        inputs.module(problem.obs)
        inputs.module(problem.obs)
    assert twice.record(problem.obs) is None
    with ForwardRecorder(inputs.module, layers) as through_actor:
        problem.actor(problem.obs)  # the layers ran, the module did not
    assert through_actor.record(problem.obs) is None
    inputs.module(problem.obs)  # hooks are gone once the context closes
    assert once.record(problem.obs) is not None


def test_spd_inverse_matches_a_dense_inverse_and_falls_back_to_the_pseudo_inverse() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(40, 5, dtype=DTYPE, generator=generator)
    matrix = add_to_diagonal(features.T @ features / 40, 0.1)
    assert torch.allclose(spd_inverse(matrix) @ matrix, torch.eye(5, dtype=DTYPE), rtol=0, atol=1e-12)
    singular = torch.zeros(3, 3, dtype=DTYPE)
    singular[0, 0] = 2.0
    assert torch.equal(spd_inverse(singular), torch.linalg.pinv(singular, hermitian=True))
