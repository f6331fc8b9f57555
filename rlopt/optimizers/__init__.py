"""Every optimizer family rlopt builds, one registry entry each (:data:`FAMILIES`).

================  =====================================================  ==========================
family            names                                                  module
================  =====================================================  ==========================
torch.optim       every ``torch.optim`` class (``adam``, ``sgd``, ...),   :mod:`.torch_optim`
                  ``momentum``, ``nesterov``
trust_region      ``trust_region`` (the actor step of NPG, TRPO, ACKTR)   :mod:`.trust_region`
kfac              ``kfac`` (the critic step of ACKTR)                     :mod:`.kfac`
================  =====================================================  ==========================

Config validation, loading, the coefficients and the agents look a spec's family up here
(:func:`family_of`) and never switch on names. A new family is one file with an
:class:`~rlopt.optimizers.family.OptimizerFamily` and one line: an entry of :data:`FAMILIES` (or a
call of :func:`register`). Options a family declares ``scheduled`` (``max_kl``) may be schedules
``{value, name, ...}``: :func:`build` and :func:`check` hand the family their value at update 0, and
the agent's param-group scheduler takes them over (:func:`scheduled_options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rlopt.errors import ConfigError
from rlopt.optimizers.family import OptimizerFamily, check_role, role_of
from rlopt.optimizers.kfac import KFAC_FAMILY
from rlopt.optimizers.torch_optim import TORCH_OPTIM
from rlopt.optimizers.trust_region import TRUST_REGION_FAMILY
from rlopt.schedules import ScheduledValue, scheduled_values, value_at_start

FAMILIES: list[OptimizerFamily] = [TORCH_OPTIM, TRUST_REGION_FAMILY, KFAC_FAMILY]
"""The registry: every optimizer family, in lookup order."""


def register(family: OptimizerFamily) -> OptimizerFamily:
    """Add ``family`` to the registry (a name another family owns is a ValueError); returns it."""
    taken = [name for name in family.names() if family_of(name) is not None]
    if taken:
        raise ValueError(f"optimizer name {taken[0]!r} is already registered")
    FAMILIES.append(family)
    return family


def valid_names() -> str:
    """Every registered name, sorted, comma-separated (for messages)."""
    return ", ".join(sorted(name for family in FAMILIES for name in family.names()))


def family_of(name: Any) -> OptimizerFamily | None:
    """The family that owns the spec name ``name`` (None for an unknown name or no string)."""
    if not isinstance(name, str):
        return None
    return next((family for family in FAMILIES if family.owns(name)), None)


def lookup(spec: Any, key: str) -> OptimizerFamily:
    """The family of ``spec``; one-line ConfigErrors for a spec without a known name."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: must be a mapping with 'name' and 'lr', got {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name: required (a string); valid: {valid_names()}")
    family = family_of(name)
    if family is None:
        raise ConfigError(f"{key}.name: unknown optimizer {name!r}; valid: {valid_names()}")
    return family


def options(name: Any) -> tuple[str, ...] | None:
    """The keys (besides ``name``) a spec named ``name`` accepts; None for an unknown name."""
    family = family_of(name)
    return None if family is None else family.options(name)


def scheduled_options(spec: Mapping[str, Any], horizon: int, key: str) -> dict[str, ScheduledValue]:
    """The scheduled options of ``spec`` over ``horizon`` updates (``{"max_kl": ...}`` for a
    ``trust_region`` actor spec; empty for a family without any, an unknown name or a family that
    does not serve the network of ``key``)."""
    family = family_of(spec.get("name"))
    if family is None or role_of(key) not in family.roles:
        return {}
    return scheduled_values(spec, family.scheduled, horizon, key)


def _at_start(family: OptimizerFamily, spec: Mapping[str, Any], key: str, horizon: int) -> Mapping[str, Any]:
    check_role(family, key)
    return value_at_start(spec, family.scheduled, horizon, key) if family.scheduled else spec


def build(module: nn.Module, spec: Mapping[str, Any], key: str, horizon: int = 1) -> torch.optim.Optimizer:
    """The optimizer of ``module`` (the network ``key`` names: ``actor.optim``) for ``spec``; scheduled
    options start at their value at update 0 of ``horizon`` updates."""
    family = lookup(spec, key)
    return family.build(module, _at_start(family, spec, key, horizon), key)


def check(spec: Mapping[str, Any], key: str, horizon: int = 1) -> None:
    """Reject ``spec`` unless a network could run with it (no network needed; one-line ConfigError)."""
    family = lookup(spec, key)
    family.check(_at_start(family, spec, key, horizon), key)


__all__ = ["FAMILIES", "KFAC_FAMILY", "TORCH_OPTIM", "TRUST_REGION_FAMILY", "OptimizerFamily", "build", "check",
           "family_of", "lookup", "options", "register", "scheduled_options", "valid_names"]  # fmt: skip
