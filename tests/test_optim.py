"""build_optimizer: torch's update rules against the textbook formulas on a quadratic, and errors.

Problem (docs/theory.md#first-order-optimizers): f(x) = ½ xᵀQx, Q = diag(5, 1), x0 = (3, -3); λmax = 5, λmin = 1, so
plain GD is stable iff η < 2/λmax = 0.4 and η* = 2/(λmin + λmax) = 1/3. The reference
recursions (``seed_*`` below: the textbook forms) are written out in numpy/float64 exactly as stated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
import torch

from rlopt.errors import ConfigError
from rlopt.optim import FOREACH_BIT_IDENTICAL, OPTIMIZER_NAMES, build_optimizer

Q_DIAG = np.array([5.0, 1.0])
X0 = np.array([3.0, -3.0])
STEPS = 30

SeedStep = Callable[[np.ndarray, dict[str, Any], int], np.ndarray]
"""A numpy reference update ``x_{k+1} = step(x_k, state, k)`` with k = 1, 2, ..."""


def seed_grad(x: np.ndarray) -> np.ndarray:
    """∇f(x) = Qx."""
    return Q_DIAG * x


def run_torch(
    spec: Mapping[str, Any], steps: int = STEPS
) -> tuple[np.ndarray, torch.optim.Optimizer]:
    """Minimise f with the optimizer built from ``spec``; returns iterates x_0..x_steps."""
    x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(Q_DIAG, dtype=torch.float64)
    optimizer = build_optimizer([x], spec)
    path = [x.detach().numpy().copy()]
    for _ in range(steps):
        optimizer.zero_grad()
        loss = 0.5 * (q * x * x).sum()
        loss.backward()
        optimizer.step()
        path.append(x.detach().numpy().copy())
    return np.array(path), optimizer


def run_seed(step: SeedStep, steps: int = STEPS) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Iterate a numpy reference update; returns iterates x_0..x_steps and the state after each."""
    x, state = X0.copy(), {}
    path, states = [x.copy()], [dict(state)]
    for k in range(1, steps + 1):
        x = step(x, state, k)
        path.append(x.copy())
        states.append(dict(state))
    return np.array(path), states


# ---------------------------------------------------------------------------------------------
# Plain GD: x_{k+1} = x_k − η ∇f(x_k)
# ---------------------------------------------------------------------------------------------


def test_sgd_matches_gd_formula_and_closed_form() -> None:
    lr = 0.1
    torch_path, _ = run_torch({"name": "sgd", "lr": lr})
    seed_path, _ = run_seed(lambda x, s, k: x - lr * seed_grad(x))
    np.testing.assert_allclose(torch_path, seed_path, rtol=1e-14, atol=0)
    # On a diagonal quadratic GD is x_k = (1 − ηλ)^k x0 per coordinate.
    k = np.arange(STEPS + 1)[:, None]
    np.testing.assert_allclose(torch_path, (1 - lr * Q_DIAG) ** k * X0, rtol=1e-12)


@pytest.mark.parametrize("lr", [0.41, 0.45])
def test_sgd_diverges_above_two_over_lambda_max(lr: float) -> None:
    path, _ = run_torch({"name": "sgd", "lr": lr}, steps=200)
    norms = np.linalg.norm(path, axis=1)
    assert norms[-1] > 100 * norms[0]
    # The stiff coordinate grows by |1 − 5η| > 1 every step.
    np.testing.assert_allclose(np.abs(path[1:, 0] / path[:-1, 0]), abs(1 - 5 * lr), rtol=1e-12)


@pytest.mark.parametrize("lr", [0.39, 1.0 / 3.0, 0.1])
def test_sgd_converges_below_two_over_lambda_max(lr: float) -> None:
    path, _ = run_torch({"name": "sgd", "lr": lr}, steps=200)
    norms = np.linalg.norm(path, axis=1)
    assert norms[-1] < 1e-3 * norms[0]


