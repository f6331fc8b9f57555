"""Trust-region updates (seed 003): flat views, CG, metrics M(θ), line search, optimizer."""

from rlopt.trust_region.cg import CGResult, conjugate_gradient
from rlopt.trust_region.flat import (
    flat_grad,
    flat_param_grads,
    flat_params,
    set_flat_grads_,
    set_flat_params_,
)
from rlopt.trust_region.line_search import LineSearchResult, backtracking_line_search
from rlopt.trust_region.metrics import (
    METRICS,
    FisherMetric,
    IdentityMetric,
    Metric,
    build_metric,
    fisher_vector_product,
    kl_hessian_vector_product,
)
from rlopt.trust_region.optimizer import TrustRegion, TrustRegionStats, propose_step

__all__ = [
    "CGResult",
    "FisherMetric",
    "IdentityMetric",
    "LineSearchResult",
    "METRICS",
    "Metric",
    "TrustRegion",
    "TrustRegionStats",
    "backtracking_line_search",
    "build_metric",
    "conjugate_gradient",
    "fisher_vector_product",
    "flat_grad",
    "flat_param_grads",
    "flat_params",
    "kl_hessian_vector_product",
    "propose_step",
    "set_flat_grads_",
    "set_flat_params_",
]
