"""The per-sample terms r whose gradient outer products make up a metric, for the solvers that
build M(θ) from statistics instead of products (``kfac``, ``diagonal``).

Each metric a statistics solver accepts is a sum over "row functions" r_j of
M = E_i[Σ_j ∇_θ r_j(y_i) ∇_θ r_j(y_i)ᵀ] (seed 003's table):

* ``fisher``: r = log π(â_i|s_i) with â_i ~ π(·|s_i) sampled afresh (the sampled Fisher, ACKTR);
* ``empirical_fisher``: r = log π(a_i|s_i) at the batch's actions;
* ``gradient_covariance``: r = l_i, the per-sample surrogate loss;
* ``gauss_newton``: one r_k = y_ik per output unit k (E_s[JᵀJ] = E_s[Σ_k ∇y_k ∇y_kᵀ]).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

from rlopt.trust_region.metrics.base import MetricInputs, RowFunction


class Row(NamedTuple):
    """One per-sample term: ``function(outputs [N, k], *targets) ↦ [N]``."""

    function: RowFunction
    """The row function (row i reads only row i)."""
    targets: tuple[Tensor, ...]
    """Its per-row data (actions, old log-probs, advantages, ...)."""


def output_unit(unit: int, outputs: Tensor, *_: Tensor) -> Tensor:
    """y_ik, the k-th policy output of each row (the Gauss-Newton row function)."""
    return outputs[:, unit]


def metric_rows(inputs: MetricInputs, metric: str, outputs: Tensor) -> list[Row]:
    """The rows of ``metric`` on the batch; ``outputs`` = y(θ) [N, k] (read for sampling and k).

    ``fisher`` draws its actions from torch's global generator (saved with every checkpoint).
    """
    if metric == "fisher":
        if inputs.sample_actions is None:
            raise ValueError("metric 'fisher' with a statistics solver needs MetricInputs.sample_actions")
        with torch.no_grad():
            sampled = inputs.sample_actions(outputs.detach())
        return [Row(inputs.sample_log_prob, (sampled,))]
    if metric == "empirical_fisher":
        return [Row(inputs.sample_log_prob, inputs.targets)]
    if metric == "gradient_covariance":
        return [Row(inputs.sample_loss, inputs.targets)]
    if metric == "gauss_newton":
        return [Row(functools.partial(output_unit, unit), ()) for unit in range(outputs.shape[1])]
    raise ValueError(f"metric {metric!r} has no per-sample rows")
