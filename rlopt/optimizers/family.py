"""The :class:`OptimizerFamily` interface: one entry of the optimizer registry (:mod:`rlopt.optimizers`).

A family owns some spec names (``adam``, ``sgd``, ... for torch.optim; ``trust_region``; ``kfac``) and
says, for a spec ``{name: ..., <option>: ...}``: which options it takes (:meth:`options`), whether it is
valid (:meth:`check`, no network needed) and the optimizer it makes for a network (:meth:`build`).
Options a spec may give as a schedule ``{value, name, ...}`` are declared in :attr:`scheduled`; the
registry hands :meth:`build` and :meth:`check` their value at update 0 and the agent's param-group
scheduler takes them over (``rlopt.schedules.ParamGroupScheduler``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from rlopt.errors import ConfigError

ROLES = ("actor", "critic")
"""The networks a spec may serve, named by the first part of its key (``actor.optim``)."""


class OptimizerFamily(ABC):
    """One optimizer family: its names, options, checks and builder."""

    label: ClassVar[str]
    """How messages name the family."""
    roles: ClassVar[tuple[str, ...]] = ROLES
    """The networks it may optimize."""
    scheduled: ClassVar[Mapping[str, float]] = {}
    """Options that may be a schedule ``{value, name, ...}``, with their defaults (``max_kl``)."""
    needs: ClassVar[str] = ""
    """What it needs besides parameters, for the pointer of ``rlopt.optim.build_optimizer`` ("" none)."""

    @abstractmethod
    def names(self) -> tuple[str, ...]:
        """The spec names this family builds, as the valid-name list shows them."""

    def owns(self, name: str) -> bool:
        """Whether ``spec["name"] == name`` is this family's (case-insensitive unless overridden)."""
        return name.lower() in self.names()

    @abstractmethod
    def options(self, name: str) -> tuple[str, ...]:
        """The keys a spec named ``name`` accepts besides ``name``."""

    @abstractmethod
    def build(self, module: nn.Module, spec: Mapping[str, Any], key: str) -> torch.optim.Optimizer:
        """The optimizer of ``module`` for ``spec`` (plain values); one-line ConfigErrors naming ``key``."""

    def check(self, spec: Mapping[str, Any], key: str) -> None:
        """Reject a spec no network could run with (default: build it for a stand-in layer)."""
        self.build(stand_in_layer(), spec, key)

    def wrong_role(self, key: str) -> str:
        """The message for a spec of this family at a network it does not serve."""
        return f"{key}.name: {self.label} cannot optimize the {key.split('.')[0]}"


def stand_in_layer(out_features: int = 2) -> nn.Linear:
    """A Linear(2, out) with weight 0.5 and bias 0: a network to check a spec on. Its default
    initialisation draws from a forked RNG, so checking a spec leaves torch's global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        layer = nn.Linear(2, out_features)
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.bias.zero_()
    return layer


def role_of(key: str) -> str | None:
    """``actor`` for ``actor.optim`` (None for a key of no network)."""
    role = key.split(".")[0]
    return role if role in ROLES else None


def check_role(family: OptimizerFamily, key: str) -> None:
    """A ConfigError if ``family`` does not serve the network ``key`` belongs to."""
    role = role_of(key)
    if role is not None and role not in family.roles:
        raise ConfigError(family.wrong_role(key))
