"""Build a ``torch.optim`` optimizer from a config mapping ``{"name": ..., "lr": ..., **kwargs}``.

All update rules are torch's own; this module only resolves names, fills alias defaults and turns
bad input into one-line :class:`~rlopt.errors.ConfigError` messages prefixed by the config key.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rlopt.errors import ConfigError

__all__ = ["FOREACH_BIT_IDENTICAL", "OPTIMIZER_NAMES", "accepted_options", "build_optimizer"]


@dataclass(frozen=True)
class _Alias:
    """A name for a torch optimizer class with default and fixed keyword arguments."""

    cls: type[torch.optim.Optimizer]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)


def _torch_optimizer_classes() -> dict[str, type[torch.optim.Optimizer]]:
    """Every public ``torch.optim.Optimizer`` subclass, keyed by its lower-cased class name."""
    classes = {}
    for attr in dir(torch.optim):
        obj = getattr(torch.optim, attr)
        if (
            isinstance(obj, type)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
            and not attr.startswith("_")
        ):
            classes[attr.lower()] = obj
    return classes


# Heavy-ball momentum (Polyak, 1964) and Nesterov (1983) with seed 000's beta = 0.9.
_DEFAULT_MOMENTUM = 0.9
_ALIASES: dict[str, _Alias] = {
    **{name: _Alias(cls) for name, cls in _torch_optimizer_classes().items()},
    "momentum": _Alias(torch.optim.SGD, defaults={"momentum": _DEFAULT_MOMENTUM}),
    "nesterov": _Alias(
        torch.optim.SGD, defaults={"momentum": _DEFAULT_MOMENTUM}, fixed={"nesterov": True}
    ),
}

# torch's multi-tensor ("foreach") implementations that are bit-identical to its per-parameter loop
# (tests/test_optim.py checks it for every option that changes the update): rlopt uses them when a
# spec sets neither ``foreach`` nor ``fused`` — one kernel per operation for all of a network's
# parameters instead of one per parameter (torch's CPU default is the loop), same weights.
FOREACH_BIT_IDENTICAL: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.Adadelta, torch.optim.Adagrad, torch.optim.Adam, torch.optim.Adamax,
    torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Rprop, torch.optim.SGD,
)  # fmt: skip

OPTIMIZER_NAMES: list[str] = sorted(_ALIASES)
"""Names :func:`build_optimizer` accepts (case-insensitive)."""

# Built elsewhere, not here; listed so a typo's error shows every valid name.
_EXTERNAL_BUILDERS = {
    "trust_region": "a trust-region update, built by rlopt.trust_region",
    "kfac": "K-FAC, which needs the network itself, built by rlopt.kfac_optimizer.build_network_optimizer",
}
_EXTERNAL_NAMES = tuple(_EXTERNAL_BUILDERS)
_ALL_VALID_NAMES = ", ".join(sorted([*OPTIMIZER_NAMES, *_EXTERNAL_NAMES]))


def _accepted_kwargs(cls: type[torch.optim.Optimizer]) -> list[str]:
    """Keyword arguments of ``cls.__init__`` other than ``params`` (``lr`` included)."""
    signature = inspect.signature(cls.__init__)
    return [
        arg
        for arg, param in signature.parameters.items()
        if arg not in ("self", "params")
        and param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def accepted_options(name: str) -> tuple[str, ...] | None:
    """The spec keys (besides ``name``) :func:`build_optimizer` accepts for ``name``; None if unknown."""
    if isinstance(name, str) and name.lower() == "kfac":
        from rlopt.kfac_optimizer import KFAC_OPTIONS  # imports this module: late

        return KFAC_OPTIONS
    alias = _ALIASES.get(name.lower()) if isinstance(name, str) else None
    if alias is None:
        return None
    return tuple(arg for arg in _accepted_kwargs(alias.cls) if arg not in alias.fixed)


def _plain(value: Any) -> Any:
    """Config sequences (lists, OmegaConf ListConfig) -> tuples, as torch documents ``betas``."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(_plain(item) for item in value)
    return value


def _check_lr(spec: Mapping[str, Any], key: str) -> float:
    if "lr" not in spec:
        raise ConfigError(f"{key}.lr: required (a number > 0)")
    lr = spec["lr"]
    if (
        not isinstance(lr, numbers.Real)
        or isinstance(lr, bool)
        or not math.isfinite(float(lr))
        or lr <= 0
    ):
        raise ConfigError(f"{key}.lr: must be a finite number > 0, got {lr!r}")
    return float(lr)


def build_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    spec: Mapping[str, Any],
    key: str = "optim",
) -> torch.optim.Optimizer:
    """Build the optimizer named by ``spec["name"]`` over ``params`` (tensors or param groups).

    Names: ``sgd``, ``momentum`` (SGD, momentum 0.9 unless given), ``nesterov`` (SGD, momentum
    0.9, nesterov=True), and every ``torch.optim`` optimizer by class name, case-insensitively
    (``adagrad``, ``rmsprop``, ``adam``, ``adamw``, ``NAdam``, ...). Other keys are passed to
    the constructor; ``foreach`` defaults to true for :data:`FOREACH_BIT_IDENTICAL`. Errors are
    one-line ConfigErrors prefixed by ``key``.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: must be a mapping with 'name' and 'lr', got {spec!r}")
    raw_name = spec.get("name")
    if not isinstance(raw_name, str):
        raise ConfigError(f"{key}.name: required (a string); valid: {_ALL_VALID_NAMES}")
    name = raw_name.lower()
    if name in _EXTERNAL_NAMES:
        raise ConfigError(f"{key}.name: {raw_name!r} is {_EXTERNAL_BUILDERS[name]}, not by build_optimizer")
    alias = _ALIASES.get(name)
    if alias is None:
        raise ConfigError(f"{key}.name: unknown optimizer {raw_name!r}; valid: {_ALL_VALID_NAMES}")

    lr = _check_lr(spec, key)
    accepted = [arg for arg in _accepted_kwargs(alias.cls) if arg not in alias.fixed]
    kwargs: dict[str, Any] = dict(alias.defaults)
    for arg, value in spec.items():
        if arg in ("name", "lr"):
            continue
        if arg in alias.fixed:
            raise ConfigError(
                f"{key}.{arg}: fixed to {alias.fixed[arg]!r} by name {name!r}; "
                f"use name 'sgd' or 'momentum' to set it"
            )
        if arg not in accepted:
            raise ConfigError(
                f"{key}.{arg}: unknown option for {alias.cls.__name__}; "
                f"accepted: {', '.join(accepted)}"
            )
        kwargs[arg] = _plain(value)
    kwargs.update(alias.fixed)
    kwargs["lr"] = lr
    if (
        alias.cls in FOREACH_BIT_IDENTICAL
        and kwargs.get("foreach") is None
        and not kwargs.get("fused")
        and not kwargs.get("differentiable")  # torch has no foreach path for differentiable steps
    ):
        kwargs["foreach"] = True
    try:
        return alias.cls(params, **kwargs)
    except ValueError as error:  # torch's own range checks, e.g. "Invalid beta parameter ..."
        message = " ".join(str(error).split())
        raise ConfigError(f"{key}: {alias.cls.__name__}: {message}") from error

