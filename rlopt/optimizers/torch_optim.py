"""The ``torch.optim`` family: every torch optimizer by its lower-cased class name, plus the aliases
``momentum`` (SGD, momentum 0.9 unless given) and ``nesterov`` (SGD, momentum 0.9, nesterov=True).

All update rules are torch's own; this module only resolves names, fills alias defaults and turns
bad input into one-line :class:`~rlopt.errors.ConfigError` messages prefixed by the config key.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from rlopt.errors import ConfigError
from rlopt.optimizers.family import OptimizerFamily
from rlopt.options import any_error_as_config_error, reject_unknown_options


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


# Heavy-ball momentum (Polyak, 1964) and Nesterov (1983) with the usual beta = 0.9.
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
"""Names of this family (case-insensitive)."""
_TEST_STEPS = 2
"""Steps of :meth:`TorchOptimFamily.check`: the second also uses the state of the first (momentum, moments)."""


def _accepted_kwargs(cls: type[torch.optim.Optimizer]) -> list[str]:
    """Keyword arguments of ``cls.__init__`` other than ``params`` (``lr`` included)."""
    signature = inspect.signature(cls.__init__)
    return [
        arg
        for arg, param in signature.parameters.items()
        if arg not in ("self", "params")
        and param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


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


class TorchOptimFamily(OptimizerFamily):
    """Every ``torch.optim`` optimizer, by class name or alias; other spec keys go to the constructor."""

    label: ClassVar[str] = "torch.optim"

    def names(self) -> tuple[str, ...]:
        return tuple(OPTIMIZER_NAMES)

    def options(self, name: str) -> tuple[str, ...]:
        alias = _ALIASES[name.lower()]
        return tuple(arg for arg in _accepted_kwargs(alias.cls) if arg not in alias.fixed)

    def build(self, module: nn.Module, spec: Mapping[str, Any], key: str) -> torch.optim.Optimizer:
        return self.build_for_params(module.parameters(), spec, key)

    def build_for_params(
        self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], spec: Mapping[str, Any], key: str
    ) -> torch.optim.Optimizer:
        """The optimizer over ``params`` (tensors or param groups); ``foreach`` defaults to true for
        :data:`FOREACH_BIT_IDENTICAL`."""
        name = spec["name"].lower()
        alias = _ALIASES[name]
        lr = _check_lr(spec, key)
        for arg in spec:
            if arg in alias.fixed:
                raise ConfigError(
                    f"{key}.{arg}: fixed to {alias.fixed[arg]!r} by name {name!r}; use name 'sgd' or 'momentum' to set it"
                )
        reject_unknown_options(spec, self.options(name), alias.cls.__name__, key)
        kwargs: dict[str, Any] = dict(alias.defaults)
        kwargs.update((arg, _plain(value)) for arg, value in spec.items() if arg not in ("name", "lr"))
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

    def check(self, spec: Mapping[str, Any], key: str) -> None:
        """Build ``spec`` on a zero stand-in layer and take test steps with a unit gradient, as the
        agents do (``optimizer.step()`` without closure): rejects e.g. lbfgs, sparseadam, capturable on CPU."""
        if spec.get("maximize", False):
            raise ConfigError(f"{key}.maximize: true would ascend the loss rlopt minimises; remove it")
        try:
            params = self._test_steps(spec, key)
        except ConfigError as err:
            culprit = self._offending_option(spec, key)
            if culprit is None:
                raise
            detail = str(err).removeprefix(f"{key}: ")  # e.g. an option kept from the file: Adafactor's eps is a pair
            if detail.startswith("invalid value (") and detail.endswith(")"):
                detail = detail.removeprefix("invalid value (").removesuffix(")")
            raise ConfigError(f"{key}.{culprit}: {spec[culprit]!r} is refused by {spec['name']} ({detail})") from None
        if not all(bool(torch.isfinite(param).all()) for param in params):
            raise ConfigError(
                f"{key}: {spec.get('name')} turns a unit gradient into non-finite parameters; check its numeric options"
            )


    def _test_steps(self, spec: Mapping[str, Any], key: str) -> list[torch.Tensor]:
        """Build ``spec`` on a zero stand-in layer and take the test steps; its parameters after them."""
        params = [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]
        with any_error_as_config_error(key):
            optimizer = self.build_for_params(params, spec, key)
            for _ in range(_TEST_STEPS):
                for param in params:
                    param.grad = torch.ones_like(param)
                optimizer.step()
        return params

    def _offending_option(self, spec: Mapping[str, Any], key: str) -> str | None:
        """The one option (not ``name`` or ``lr``) without which ``spec`` passes the test steps, if any."""
        for option in spec:
            if option in ("name", "lr"):
                continue
            try:
                self._test_steps({k: v for k, v in spec.items() if k != option}, key)
            except ConfigError:
                continue
            return option
        return None


IMPLEMENTATION_OPTIONS: tuple[str, ...] = ("foreach", "fused")
"""Param-group keys that choose torch's implementation of a rule, not the rule: a stack's fused
optimizer and its seeds' lone ones keep their own (``rlopt.stacked``: state copied, these not)."""


@functools.cache
def _fused_runs(cls: type[torch.optim.Optimizer], device_type: str) -> bool:
    """Whether ``cls(..., fused=True)`` steps on ``device_type`` with this torch (CPU: torch >= 2.4)."""
    if "fused" not in inspect.signature(cls.__init__).parameters:
        return False
    param = torch.zeros(16, device=device_type, requires_grad=True)
    param.grad = torch.ones_like(param)
    try:
        cls([param], lr=1e-3, fused=True).step()
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


def fused_spec(spec: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """``spec`` with ``fused: true`` where torch has a fused kernel for its class on ``device`` and the
    spec chooses no implementation (``foreach``/``fused``/``differentiable``): one kernel per step
    for all tensors (≈ 3x cheaper than foreach for Adam on K = 10 flat leaves of 4.6k floats on CPU),
    rounding like the rule but not bit for bit like the foreach path. Other specs unchanged."""
    out = dict(spec)
    alias = _ALIASES.get(str(out.get("name", "")).lower())
    if alias is None or any(key in out for key in (*IMPLEMENTATION_OPTIONS, "differentiable")):
        return out
    if _fused_runs(alias.cls, device.type):
        out["fused"] = True
    return out


TORCH_OPTIM = TorchOptimFamily()
"""The registry entry."""
