"""The per-sample terms r whose gradient outer products make up a metric, for the solvers that
build M(θ) from statistics instead of products (``kfac``, ``diagonal``).

Each metric a statistics solver accepts is a sum over "row functions" r_j of
M = E_i[Σ_j ∇_θ r_j(y_i) ∇_θ r_j(y_i)ᵀ]; each :class:`~..metrics.base.Metric`
declares its own in :meth:`~..metrics.base.Metric.rows` (``fisher``: sampled log-probabilities;
``empirical_fisher``: the batch's log-probabilities; ``gradient_covariance``: the per-sample loss;
``gauss_newton``: one row per output unit). This module only looks them up by name.
"""

from __future__ import annotations

from torch import Tensor

from rlopt.trust_region.metrics import build_metric
from rlopt.trust_region.metrics.base import MetricInputs, Row
from rlopt.trust_region.metrics.gauss_newton import output_unit


def metric_rows(inputs: MetricInputs, metric: str, outputs: Tensor) -> list[Row]:
    """The rows of the metric named ``metric`` on the batch; ``outputs`` = y(θ) [N, k]."""
    return build_metric(metric, key="metric").rows(outputs, inputs)


__all__ = ["Row", "metric_rows", "output_unit"]
