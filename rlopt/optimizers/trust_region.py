"""The ``trust_region`` family: the actor step of the trust-region agents (NPG, TRPO, ACKTR), a
:class:`~rlopt.trust_region.TrustRegion` built by :func:`~rlopt.trust_region.build.trust_region_from_spec`.

Its options are :data:`~rlopt.trust_region.hyperparameters.TRUST_REGION_HYPERPARAMETERS`, from which
:data:`DEFAULT_TRUST_REGION` (the schema's default spec, ``rlopt.config.DEFAULT_TRUST_REGION``) is
derived; ``max_kl`` may be a schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from rlopt.optimizers.family import OptimizerFamily
from rlopt.trust_region import TrustRegion
from rlopt.trust_region.build import SCHEDULED_OPTIONS, TRUST_REGION_NAME, trust_region_from_spec
from rlopt.trust_region.hyperparameters import TRUST_REGION_HYPERPARAMETERS, TRUST_REGION_OPTIONS

DEFAULT_TRUST_REGION: dict[str, Any] = {
    "name": TRUST_REGION_NAME,
    **{name: option.default for name, option in TRUST_REGION_HYPERPARAMETERS.items() if name != "line_search"},
}
"""The trust-region spec's defaults (the optimizer's own). ``line_search`` is not here: it is what
tells the two trust-region agent classes apart, so each one sets it."""


class TrustRegionFamily(OptimizerFamily):
    """``trust_region``: the actor's trust-region step (exact name: it is an agent's actor step)."""

    label: ClassVar[str] = TRUST_REGION_NAME
    roles: ClassVar[tuple[str, ...]] = ("actor",)
    scheduled: ClassVar[Mapping[str, float]] = SCHEDULED_OPTIONS
    needs: ClassVar[str] = "a trust-region update, built by rlopt.optimizers.build"

    def names(self) -> tuple[str, ...]:
        return (TRUST_REGION_NAME,)

    def owns(self, name: str) -> bool:
        return name == TRUST_REGION_NAME

    def options(self, name: str) -> tuple[str, ...]:
        return TRUST_REGION_OPTIONS

    def build(self, module: nn.Module, spec: Mapping[str, Any], key: str) -> TrustRegion:
        return trust_region_from_spec(module.parameters(), spec, key)

    def wrong_role(self, key: str) -> str:
        return (f"{key}.name: trust_region is the actor step of the trust-region agents; "
                f"the {key.split('.')[0]} takes a torch.optim name or kfac")  # fmt: skip


TRUST_REGION_FAMILY = TrustRegionFamily()
"""The registry entry."""
