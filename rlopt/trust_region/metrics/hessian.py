"""Newton's method: M = H(θ), the Hessian of the surrogate loss (Pierrot et al. 2018; docs/theory.md#metrics).

Not positive semi-definite in general: CG stops at the first direction with dᵀM̃d ≤ 0 and the
step falls back (:func:`~rlopt.trust_region.optimizer.propose_step`, ``negative_curvature``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from rlopt.trust_region.flat import flat_grad
from rlopt.trust_region.metrics.base import MatrixVectorProduct, Metric, MetricInputs


def hessian_vector_product(first_grad: Tensor, params: Sequence[Tensor], vector: Tensor) -> Tensor:
    """H v = ∇_θ((∇_θ f)ᵀ v) from ``first_grad`` = ∇_θ f built with ``create_graph=True`` (Pearlmutter
    1994); the graph is kept (``retain_graph=True``) so one first-order graph serves every product."""
    return flat_grad(torch.dot(first_grad, vector.detach()), params, retain_graph=True)


class HessianMetric(Metric):
    """M = H(θ) = ∇²_θ L of the surrogate loss, by double backward.

    Pierrot et al. 2018: H(θ) + λI, Newton's method.
    """

    name: ClassVar[str] = "hessian"

    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        params = list(params)
        loss_grad = flat_grad(loss, params, create_graph=True)  # ∇L with its graph, built once
        return functools.partial(hessian_vector_product, loss_grad, params)
