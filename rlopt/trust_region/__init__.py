"""Trust-region updates (docs/theory.md#trust-region-step): flat views, CG, metrics M(θ), solvers, line search, the
optimizer (its hyper-parameters declared once in :mod:`.hyperparameters`), and
``build_trust_region`` (config spec → optimizer, which the ``trust_region`` optimizer family of
:mod:`rlopt.optimizers` builds through)."""

from rlopt.trust_region.build import (
    TRUST_REGION_NAME,
    TRUST_REGION_OPTIONS,
    build_trust_region,
    trust_region_radius,
)
from rlopt.trust_region.hyperparameters import TRUST_REGION_HYPERPARAMETERS
from rlopt.trust_region.cg import CGResult, conjugate_gradient
from rlopt.trust_region.flat import (
    flat_grad,
    flat_params,
    set_flat_params_,
)
from rlopt.trust_region.line_search import LineSearchResult, backtracking_line_search
from rlopt.trust_region.metrics import (
    METRICS,
    EmpiricalFisherMetric,
    FisherMetric,
    GaussNewtonMetric,
    GeneralizedGaussNewtonMetric,
    GradientCovarianceMetric,
    HessianMetric,
    IdentityMetric,
    Metric,
    MetricInputs,
    build_metric,
    fisher_vector_product,
)
from rlopt.trust_region.optimizer import TrustRegion, TrustRegionStats, propose_step

__all__ = [
    "TRUST_REGION_HYPERPARAMETERS",
    "TRUST_REGION_NAME",
    "TRUST_REGION_OPTIONS",
    "build_trust_region",
    "trust_region_radius",
    "CGResult",
    "EmpiricalFisherMetric",
    "FisherMetric",
    "GaussNewtonMetric",
    "GeneralizedGaussNewtonMetric",
    "GradientCovarianceMetric",
    "HessianMetric",
    "IdentityMetric",
    "LineSearchResult",
    "METRICS",
    "Metric",
    "MetricInputs",
    "TrustRegion",
    "TrustRegionStats",
    "backtracking_line_search",
    "build_metric",
    "conjugate_gradient",
    "fisher_vector_product",
    "flat_grad",
    "flat_params",
    "propose_step",
    "set_flat_params_",
]
