"""The K-FAC critic optimizer (``critic.optim.name: kfac``) and the ACKTR agent's configuration.

Factors against hand-built Gauss-Newton statistics, the one-layer step against a dense solve, the
KL clip, state_dict round trip, spec errors, and ACKTR's defaults and CLI rejection before a run dir.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents import AGENTS, check_config
from rlopt.cli import main
from rlopt.config import load_config
from rlopt.errors import ConfigError
from rlopt.kfac_optimizer import KFAC, build_kfac, build_network_optimizer
from rlopt.optim import build_optimizer

DTYPE = torch.float64


def _batch(seed: int = 0, n: int = 32, dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, dtype=DTYPE, generator=generator), torch.randn(n, dtype=DTYPE, generator=generator)


def _fit_step(module: nn.Module, optimizer: KFAC, obs: torch.Tensor, returns: torch.Tensor) -> None:
    optimizer.zero_grad()
    (0.5 * (module(obs).squeeze(-1) - returns).square().mean()).backward()
    optimizer.step()


def test_two_layer_factors_equal_hand_built_gauss_newton_statistics() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(DTYPE)
    optimizer = KFAC(net, stat_decay=0.0)
    obs, returns = _batch()
    _fit_step(net, optimizer, obs, returns)  # statistics at the parameters before the step (rebuilt below)
    first, second = optimizer.state[net[0].weight], optimizer.state[net[2].weight]
    ones = torch.ones(32, 1, dtype=DTYPE)
    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(DTYPE)
    hidden = torch.tanh(fresh[0](obs)).detach()
    a_first, a_second = torch.cat([obs, ones], 1), torch.cat([hidden, ones], 1)
    g_first = fresh[2].weight.detach() * (1 - hidden**2)  # ∂V/∂s₁ per row, [N, 4]
    assert torch.allclose(first["kfac_A"], a_first.T @ a_first / 32, atol=1e-12)
    assert torch.allclose(second["kfac_A"], a_second.T @ a_second / 32, atol=1e-12)
    assert torch.allclose(first["kfac_G"], g_first.T @ g_first / 32, atol=1e-12)
    assert torch.allclose(second["kfac_G"], torch.ones(1, 1, dtype=DTYPE), atol=1e-12)  # ∂V/∂s₂ = 1


def test_one_layer_step_is_the_damped_gauss_newton_solve() -> None:
    """Linear V: K-FAC's A ⊗ G (G = 1) is the exact Gauss-Newton matrix; momentum 0, no clipping."""
    layer = nn.Linear(3, 1).to(DTYPE)
    obs, returns = _batch(1)
    before = torch.cat([layer.weight.detach().reshape(-1), layer.bias.detach()]).clone()
    damping, lr = 0.04, 0.5
    optimizer = KFAC(layer, lr=lr, momentum=0.0, damping=damping, kl_clip=1e9)
    _fit_step(layer, optimizer, obs, returns)
    with_one = torch.cat([obs, torch.ones(32, 1, dtype=DTYPE)], 1)
    residual = with_one @ before - returns
    gradient = with_one.T @ residual / 32
    a_factor = with_one.T @ with_one / 32
    pi = (torch.trace(a_factor) / 4).sqrt()  # tr G / dim G = 1
    dense = torch.kron(a_factor + pi * damping**0.5 * torch.eye(4, dtype=DTYPE), (1 + damping**0.5 / pi).reshape(1, 1))
    expected = before - lr * torch.linalg.solve(dense, gradient)
    after = torch.cat([layer.weight.detach().reshape(-1), layer.bias.detach()])
    assert torch.allclose(after, expected, rtol=0, atol=1e-12)


def test_kl_clip_scales_the_update_to_the_bound() -> None:
    layer = nn.Linear(3, 1).to(DTYPE)
    obs, returns = _batch(2)
    before = [p.detach().clone() for p in layer.parameters()]
    free = KFAC(nn.Linear(3, 1).to(DTYPE), momentum=0.0, kl_clip=1e9)
    free.module.load_state_dict(layer.state_dict())
    _fit_step(free.module, free, obs, returns)
    unclipped = [p.detach() - b for p, b in zip(free.module.parameters(), before)]
    grads = [p.grad for p in free.module.parameters()]
    lr, kl_clip = 0.25, 1e-6
    quadratic = sum(torch.sum(g * (-u / lr)) for g, u in zip(grads, unclipped))  # Σ gᵀ·precond_g
    assert lr**2 * quadratic > kl_clip  # the bound is active
    clipped = KFAC(layer, lr=lr, momentum=0.0, kl_clip=kl_clip)
    _fit_step(layer, clipped, obs, returns)
    scale = torch.sqrt(kl_clip / (lr**2 * quadratic))
    for param, b, u in zip(layer.parameters(), before, unclipped):
        assert torch.allclose(param.detach() - b, scale * u, rtol=1e-10, atol=0)


