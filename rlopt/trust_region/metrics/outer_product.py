"""Outer-product metrics M = E_i[g_i g_iᵀ] from per-sample gradients g_i (docs/theory.md#metrics).

* ``empirical_fisher``: g_i = ∇_θ log π(a_i|s_i) at the batch's own actions (Kakade 2002 with
  the empirical rather than the model's action distribution).
* ``gradient_covariance``: g_i = ∇_θ l_i, l_i the per-sample surrogate loss (Bottou & Bousquet
  2008, "outer product metric"), optionally centred.

The N×P matrix G of per-sample gradients is computed once per step with ``torch.func``
(``vmap(grad)``, chunked so that at most ``PER_SAMPLE_CHUNK_ELEMENTS`` gradient entries are
built per vectorised call); each CG product is then two mat-vecs, v ↦ Gᵀ(G v)/N.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.func import grad, vmap

from rlopt.trust_region.metrics.base import (
    MatrixVectorProduct,
    Metric,
    MetricInputs,
    Row,
    RowFunction,
)

PER_SAMPLE_CHUNK_ELEMENTS = 1 << 22
"""Cap on chunk × P per-sample gradient entries built by one vectorised call (memory, not math)."""


def per_sample_gradients(
    inputs: MetricInputs, params: Sequence[Tensor], row: RowFunction, only: Sequence[int] | None = None
) -> Tensor:
    """G [N, P]: row i is ∇_θ row(forward(θ, s_i), *targets_i), flattened in ``params`` order.

    ``only``: indices into ``params`` to differentiate (the others are held at their values and
    left out of the columns); None = all of them.
    """
    primals = inputs.primals(params)
    names = list(inputs.params)
    wanted = list(range(len(primals))) if only is None else list(only)

    def one_row(tensors: tuple[Tensor, ...], obs: Tensor, *targets: Tensor) -> Tensor:
        full = list(primals)
        for index, tensor in zip(wanted, tensors):
            full[index] = tensor
        outputs = inputs.forward(dict(zip(names, full)), obs.unsqueeze(0))
        return row(outputs, *(t.unsqueeze(0) for t in targets)).squeeze(0)

    differentiated = tuple(primals[index] for index in wanted)
    num_params = max(1, sum(p.numel() for p in differentiated))
    chunk = max(1, PER_SAMPLE_CHUNK_ELEMENTS // num_params)
    in_dims = (None, 0, *(0 for _ in inputs.targets))
    grads = vmap(grad(one_row), in_dims=in_dims, chunk_size=chunk)(differentiated, inputs.inputs, *inputs.targets)
    return torch.cat([g.reshape(inputs.batch_size, -1) for g in grads], dim=1)


def outer_product_vector_product(per_sample: Tensor, vector: Tensor) -> Tensor:
    """(1/N) Gᵀ(G v) = E_i[g_i g_iᵀ] v for G = ``per_sample`` [N, P], without forming GᵀG."""
    return per_sample.T @ (per_sample @ vector.detach()) / per_sample.shape[0]


class EmpiricalFisherMetric(Metric):
    """M = E_i[∇log π(a_i|s_i) ∇log π(a_i|s_i)ᵀ] over the batch's actions.

    Pierrot et al. 2018: E_(x,y)[∇_θ log(p_θ(y|x)) ∇_θ log(p_θ(y|x))ᵀ] + λI, natural gradient with the
    empirical Fisher matrix.
    """

    name: ClassVar[str] = "empirical_fisher"
    statistics_solvers: ClassVar[tuple[str, ...]] = ("kfac", "diagonal")

    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        inputs = self._require_inputs(inputs)
        per_sample = per_sample_gradients(inputs, params, inputs.sample_log_prob)
        return functools.partial(outer_product_vector_product, per_sample)

    def rows(self, outputs: Tensor, inputs: MetricInputs | None = None) -> list[Row]:
        """r = log π(a_i|s_i) at the batch's actions."""
        inputs = self._require_inputs(inputs)
        return [Row(inputs.sample_log_prob, inputs.targets)]


class GradientCovarianceMetric(Metric):
    """M = E_i[∇l_i ∇l_iᵀ] (or the centred covariance), l_i the per-sample surrogate loss.

    Pierrot et al. 2018: E_x[∇_θ l_θ(x) ∇_θ l_θ(x)ᵀ] + λI, the gradient covariance matrix.
    """

    name: ClassVar[str] = "gradient_covariance"
    statistics_solvers: ClassVar[tuple[str, ...]] = ("diagonal",)

    def __init__(self, centered: bool = False) -> None:
        self.centered = centered
        """Subtract the mean gradient: E_i[(g_i − ḡ)(g_i − ḡ)ᵀ] instead of E_i[g_i g_iᵀ]."""

    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        inputs = self._require_inputs(inputs)
        per_sample = per_sample_gradients(inputs, params, inputs.sample_loss)
        if self.centered:
            per_sample = per_sample - per_sample.mean(dim=0, keepdim=True)
        return functools.partial(outer_product_vector_product, per_sample)

    def rows(self, outputs: Tensor, inputs: MetricInputs | None = None) -> list[Row]:
        """r = l_i, the per-sample surrogate loss (uncentred)."""
        inputs = self._require_inputs(inputs)
        return [Row(inputs.sample_loss, inputs.targets)]
