"""The seven trust-region metrics M(θ) (docs/theory.md#metrics) against dense matrices built with torch.func.

A tiny rlopt Actor (one hidden layer, float64) for a Discrete and a Box action space; the dense
references use ``jacrev``/``hessian`` of pure functions of the flat θ (per-sample outer products
from the Jacobian of the per-row values), never the metric code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from torch import Tensor
from torch.func import functional_call, hessian, jacrev

from agents import NPG, TRPO
from agents.npg import actor_metric_inputs
from rlopt.cli import main
from rlopt.errors import ConfigError
from rlopt.losses import surrogate_loss, surrogate_loss_per_sample
from rlopt.networks import Actor, ActorOutputs
from rlopt.trust_region import METRICS, MetricInputs, TrustRegion, build_trust_region
from rlopt.trust_region.flat import flat_grad, flat_params
from rlopt.trust_region.metrics import (
    GradientCovarianceMetric,
    build_metric,
    per_sample_gradients,
)
from rlopt.trust_region.metrics import outer_product

DTYPE = torch.float64
OBS_DIM, BATCH, ENTROPY_COEF = 3, 12, 0.01
SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "box": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
}


class Problem:
    """A tiny actor at θ_old, a fixed batch, and flat-θ pure functions for the dense references."""

    def __init__(
        self, space: str, seed: int = 0, hidden: tuple[int, ...] = (4,), same_state: bool = False, batch: int = BATCH
    ) -> None:
        torch.manual_seed(seed)
        self.actor = Actor(OBS_DIM, SPACES[space], hidden=hidden, output_gain=1.0, log_std_init=-0.3).to(DTYPE)
        generator = torch.Generator().manual_seed(seed + 1)
        self.obs = torch.randn(batch, OBS_DIM, dtype=DTYPE, generator=generator)
        if same_state:  # every row the same state (K-FAC's factorisation is then exact on one layer)
            self.obs = self.obs[:1].expand(batch, OBS_DIM).clone()
        with torch.no_grad():
            self.old_dist = self.actor(self.obs).detach()
            self.actions = self.old_dist.sample()
            self.old_log_probs = self.old_dist.log_prob(self.actions)
        self.advantages = torch.randn(batch, dtype=DTYPE, generator=generator)
        self.params = list(self.actor.parameters())
        self.theta_old = flat_params(self.params)
        self.names = [f"actor.{name}" for name, _ in self.actor.named_parameters()]
        self.module = ActorOutputs(self.actor)

    def inputs(self) -> MetricInputs:
        return actor_metric_inputs(
            self.actor, self.obs, self.actions, self.old_log_probs, self.advantages, ENTROPY_COEF
        )

    def closure(self) -> tuple[Tensor, Tensor]:
        """The NPG closure: (surrogate loss, mean KL(π_old‖π_θ)) at the live parameters."""
        dist = self.actor(self.obs)
        loss, _ = surrogate_loss(
            dist.log_prob(self.actions), self.old_log_probs, self.advantages, dist.entropy(), ENTROPY_COEF
        )
        return loss, self.old_dist.kl(dist).mean()

    # --- pure functions of the flat θ ---------------------------------------------------------
    def outputs(self, theta: Tensor) -> Tensor:
        pieces, offset = {}, 0
        for name, p in zip(self.names, self.params):
            pieces[name] = theta[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        return functional_call(self.module, pieces, (self.obs,))

    def rows_loss_of_outputs(self, outputs: Tensor) -> Tensor:
        dist = self.actor.distribution(outputs)
        return surrogate_loss_per_sample(
            dist.log_prob(self.actions), self.old_log_probs, self.advantages, dist.entropy(), ENTROPY_COEF
        )

    def rows_loss(self, theta: Tensor) -> Tensor:
        return self.rows_loss_of_outputs(self.outputs(theta))

    def rows_log_prob(self, theta: Tensor) -> Tensor:
        return self.actor.distribution(self.outputs(theta)).log_prob(self.actions)

    def mean_kl(self, theta: Tensor) -> Tensor:
        return self.old_dist.kl(self.actor.distribution(self.outputs(theta))).mean()

    # --- dense matrices -----------------------------------------------------------------------
    def dense(self, name: str) -> Tensor:
        theta = self.theta_old
        if name == "identity":
            return torch.eye(theta.numel(), dtype=DTYPE)
        if name == "fisher":
            return hessian(self.mean_kl)(theta)
        if name in ("empirical_fisher", "gradient_covariance"):
            rows = self.rows_log_prob if name == "empirical_fisher" else self.rows_loss
            per_sample = jacrev(rows)(theta)  # [N, P]
            return per_sample.T @ per_sample / BATCH
        if name == "hessian":
            return hessian(lambda t: self.rows_loss(t).mean())(theta)
        jacobian = jacrev(self.outputs)(theta)  # [N, k, P]
        if name == "gauss_newton":
            return torch.einsum("nkp,nkq->pq", jacobian, jacobian) / BATCH
        assert name == "generalized_gauss_newton"
        output_hessian = hessian(lambda y: self.rows_loss_of_outputs(y).mean())(self.outputs(theta))
        return torch.einsum("nkp,nkml,mlq->pq", jacobian, output_hessian, jacobian)


def _rebuilt(mvp: Callable[[Tensor], Tensor], size: int) -> Tensor:
    return torch.stack([mvp(column) for column in torch.eye(size, dtype=DTYPE)], dim=1)


def _relative_error(actual: Tensor, expected: Tensor) -> float:
    return float(torch.linalg.norm(actual - expected.detach()) / torch.linalg.norm(expected.detach()))


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_product_equals_dense_matrix(name: str, space: str) -> None:
    problem = Problem(space)
    dense = problem.dense(name)
    assert dense.abs().max() > 1e-3  # a non-trivial matrix
    loss, kl = problem.closure()
    mvp = build_metric(name).mvp(problem.params, loss, kl, problem.inputs())
    rebuilt = _rebuilt(mvp, dense.shape[0])
    assert _relative_error(rebuilt, dense) < 1e-8
    assert all(p.grad is None for p in problem.params)


def test_hessian_metric_is_indefinite_and_gauss_newton_is_psd() -> None:
    problem = Problem("discrete")
    assert torch.linalg.eigvalsh(problem.dense("hessian")).min() < -1e-6  # Newton needs the safety net
    assert torch.linalg.eigvalsh(problem.dense("gauss_newton")).min() > -1e-12


def test_centred_gradient_covariance_subtracts_the_mean_gradient() -> None:
    problem = Problem("box")
    per_sample = jacrev(problem.rows_loss)(problem.theta_old)
    centred = per_sample - per_sample.mean(0)
    loss, kl = problem.closure()
    mvp = GradientCovarianceMetric(centered=True).mvp(problem.params, loss, kl, problem.inputs())
    assert _relative_error(_rebuilt(mvp, centred.shape[1]), centred.T @ centred / BATCH) < 1e-8


def test_per_sample_gradients_are_chunked_without_changing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = Problem("discrete")
    whole = per_sample_gradients(problem.inputs(), problem.params, problem.inputs().sample_log_prob)
    num_params = problem.theta_old.numel()
    monkeypatch.setattr(outer_product, "PER_SAMPLE_CHUNK_ELEMENTS", 5 * num_params)  # chunks of 5 rows
    calls = []
    inputs = problem.inputs()
    counted = MetricInputs(**{**inputs.__dict__, "sample_log_prob": _counting(inputs.sample_log_prob, calls)})
    chunked = per_sample_gradients(counted, problem.params, counted.sample_log_prob)
    assert len(calls) == 3  # ceil(12 / 5) vectorised calls
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(whole, jacrev(problem.rows_log_prob)(problem.theta_old), rtol=1e-10, atol=1e-12)


def _counting(function: Callable[..., Tensor], calls: list[int]) -> Callable[..., Tensor]:
    def wrapped(*args: Tensor) -> Tensor:
        calls.append(1)
        return function(*args)

    return wrapped


@pytest.mark.parametrize("name, row", [("empirical_fisher", "sample_log_prob"), ("gradient_covariance", "sample_loss")])
def test_per_sample_gradients_are_computed_once_per_step(name: str, row: str) -> None:
    problem = Problem("discrete")
    calls: list[int] = []
    inputs = problem.inputs()
    counted = MetricInputs(**{**inputs.__dict__, row: _counting(getattr(inputs, row), calls)})
    optimizer = TrustRegion(problem.params, metric=name, cg_iters=10, cg_tol=0.0, line_search=True)
    optimizer.step(problem.closure, counted)
    assert optimizer.last_stats is not None and optimizer.last_stats.cg_iterations == 10
    assert len(calls) == 1  # one vmap(grad) over the batch, not one per CG product


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("name", sorted(METRICS))
def test_natural_step_equals_dense_damped_solve(name: str, space: str) -> None:
    problem = Problem(space)
    dense = problem.dense(name)
    # λ large enough that M + λI is positive definite for the indefinite metrics (docs/theory.md#damping).
    damping = max(0.1, 0.5 - float(torch.linalg.eigvalsh(dense).min()))
    damped = dense + damping * torch.eye(dense.shape[0], dtype=DTYPE)
    gradient = flat_grad(problem.closure()[0], problem.params)
    solve = torch.linalg.solve(damped, -gradient)
    max_kl = 1e-3
    expected_step = torch.sqrt(2 * max_kl / (solve @ damped @ solve)) * solve

    optimizer = TrustRegion(
        problem.params, metric=name, max_kl=max_kl, cg_damping=damping, cg_iters=200, cg_tol=1e-28, line_search=False
    )
    optimizer.step(problem.closure, problem.inputs())
    stats = optimizer.last_stats
    assert stats is not None and not stats.negative_curvature
    torch.testing.assert_close(flat_params(problem.params) - problem.theta_old, expected_step, rtol=1e-7, atol=1e-12)
    cosine = float(-gradient @ expected_step / (gradient.norm() * expected_step.norm()))
    assert stats.cos_to_grad == pytest.approx(cosine, rel=1e-7)


def test_indefinite_metric_step_falls_back_and_reports_negative_curvature() -> None:
    problem = Problem("discrete")
    optimizer = TrustRegion(problem.params, metric="hessian", max_kl=1e-3, cg_damping=0.0, cg_iters=50, line_search=True)
    optimizer.step(problem.closure, problem.inputs())
    stats = optimizer.last_stats
    assert stats is not None and stats.negative_curvature and stats.finite
    if stats.accepted:
        assert stats.kl <= 1e-3 and stats.actual_improvement > 0


def test_metric_that_needs_inputs_says_so() -> None:
    problem = Problem("discrete")
    optimizer = TrustRegion(problem.params, metric="gauss_newton")
    with pytest.raises(ValueError, match="gauss_newton.*MetricInputs"):
        optimizer.step(problem.closure)


def test_unknown_metric_is_a_config_error_listing_the_valid_ones() -> None:
    spec = {"name": "trust_region", "metric": "newton"}
    with pytest.raises(ConfigError, match=r"^actor\.optim\.metric must be one of \[.*'gauss_newton'.*'hessian'.*\]"):
        build_trust_region(Problem("discrete").params, spec, horizon=1)


# --- the agents: one short update with each metric --------------------------------------------
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("agent_class", [NPG, TRPO])
@pytest.mark.parametrize("name", sorted(METRICS))
def test_one_update_with_each_metric(name: str, agent_class: type[NPG], env_id: str) -> None:
    from tests.test_agents import make_agent, one_update

    agent = make_agent(agent_class.name, env_id, actor={"optim": {"name": "trust_region", "metric": name}})
    assert agent.actor_optimizer.param_groups[0]["metric"] == name
    _, stats = one_update(agent)
    tags = stats.scalars()
    assert all(np.isfinite(value) for value in tags.values()), tags
    assert tags["actor/negative_curvature"] in (0.0, 1.0)
    if agent_class is TRPO and tags["actor/step_accepted"] == 1.0:
        assert tags["actor/kl"] <= agent.actor_optimizer.param_groups[0]["max_kl"] * (1 + 1e-5)


def test_cli_picks_the_metric_and_rejects_an_unknown_one_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["total_steps=512", "env.num_envs=2", "rollout.n_steps=128", "eval.episodes=1", "--no-progress"]
    bad_dir = tmp_path / "bad"
    assert main(["train", "configs/trpo_cartpole.yaml", "actor.optim.metric=newton", *small, "--run-dir", str(bad_dir)]) == 2
    error = capsys.readouterr().err
    assert "actor.optim.metric must be one of" in error and "'generalized_gauss_newton'" in error
    assert not bad_dir.exists()
    run_dir = tmp_path / "run"
    assert main(["train", "configs/trpo_cartpole.yaml", "actor.optim.metric=gauss_newton", *small, "--run-dir", str(run_dir)]) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["actor"]["optim"]["metric"] == "gauss_newton"