def test_sgd_optimal_step_contracts_both_coordinates_by_two_thirds() -> None:
    # η* = 2/(λmin + λmax) = 1/3 equalises |1 − ηλ| = 2/3 in both eigen-directions.
    path, _ = run_torch({"name": "sgd", "lr": 1.0 / 3.0}, steps=40)
    norms = np.linalg.norm(path, axis=1)
    np.testing.assert_allclose(norms[1:] / norms[:-1], 2.0 / 3.0, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Momentum: v_{k+1} = β v_k + ∇f(x_k), x_{k+1} = x_k − η v_{k+1}
# ---------------------------------------------------------------------------------------------


def seed_momentum(lr: float, beta: float) -> SeedStep:
    def step(x: np.ndarray, state: dict[str, Any], k: int) -> np.ndarray:
        state["v"] = beta * state.get("v", np.zeros_like(x)) + seed_grad(x)
        return x - lr * state["v"]

    return step


def test_momentum_matches_heavy_ball_formula_with_default_beta_0_9() -> None:
    lr = 0.024  # ηλmax = 0.12, well inside heavy ball's stability bound 2(1 + β)
    torch_path, optimizer = run_torch({"name": "momentum", "lr": lr})
    assert optimizer.param_groups[0]["momentum"] == 0.9
    assert optimizer.param_groups[0]["nesterov"] is False
    seed_path, states = run_seed(seed_momentum(lr, 0.9))
    np.testing.assert_allclose(torch_path, seed_path, rtol=1e-12, atol=1e-14)
    buffer = next(iter(optimizer.state.values()))["momentum_buffer"].numpy()
    np.testing.assert_allclose(buffer, states[-1]["v"], rtol=1e-12)


def test_momentum_beta_can_be_overridden() -> None:
    lr, beta = 0.05, 0.5
    torch_path, optimizer = run_torch({"name": "momentum", "lr": lr, "momentum": beta})
    assert optimizer.param_groups[0]["momentum"] == beta
    seed_path, _ = run_seed(seed_momentum(lr, beta))
    np.testing.assert_allclose(torch_path, seed_path, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# Nesterov. Seed (lookahead form):
#   v_{k+1} = β v_k + ∇f(x_k − ηβ v_k),  x_{k+1} = x_k − η v_{k+1}.
# torch: v_{k+1} = β v_k + ∇f(y_k), y_{k+1} = y_k − η (∇f(y_k) + β v_{k+1}).
# With y_k = x_k − ηβ v_k (the seed's lookahead point), substituting x_k = y_k + ηβ v_k gives
# y_{k+1} = x_{k+1} − ηβ v_{k+1} = y_k + ηβ v_k − η(1 + β) v_{k+1}
#         = y_k − η(∇f(y_k) + β v_{k+1}):
# torch's parameter is the seed's lookahead point and torch's buffer is the seed's v.
# Both start at y_0 = x_0 because v_0 = 0.
# ---------------------------------------------------------------------------------------------


def test_nesterov_parameter_is_seed_lookahead_point_and_buffer_is_seed_velocity() -> None:
    lr, beta = 0.024, 0.9

    def seed_nesterov(x: np.ndarray, state: dict[str, Any], k: int) -> np.ndarray:
        v = state.get("v", np.zeros_like(x))
        state["v"] = beta * v + seed_grad(x - lr * beta * v)
        return x - lr * state["v"]

    seed_path, states = run_seed(seed_nesterov)
    seed_v = np.array([s.get("v", np.zeros(2)) for s in states])
    lookahead = seed_path - lr * beta * seed_v

    x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    optimizer = build_optimizer([x], {"name": "nesterov", "lr": lr})
    assert optimizer.param_groups[0]["nesterov"] is True
    assert optimizer.param_groups[0]["momentum"] == beta
    q = torch.tensor(Q_DIAG, dtype=torch.float64)
    for k in range(1, STEPS + 1):
        optimizer.zero_grad()
        (0.5 * (q * x * x).sum()).backward()
        optimizer.step()
        y = x.detach().numpy()
        buffer = optimizer.state[x]["momentum_buffer"].numpy()
        np.testing.assert_allclose(y, lookahead[k], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(buffer, seed_v[k], rtol=1e-11, atol=1e-13)
        # Inverse change of variables recovers the seed's own iterate.
        np.testing.assert_allclose(y + lr * beta * buffer, seed_path[k], rtol=1e-11, atol=1e-13)
    # The two forms are different sequences (the substitution above is not the identity).
    assert not np.allclose(lookahead[1:], seed_path[1:])


# ---------------------------------------------------------------------------------------------
# AdaGrad (Duchi et al., 2011). Seed formula: G_t = G_{t−1} + g², θ −= η g / sqrt(G_t + ε).
# torch divides by sqrt(G_t) + ε (ε outside the root), as the seed's own code does; the two agree
# exactly at ε = 0. torch also has initial_accumulator_value (G_0) and lr_decay
# (η_t = η / (1 + (t − 1)·lr_decay)), both off by default.
# ---------------------------------------------------------------------------------------------


def seed_adagrad(
    lr: float,
    eps_inside: float = 0.0,
    eps_outside: float = 0.0,
    g0: float = 0.0,
    lr_decay: float = 0.0,
) -> SeedStep:
    def step(x: np.ndarray, state: dict[str, Any], k: int) -> np.ndarray:
        g = seed_grad(x)
        state["G"] = state.get("G", np.full_like(x, g0)) + g * g
        eta = lr / (1 + (k - 1) * lr_decay)
        return x - eta * g / (np.sqrt(state["G"] + eps_inside) + eps_outside)

    return step


def test_adagrad_matches_seed_formula_at_zero_eps() -> None:
    lr = 0.3
    torch_path, _ = run_torch({"name": "adagrad", "lr": lr, "eps": 0.0})
    seed_path, _ = run_seed(seed_adagrad(lr))
    np.testing.assert_allclose(torch_path, seed_path, rtol=1e-12, atol=1e-14)


def test_adagrad_eps_sits_outside_the_square_root() -> None:
    lr, eps = 0.3, 1e-2
    torch_path, _ = run_torch({"name": "adagrad", "lr": lr, "eps": eps})
    outside, _ = run_seed(seed_adagrad(lr, eps_outside=eps))
    inside, _ = run_seed(seed_adagrad(lr, eps_inside=eps))
    np.testing.assert_allclose(torch_path, outside, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(torch_path - inside)) > 1e-4  # the seed's written formula differs


def test_adagrad_initial_accumulator_and_lr_decay() -> None:
    lr, g0, decay = 0.3, 2.0, 0.05
    spec = {
        "name": "adagrad",
        "lr": lr,
        "eps": 0.0,
        "initial_accumulator_value": g0,
        "lr_decay": decay,
    }
    torch_path, _ = run_torch(spec)
    seed_path, _ = run_seed(seed_adagrad(lr, g0=g0, lr_decay=decay))
    np.testing.assert_allclose(torch_path, seed_path, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# RMSProp (Hinton, 2012). Seed: v_t = β v_{t−1} + (1 − β) g², θ −= η g / sqrt(v_t + ε).
# torch calls β "alpha" (default 0.99) and divides by sqrt(v_t) + ε; equal at ε = 0.
# ---------------------------------------------------------------------------------------------


def seed_rmsprop(
    lr: float, beta: float, eps_inside: float = 0.0, eps_outside: float = 0.0
) -> SeedStep:
    def step(x: np.ndarray, state: dict[str, Any], k: int) -> np.ndarray:
        g = seed_grad(x)
        state["v"] = beta * state.get("v", np.zeros_like(x)) + (1 - beta) * g * g
        return x - lr * g / (np.sqrt(state["v"] + eps_inside) + eps_outside)

    return step


def test_rmsprop_matches_seed_formula_at_zero_eps() -> None:
    lr, beta = 0.075, 0.9
    torch_path, _ = run_torch({"name": "rmsprop", "lr": lr, "alpha": beta, "eps": 0.0})
    seed_path, _ = run_seed(seed_rmsprop(lr, beta))
    np.testing.assert_allclose(torch_path, seed_path, rtol=1e-12, atol=1e-14)


def test_rmsprop_eps_sits_outside_the_square_root() -> None:
    lr, beta, eps = 0.075, 0.9, 1e-2
    torch_path, _ = run_torch({"name": "RMSprop", "lr": lr, "alpha": beta, "eps": eps})
    outside, _ = run_seed(seed_rmsprop(lr, beta, eps_outside=eps))
    inside, _ = run_seed(seed_rmsprop(lr, beta, eps_inside=eps))
    np.testing.assert_allclose(torch_path, outside, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(torch_path - inside)) > 1e-5


# ---------------------------------------------------------------------------------------------
# Adam (Kingma & Ba, 2014): the paper's formula, ε outside sqrt(v̂), is torch's.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 1e-8, 1e-2])
def test_adam_matches_seed_formula_with_bias_correction(eps: float) -> None:
    lr, b1, b2 = 0.15, 0.9, 0.999

    def seed_adam(x: np.ndarray, state: dict[str, Any], t: int) -> np.ndarray:
        g = seed_grad(x)
        state["m"] = b1 * state.get("m", np.zeros_like(x)) + (1 - b1) * g
        state["v"] = b2 * state.get("v", np.zeros_like(x)) + (1 - b2) * g * g
        m_hat = state["m"] / (1 - b1**t)
        v_hat = state["v"] / (1 - b2**t)
        return x - lr * m_hat / (np.sqrt(v_hat) + eps)

    torch_path, _ = run_torch({"name": "adam", "lr": lr, "betas": [b1, b2], "eps": eps})
    seed_path, _ = run_seed(seed_adam)
    np.testing.assert_allclose(torch_path, seed_path, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Names, kwargs and errors
# ---------------------------------------------------------------------------------------------


def _params() -> list[torch.Tensor]:
    return [torch.zeros(3, requires_grad=True)]


@pytest.mark.parametrize(
    "name, cls",
    [
        ("sgd", torch.optim.SGD),
        ("adagrad", torch.optim.Adagrad),
        ("rmsprop", torch.optim.RMSprop),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("NAdam", torch.optim.NAdam),
        ("nadam", torch.optim.NAdam),
        ("Adamax", torch.optim.Adamax),
        ("ADAM", torch.optim.Adam),
    ],
)
def test_names_resolve_case_insensitively_to_torch_classes(name: str, cls: type) -> None:
    optimizer = build_optimizer(_params(), {"name": name, "lr": 0.01})
    assert type(optimizer) is cls
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_optimizer_names_is_sorted_and_complete() -> None:
    assert OPTIMIZER_NAMES == sorted(OPTIMIZER_NAMES)
    required = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam"]
    assert set(required) <= set(OPTIMIZER_NAMES)
    assert "trust_region" not in OPTIMIZER_NAMES
    assert "optimizer" not in OPTIMIZER_NAMES


def test_param_groups_keep_their_own_lr() -> None:
    actor, critic = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    groups = [{"params": [actor]}, {"params": [critic], "lr": 1e-2}]
    optimizer = build_optimizer(groups, {"name": "adam", "lr": 3e-4})
    assert [g["lr"] for g in optimizer.param_groups] == [3e-4, 1e-2]


def test_unknown_name_lists_every_valid_name_including_trust_region() -> None:
    with pytest.raises(ConfigError) as info:
        build_optimizer(_params(), {"name": "foo", "lr": 0.1}, key="actor.optim")
    message = str(info.value)
    assert message.startswith("actor.optim.name: unknown optimizer 'foo'; valid: ")
    listed = message.split("valid: ")[1].split(", ")
    assert listed == sorted([*OPTIMIZER_NAMES, "kfac", "trust_region"])
    assert "\n" not in message


def test_trust_region_is_refused_with_a_pointer() -> None:
    with pytest.raises(ConfigError, match=r"^actor\.optim\.name: 'trust_region'"):
        build_optimizer(_params(), {"name": "trust_region", "lr": 0.1}, key="actor.optim")


def test_unknown_kwarg_is_named_and_accepted_kwargs_listed() -> None:
    with pytest.raises(ConfigError) as info:
        spec = {"name": "momentum", "lr": 0.1, "beta": 0.9}
        build_optimizer(_params(), spec, key="critic.optim")
    message = str(info.value)
    assert message.startswith("critic.optim.beta: unknown option for SGD; accepted: ")
    for accepted in ["lr", "momentum", "dampening", "weight_decay", "nesterov"]:
        assert accepted in message.split("accepted: ")[1].split(", ")


def test_nesterov_flag_cannot_be_turned_off_under_the_nesterov_name() -> None:
    with pytest.raises(ConfigError, match=r"optim\.nesterov: fixed to True"):
        build_optimizer(_params(), {"name": "nesterov", "lr": 0.1, "nesterov": False})


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), float("inf"), "fast", True, None])
def test_bad_lr_is_rejected(lr: Any) -> None:
    with pytest.raises(ConfigError, match=r"^actor\.optim\.lr: must be a finite number > 0"):
        build_optimizer(_params(), {"name": "adam", "lr": lr}, key="actor.optim")


def test_missing_lr_and_name_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^optim\.lr: required"):
        build_optimizer(_params(), {"name": "adam"})
    with pytest.raises(ConfigError, match=r"^optim\.name: required"):
        build_optimizer(_params(), {"lr": 0.1})


def test_torch_value_error_becomes_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^actor\.optim: Adam: Invalid beta parameter") as info:
        spec = {"name": "adam", "lr": 0.1, "betas": [1.5, 0.999]}
        build_optimizer(_params(), spec, key="actor.optim")
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize(
    "overrides,message",
    [  # an option kept from the preset's file (its Adam eps) that the new optimizer takes in another form
        (["actor.optim={name: adafactor, lr: 0.01}"],
         r"^actor\.optim\.eps: 1e-05 is refused by adafactor \(TypeError: 'float' object is not subscriptable\)$"),
        (["actor.optim.betas=[0.9, 2.0]"], r"^actor\.optim\.betas: \[0\.9, 2\.0\] is refused by adam \(Adam: Invalid beta"),
        (["actor.optim={name: lbfgs, lr: 1.0}"], r"^actor\.optim: invalid value \(TypeError: LBFGS\.step\(\)"),  # no one option
    ],
)  # fmt: skip
def test_a_spec_that_fails_its_test_steps_names_the_option_without_which_it_passes(overrides, message) -> None:
    from agents import check_config
    from rlopt.config import load_config

    with pytest.raises(ConfigError, match=message):
        check_config(load_config("ppo_cartpole", overrides, notices=[]))  # drop notices (lbfgs takes no eps) kept quiet


def test_list_kwargs_become_tuples_so_state_dicts_stay_plain() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    spec = omegaconf.OmegaConf.create({"name": "adam", "lr": 1e-3, "betas": [0.8, 0.99]})
    optimizer = build_optimizer(_params(), spec)
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.99)
    assert type(optimizer.param_groups[0]["betas"]) is tuple


# ----------------------------------------------------------------- foreach by default
FOREACH_OPTIONS: list[dict[str, Any]] = [
    {}, {"weight_decay": 0.01}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "dampening": 0.1},
    {"amsgrad": True}, {"centered": True, "momentum": 0.5}, {"maximize": False}, {"lr_decay": 0.01},
]  # fmt: skip
"""Options that change an update rule; each optimizer gets those it accepts."""


