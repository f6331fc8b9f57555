"""Build a ``torch.optim`` optimizer over parameters from a config mapping ``{"name": ..., "lr": ...,
**kwargs}``: the ``torch.optim`` family of the optimizer registry (:mod:`rlopt.optimizers`), for
callers that hold parameters rather than a network. Networks are built with
:func:`rlopt.optimizers.build`, which also knows ``trust_region`` and ``kfac``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from rlopt import optimizers
from rlopt.errors import ConfigError
from rlopt.optimizers.torch_optim import FOREACH_BIT_IDENTICAL, OPTIMIZER_NAMES, TORCH_OPTIM

__all__ = ["FOREACH_BIT_IDENTICAL", "OPTIMIZER_NAMES", "accepted_options", "build_optimizer"]


def accepted_options(name: str) -> tuple[str, ...] | None:
    """The spec keys (besides ``name``) a spec named ``name`` accepts, any family; None if unknown."""
    return optimizers.options(name)


def build_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    spec: Mapping[str, Any],
    key: str = "optim",
) -> torch.optim.Optimizer:
    """Build the ``torch.optim`` optimizer named by ``spec["name"]`` over ``params`` (tensors or
    param groups).

    Names: ``sgd``, ``momentum`` (SGD, momentum 0.9 unless given), ``nesterov`` (SGD, momentum
    0.9, nesterov=True), and every ``torch.optim`` optimizer by class name, case-insensitively
    (``adagrad``, ``rmsprop``, ``adam``, ``adamw``, ``NAdam``, ...). Other keys are passed to
    the constructor; ``foreach`` defaults to true for :data:`FOREACH_BIT_IDENTICAL`. Errors are
    one-line ConfigErrors prefixed by ``key``; another family's name says what builds it.
    """
    family = optimizers.lookup(spec, key)
    if family is not TORCH_OPTIM:
        raise ConfigError(f"{key}.name: {spec['name']!r} is {family.needs or family.label}, not by build_optimizer")
    return TORCH_OPTIM.build_for_params(params, spec, key)
