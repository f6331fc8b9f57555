"""The trust-region metric M(θ) as an object that returns its matrix-vector product.

Seed 003 (Sigaud, after Pierrot et al. 2018): the step minimises ∇Lᵀδθ subject to
δθᵀ M(θ) δθ ≤ ε², and six choices of M give six methods. CG only needs v ↦ M v, so a metric is
a factory of such products. Two ship here:

* ``"fisher"``   M = ∇²_θ KL(π_old‖π_θ)|_{θ=θ_old} = F, the Fisher information (natural gradient,
  Kakade 2002; TRPO, Schulman et al. 2015). Computed Hessian-free by Pearlmutter's trick.
* ``"identity"`` M = I, the vanilla gradient direction inside a trust region (seed 003, row 1).

Damping λI (seed 003, "Damping") is added by the caller, not by the metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.trust_region.flat import flat_grad

MatrixVectorProduct = Callable[[Tensor], Tensor]


class Metric(ABC):
    """M(θ) of the trust region δθᵀ M δθ ≤ ε², exposed as a matrix-vector product.

    ``mvp(params, loss, kl)`` is called once per optimizer step with graph tensors at the current
    θ and returns v ↦ M(θ) v (undamped, n-vectors over the flat ``params``). Expensive set-up
    (e.g. a first backward pass with ``create_graph=True``) belongs in ``mvp`` itself, so CG's
    repeated products reuse it.

    How the other rows of seed 003 would plug in:

    * Newton, M = H(θ): the Hessian-vector product of ``loss``, the same Pearlmutter code path as
      :class:`FisherMetric` applied to ``loss`` instead of ``kl`` (not PSD: needs damping).
    * Gauss-Newton / generalised Gauss-Newton, M = E[Jᵀ H_y J]: Jacobian-vector products of the
      network outputs, given to the metric at construction (e.g. a callable of θ to outputs).
    * Empirical Fisher / gradient covariance, M = E[∇lᵢ ∇lᵢᵀ]: need per-sample terms, which a
      scalar ``loss`` does not carry; such a metric would take them from a small context object
      passed in place of ``loss`` (the two shipped metrics do not need it).
    """

    name: ClassVar[str]

    @abstractmethod
    def mvp(self, params: Sequence[Tensor], loss: Tensor, kl: Tensor) -> MatrixVectorProduct:
        """Return v ↦ M(θ) v (without damping); ``loss`` and ``kl`` are graph tensors at θ."""


def kl_hessian_vector_product(kl: Tensor, params: Sequence[Tensor]) -> MatrixVectorProduct:
    """v ↦ ∇²_θ kl · v by double backward (Pearlmutter 1994), first-order graph built once.

    ∇_θ kl is computed here with ``create_graph=True``; each call of the returned function only
    differentiates the scalar (∇_θ kl)ᵀ v, reusing that graph (``retain_graph=True``).
    For kl = mean KL(π_old‖π_θ) at θ = θ_old this is the Fisher-vector product F v
    (the gradient of the KL vanishes there, its Hessian is the Fisher information).
    """
    params = list(params)
    grad_kl = flat_grad(kl, params, create_graph=True)

    def hessian_vector_product(vector: Tensor) -> Tensor:
        return flat_grad(torch.dot(grad_kl, vector.detach()), params, retain_graph=True)

    return hessian_vector_product


def fisher_vector_product(
    kl: Tensor, params: Sequence[Tensor], vector: Tensor, damping: float
) -> Tensor:
    """(F + damping·I) v with F = ∇²_θ mean KL(π_old‖π_θ) at θ = θ_old.

    Builds the first-order graph on every call; for repeated products (CG) use
    ``FisherMetric().mvp(...)``, which shares :func:`kl_hessian_vector_product` with this function.
    """
    return torch.add(kl_hessian_vector_product(kl, params)(vector), vector, alpha=damping)


class FisherMetric(Metric):
    """M = F, the Hessian of the mean KL(π_old‖π_θ) at θ_old (natural gradient / TRPO)."""

    name: ClassVar[str] = "fisher"

    def mvp(self, params: Sequence[Tensor], loss: Tensor, kl: Tensor) -> MatrixVectorProduct:
        return kl_hessian_vector_product(kl, params)


class IdentityMetric(Metric):
    """M = I: the trust region is a Euclidean ball, the step is along −∇L (seed 003, row 1)."""

    name: ClassVar[str] = "identity"

    def mvp(self, params: Sequence[Tensor], loss: Tensor, kl: Tensor) -> MatrixVectorProduct:
        return _identity


def _identity(vector: Tensor) -> Tensor:
    return vector


METRICS: dict[str, type[Metric]] = {
    FisherMetric.name: FisherMetric,
    IdentityMetric.name: IdentityMetric,
}


def build_metric(name_or_metric: str | Metric, key: str = "actor.optim.metric") -> Metric:
    """A :class:`Metric` from its registered name (or the instance itself, returned as is)."""
    if isinstance(name_or_metric, Metric):
        return name_or_metric
    if isinstance(name_or_metric, str) and name_or_metric in METRICS:
        return METRICS[name_or_metric]()
    raise ConfigError(
        f"{key} must be one of {sorted(METRICS)} or a Metric instance, got {name_or_metric!r}"
    )