def _train_tiny_mlp(cls: type[torch.optim.Optimizer], options: dict[str, Any], foreach: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    optimizer = cls(model.parameters(), lr=1e-2, foreach=foreach, **options)
    inputs = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(40):
        optimizer.zero_grad()
        model(inputs).square().mean().backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("cls", FOREACH_BIT_IDENTICAL, ids=lambda cls: cls.__name__)
def test_foreach_default_is_bit_identical_to_the_per_parameter_loop(cls: type[torch.optim.Optimizer]) -> None:
    accepted = set(inspect.signature(cls.__init__).parameters)
    for options in FOREACH_OPTIONS:
        if not set(options) <= accepted:
            continue
        looped, multi_tensor = (_train_tiny_mlp(cls, options, foreach) for foreach in (False, True))
        assert torch.equal(looped, multi_tensor), f"{cls.__name__} {options}: foreach changes the weights"


def test_build_optimizer_defaults_foreach_only_where_it_is_bit_identical_and_unset() -> None:
    params = [torch.zeros(2, requires_grad=True)]
    assert build_optimizer(params, {"name": "adam", "lr": 0.1}).defaults["foreach"] is True
    assert build_optimizer(params, {"name": "momentum", "lr": 0.1}).defaults["foreach"] is True
    assert build_optimizer(params, {"name": "adam", "lr": 0.1, "foreach": False}).defaults["foreach"] is False
    assert build_optimizer(params, {"name": "adam", "lr": 0.1, "fused": True}).defaults["foreach"] is None
    assert build_optimizer(params, {"name": "nadam", "lr": 0.1}).defaults["foreach"] is None  # not bit-identical


def test_fused_spec_adds_fused_only_where_torch_has_the_kernel_and_the_spec_chose_none() -> None:
    from rlopt.optimizers.torch_optim import fused_spec

    cpu = torch.device("cpu")
    assert fused_spec({"name": "adam", "lr": 1e-3}, cpu) == {"name": "adam", "lr": 1e-3, "fused": True}
    assert fused_spec({"name": "Momentum", "lr": 0.1}, cpu)["fused"] is True  # an alias: its class's kernel
    for spec in ({"name": "adam", "lr": 1e-3, "foreach": False}, {"name": "adam", "lr": 1e-3, "fused": False},
                 {"name": "adam", "lr": 1e-3, "differentiable": True}, {"name": "rmsprop", "lr": 1e-3},
                 {"name": "trust_region", "max_kl": 0.01}):  # fmt: skip
        assert fused_spec(spec, cpu) == spec  # a choice of implementation kept; no fused RMSprop; not torch.optim
    params = [torch.zeros(3, requires_grad=True)]
    params[0].grad = torch.ones(3)
    optimizer = build_optimizer(params, fused_spec({"name": "adam", "lr": 0.1}, cpu))
    optimizer.step()  # the same rule: Adam's first step moves every coordinate by lr
    assert optimizer.param_groups[0]["fused"] is True
    assert torch.allclose(params[0].detach(), torch.full((3,), -0.1))