def test_state_dict_round_trip_continues_bit_exactly_with_momentum_and_stale_inverses() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    twin = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    options = dict(update_every=3, stat_decay=0.9)
    optimizer = KFAC(net, **options)
    for seed in range(2):
        _fit_step(net, optimizer, *(t.float() for t in _batch(seed)))
    twin.load_state_dict(net.state_dict())
    other = KFAC(twin, **options)
    other.load_state_dict(optimizer.state_dict())
    for seed in range(2, 5):
        _fit_step(net, optimizer, *(t.float() for t in _batch(seed)))
        _fit_step(twin, other, *(t.float() for t in _batch(seed)))
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), twin.parameters()))


def test_step_without_a_forward_pass_with_grad_says_so() -> None:
    layer = nn.Linear(2, 1)
    optimizer = KFAC(layer)
    with torch.no_grad():
        layer(torch.ones(1, 2))  # acting: ignored
    with pytest.raises(RuntimeError, match="forward pass with grad enabled"):
        optimizer.step()


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "kfac", "betas": [0.9, 0.99]}, r"^critic.optim.betas: unknown option for kfac; accepted: name, lr"),
        ({"name": "kfac", "damping": 0}, r"^critic.optim.damping must be > 0"),
        ({"name": "kfac", "stat_decay": 1.0}, r"^critic.optim.stat_decay must be in \[0, 1\)"),
        ({"name": "kfac", "update_every": 1.5}, r"^critic.optim.update_every must be an integer >= 1"),
        ({"name": "kfac", "kl_clip": -1}, r"^critic.optim.kl_clip must be > 0"),
        ({"name": "kfac", "momentum": 1.0}, r"^critic.optim.momentum must be in \[0, 1\)"),
    ],
)
def test_bad_kfac_specs_are_one_line_config_errors(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build_kfac(nn.Linear(2, 1), spec, key="critic.optim")
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"critic.optim={spec}".replace("'", "")])


def test_kfac_is_a_valid_name_built_only_with_the_network() -> None:
    with pytest.raises(ConfigError, match=r"valid: .*kfac.*trust_region"):
        build_optimizer(nn.Linear(2, 1).parameters(), {"name": "kfak", "lr": 1.0})
    with pytest.raises(ConfigError, match="needs the network itself"):
        build_optimizer(nn.Linear(2, 1).parameters(), {"name": "kfac", "lr": 1.0})
    assert isinstance(build_network_optimizer(nn.Linear(2, 1), {"name": "kfac"}, "critic.optim"), KFAC)
    assert isinstance(build_network_optimizer(nn.Linear(2, 1), {"name": "adam", "lr": 1e-3}, "critic.optim"), torch.optim.Adam)
    cfg = load_config(None, ["agent=a2c", "actor.optim={name: kfac}"])
    with pytest.raises(ConfigError, match=r"^actor.optim.name: kfac is the critic's K-FAC optimizer"):
        check_config(cfg)


def test_acktr_is_npg_with_the_kfac_solver_and_a_kfac_critic_by_default() -> None:
    resolved = check_config(load_config(None, ["agent=acktr"]))
    assert issubclass(AGENTS["acktr"], AGENTS["npg"])
    assert resolved.actor.optim["solver"] == "kfac" and resolved.actor.optim["metric"] == "fisher"
    assert resolved.actor.optim["line_search"] is False
    assert resolved.critic.optim["name"] == "kfac"
    cg = check_config(load_config(None, ["agent=acktr", "actor.optim.solver=cg", "critic.optim={name: adam, lr: 0.001}"]))
    assert cg.actor.optim["solver"] == "cg" and cg.critic.optim["name"] == "adam"


def test_cli_rejects_a_bad_metric_solver_pair_before_writing(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    code = main(["train", "configs/npg_cartpole.yaml", "actor.optim.solver=kfac", "actor.optim.metric=hessian", "--run-dir", str(run_dir)])
    assert code == 2 and not run_dir.exists()
    assert "actor.optim.solver 'kfac' does not work with metric 'hessian'" in capsys.readouterr().err
