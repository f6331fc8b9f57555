"""Loss-independent metrics (Pierrot et al. 2018) that need only the closure: the identity and the Fisher.

* ``identity``: M = I, vanilla gradient descent (docs/theory.md#metrics).
* ``fisher``: M = ∇²_θ KL(π_old‖π_θ)|_{θ=θ_old} = E_s[Jᵀ F_out J], the Fisher information
  (natural gradient, Kakade 2002; TRPO, Schulman et al. 2015), Hessian-free by Pearlmutter's trick.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from rlopt.trust_region.flat import flat_grad
from rlopt.trust_region.metrics.base import MatrixVectorProduct, Metric, MetricInputs, Row
from rlopt.trust_region.metrics.hessian import hessian_vector_product


def fisher_vector_product(kl_grad: Tensor, params: Sequence[Tensor], vector: Tensor) -> Tensor:
    """F v = ∇_θ((∇_θ kl)ᵀ v), F = ∇²_θ mean KL(π_old‖π_θ) at θ = θ_old (Pearlmutter 1994).

    ``kl_grad`` is ∇_θ kl with its graph, ``flat_grad(kl, params, create_graph=True)``: formed
    once per step, it is differentiated again (``retain_graph=True``) for each product, so CG's
    repeated calls cost one backward each. At θ = θ_old the KL's gradient vanishes and its
    Hessian is the Fisher information. Undamped: the caller adds λv
    (:func:`~rlopt.trust_region.optimizer.propose_step`). ``.grad`` of ``params`` is left
    untouched; entries of parameters the KL does not depend on are zero.
    """
    return hessian_vector_product(kl_grad, params, vector)


class FisherMetric(Metric):
    """M = F, the Hessian of the mean KL(π_old‖π_θ) at θ_old (natural gradient / TRPO).

    Pierrot et al. 2018: E_(x,y)[∇_θ log p_θ(y|x) ∇_θ log p_θ(y|x)ᵀ] + λI, natural gradient, here with
    y ~ π_θ(·|x) in expectation (exact, through the KL's Hessian) rather than the batch's actions.
    """

    name: ClassVar[str] = "fisher"
    statistics_solvers: ClassVar[tuple[str, ...]] = ("kfac", "diagonal")

    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        params = list(params)
        kl_grad = flat_grad(kl, params, create_graph=True)  # the first-order graph, built once
        return functools.partial(fisher_vector_product, kl_grad, params)

    def rows(self, outputs: Tensor, inputs: MetricInputs | None = None) -> list[Row]:
        """r = log π(â_i|s_i) with â_i ~ π(·|s_i) drawn afresh (the sampled Fisher, ACKTR), from
        torch's global generator (saved with every checkpoint)."""
        if inputs is None or inputs.sample_actions is None:
            raise ValueError("metric 'fisher' with a statistics solver needs MetricInputs.sample_actions")
        with torch.no_grad():
            sampled = inputs.sample_actions(outputs.detach())
        return [Row(inputs.sample_log_prob, (sampled,))]


class IdentityMetric(Metric):
    """M = I: the trust region is a Euclidean ball, the step is along −∇L.

    Pierrot et al. 2018, first row: I, vanilla gradient descent.
    """

    name: ClassVar[str] = "identity"

    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        return _identity


def _identity(vector: Tensor) -> Tensor:
    return vector
