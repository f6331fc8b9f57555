"""The defaults of the configuration that are derived from code rather than written in the
torch-free schema: the trust-region step's spec, from its hyper-parameter table
(:data:`rlopt.trust_region.hyperparameters.TRUST_REGION_HYPERPARAMETERS`)."""

from rlopt.optimizers.trust_region import DEFAULT_TRUST_REGION

__all__ = ["DEFAULT_TRUST_REGION"]
