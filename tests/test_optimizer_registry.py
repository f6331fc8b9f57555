"""Adding an optimizer family is one new file plus one registry line (issue 19): a toy family, a
wrapper around ``torch.optim.SGD`` with an option of its own, registered with one call, trains an
agent through the normal config and agent path, and every place that reads specs (validation,
loading, the coefficients and the param-group scheduler) knows it without an edit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from agents import A2C, check_config
from rlopt import optimizers
from rlopt.config import load_config
from rlopt.errors import ConfigError
from rlopt.optimizers.family import OptimizerFamily
from rlopt.options import reject_unknown_options

STEPS = 512
TINY: dict[str, Any] = {"env": {"num_envs": 2}, "rollout": {"n_steps": 32}, "eval": {"episodes": 1}, "total_steps": STEPS}


# ------------------------------------------------------------------ the "new file": one family
class GainSGDFamily(OptimizerFamily):
    """``gain_sgd``: SGD whose step is ``gain · lr`` (its own option), with a schedulable momentum."""

    label: ClassVar[str] = "gain_sgd"
    scheduled: ClassVar[Mapping[str, float]] = {"momentum": 0.0}

    def names(self) -> tuple[str, ...]:
        return ("gain_sgd",)

    def options(self, name: str) -> tuple[str, ...]:
        return ("lr", "gain", "momentum")

    def build(self, module: nn.Module, spec: Mapping[str, Any], key: str) -> torch.optim.Optimizer:
        reject_unknown_options(spec, self.options(spec["name"]), self.label, key)
        gain = spec.get("gain", 1.0)
        if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not gain > 0:
            raise ConfigError(f"{key}.gain: must be a number > 0, got {gain!r}")
        return torch.optim.SGD(module.parameters(), lr=gain * spec["lr"], momentum=spec.get("momentum", 0.0))


@pytest.fixture()
def gain_sgd() -> Iterator[OptimizerFamily]:
    family = optimizers.register(GainSGDFamily())  # the "registry line"
    try:
        yield family
    finally:
        optimizers.FAMILIES.remove(family)


# ------------------------------------------------------------------ the tests
def test_a_registered_family_trains_an_agent_through_the_config_path(gain_sgd: OptimizerFamily) -> None:
    spec = {"name": "gain_sgd", "lr": 0.005, "gain": 2.0, "momentum": {"value": 0.5, "name": "linear"}}
    agent = A2C.from_config(None, **TINY, actor={"optim": spec}, critic={"optim": {"name": "gain_sgd", "lr": 0.01}})
    before = [p.detach().clone() for p in agent.actor.parameters()]
    group = agent.actor_optimizer.param_groups[0]
    assert type(agent.actor_optimizer) is torch.optim.SGD and group["lr"] == 0.01 and group["momentum"] == 0.5
    summary = agent.learn(progress=False)
    assert summary["total_steps"] == STEPS and agent.updates_done == STEPS // 64
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    assert all(bool(torch.isfinite(p).all()) for p in agent.actor.parameters())
    # Its scheduled option went through the param-group scheduler, like lr and max_kl: linear to 0.
    assert agent.coefficient("actor.optim.momentum") == 0.0 and group["momentum"] == 0.0


def test_a_registered_family_is_validated_and_listed_like_the_others(gain_sgd: OptimizerFamily) -> None:
    assert "gain_sgd" in optimizers.valid_names().split(", ")
    with pytest.raises(ConfigError, match=r"^critic\.optim\.gain: must be a number > 0"):
        load_config(None, ["critic.optim={name: gain_sgd, lr: 0.1, gain: -1}"])
    with pytest.raises(ConfigError, match=r"^critic\.optim\.beta: unknown option for gain_sgd; accepted: name, lr, gain"):
        load_config(None, ["critic.optim={name: gain_sgd, lr: 0.1, beta: 1}"])
    notices: list[str] = []
    cfg = load_config("configs/ppo_cartpole.yaml", ["critic.optim.name=gain_sgd"], notices=notices)
    assert cfg.critic.optim["name"] == "gain_sgd" and all("gain_sgd does not take" in n for n in notices)


def test_without_its_registry_line_the_name_is_unknown() -> None:
    with pytest.raises(ConfigError, match=r"^critic\.optim\.name: unknown optimizer 'gain_sgd'; valid: "):
        load_config(None, ["critic.optim={name: gain_sgd, lr: 0.1}"])


def test_a_name_cannot_be_registered_twice() -> None:
    class Twin(GainSGDFamily):
        def names(self) -> tuple[str, ...]:
            return ("adam",)

    with pytest.raises(ValueError, match="'adam' is already registered"):
        optimizers.register(Twin())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["critic.optim={name: trust_region}"], r"^critic\.optim\.name: trust_region is the actor step of the trust-region agents"),
        (["agent=a2c", "actor.optim={name: kfac}"], r"^actor\.optim\.name: kfac is the critic's K-FAC optimizer"),
    ],
)
def test_a_family_refuses_a_network_it_does_not_serve(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(load_config(None, overrides))
