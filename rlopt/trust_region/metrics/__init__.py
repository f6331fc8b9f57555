"""The trust-region metric M(θ) as an object that returns its matrix-vector product.

Pierrot et al. 2018 (docs/theory.md#metrics): the step minimises ∇Lᵀδθ subject to
δθᵀ M(θ) δθ ≤ ε², and six choices of M give six methods. CG only needs v ↦ M v, so a metric is
a factory of such products; none forms M. ``actor.optim.metric`` picks one by name:

===========================  ==========================================  ===========================
name                         M(θ)                                        module
===========================  ==========================================  ===========================
``identity``                 I                                           :mod:`.fisher`
``fisher``                   ∇²KL(π_old‖π_θ) = E_s[Jᵀ F_out J]           :mod:`.fisher`
``empirical_fisher``         E_i[∇log π(a_i|s_i) ∇log π(a_i|s_i)ᵀ]       :mod:`.outer_product`
``gradient_covariance``      E_i[∇l_i ∇l_iᵀ]                             :mod:`.outer_product`
``gauss_newton``             E_s[Jᵀ J]                                   :mod:`.gauss_newton`
``generalized_gauss_newton`` E_s[Jᵀ H_y J]                               :mod:`.gauss_newton`
``hessian``                  H(θ) = ∇²L                                  :mod:`.hessian`
===========================  ==========================================  ===========================

Damping λI (docs/theory.md#damping) is added by the caller, not by the metric. The last two (and
GGN with the non-convex surrogate) may be indefinite; CG then stops at negative curvature.
:func:`fisher_vector_product` is the pure numerical piece of the Fisher metric (tested against
dense Fisher matrices).
"""

from __future__ import annotations

from rlopt.errors import ConfigError
from rlopt.trust_region.metrics.base import MatrixVectorProduct, Metric, MetricInputs
from rlopt.trust_region.metrics.fisher import FisherMetric, IdentityMetric, fisher_vector_product
from rlopt.trust_region.metrics.gauss_newton import GaussNewtonMetric, GeneralizedGaussNewtonMetric
from rlopt.trust_region.metrics.hessian import HessianMetric, hessian_vector_product
from rlopt.trust_region.metrics.outer_product import (
    EmpiricalFisherMetric,
    GradientCovarianceMetric,
    per_sample_gradients,
)

METRICS: dict[str, type[Metric]] = {
    metric.name: metric
    for metric in (
        FisherMetric,
        IdentityMetric,
        EmpiricalFisherMetric,
        GradientCovarianceMetric,
        GaussNewtonMetric,
        GeneralizedGaussNewtonMetric,
        HessianMetric,
    )
}
"""Every metric ``actor.optim.metric`` may name."""


def build_metric(name_or_metric: str | Metric, key: str = "actor.optim.metric") -> Metric:
    """A :class:`Metric` from its registered name (or the instance itself, returned as is)."""
    if isinstance(name_or_metric, Metric):
        return name_or_metric
    if isinstance(name_or_metric, str) and name_or_metric in METRICS:
        return METRICS[name_or_metric]()
    raise ConfigError(
        f"{key} must be one of {sorted(METRICS)} or a Metric instance, got {name_or_metric!r}"
    )


__all__ = [
    "METRICS",
    "EmpiricalFisherMetric",
    "FisherMetric",
    "GaussNewtonMetric",
    "GeneralizedGaussNewtonMetric",
    "GradientCovarianceMetric",
    "HessianMetric",
    "IdentityMetric",
    "MatrixVectorProduct",
    "Metric",
    "MetricInputs",
    "build_metric",
    "fisher_vector_product",
    "hessian_vector_product",
    "per_sample_gradients",
]
