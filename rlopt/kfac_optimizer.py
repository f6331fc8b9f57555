"""K-FAC for a regression network: moved to :mod:`rlopt.optimizers.kfac` (the ``kfac`` family of the
optimizer registry); these names stay importable from here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rlopt import optimizers
from rlopt.optimizers.kfac import KFAC, KFAC_HYPERPARAMETERS, KFAC_NAME, KFAC_OPTIONS, build_kfac

__all__ = ["KFAC", "KFAC_HYPERPARAMETERS", "KFAC_NAME", "KFAC_OPTIONS", "build_kfac", "build_network_optimizer"]


def build_network_optimizer(module: nn.Module, spec: Mapping[str, Any], key: str) -> torch.optim.Optimizer:
    """The optimizer of ``module`` named by ``spec``, any family (:func:`rlopt.optimizers.build`)."""
    return optimizers.build(module, spec, key)
