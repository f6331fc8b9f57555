"""The trust-region metric M(θ) as an object that returns its matrix-vector product.

Seed 003 (Sigaud, after Pierrot et al. 2018): the step minimises ∇Lᵀδθ subject to
δθᵀ M(θ) δθ ≤ ε², and six choices of M give six methods. CG only needs v ↦ M v, so a metric is
a factory of such products. Two ship here:

* ``"fisher"``   M = ∇²_θ KL(π_old‖π_θ)|_{θ=θ_old} = F, the Fisher information (natural gradient,
  Kakade 2002; TRPO, Schulman et al. 2015). Computed Hessian-free by Pearlmutter's trick.
* ``"identity"`` M = I, the vanilla gradient direction inside a trust region (seed 003, row 1).

Damping λI (seed 003, "Damping") is added by the caller, not by the metric.

Middle of :mod:`rlopt.trust_region` (torch only): built on :mod:`~rlopt.trust_region.flat`, used
by :mod:`~rlopt.trust_region.optimizer`. :func:`fisher_vector_product` is the pure numerical
piece (tested against dense Fisher matrices); :class:`FisherMetric` only builds ∇_θ KL once per
step and hands CG that function.
"""

from __future__ import annotations

import functools
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


def fisher_vector_product(kl_grad: Tensor, params: Sequence[Tensor], vector: Tensor) -> Tensor:
    """F v = ∇_θ((∇_θ kl)ᵀ v), F = ∇²_θ mean KL(π_old‖π_θ) at θ = θ_old (Pearlmutter 1994).

    ``kl_grad`` is ∇_θ kl with its graph, ``flat_grad(kl, params, create_graph=True)``: formed
    once per step, it is differentiated again (``retain_graph=True``) for each product, so CG's
    repeated calls cost one backward each. At θ = θ_old the KL's gradient vanishes and its
    Hessian is the Fisher information. Undamped: the caller adds λv
    (:func:`~rlopt.trust_region.optimizer.propose_step`). ``.grad`` of ``params`` is left
    untouched; entries of parameters the KL does not depend on are zero.
    """
    return flat_grad(torch.dot(kl_grad, vector.detach()), params, retain_graph=True)


class FisherMetric(Metric):
    """M = F, the Hessian of the mean KL(π_old‖π_θ) at θ_old (natural gradient / TRPO)."""

    name: ClassVar[str] = "fisher"

    def mvp(self, params: Sequence[Tensor], loss: Tensor, kl: Tensor) -> MatrixVectorProduct:
        params = list(params)
        kl_grad = flat_grad(kl, params, create_graph=True)  # the first-order graph, built once
        return functools.partial(fisher_vector_product, kl_grad, params)


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
