"""One builder of the trust-region optimizer from a config spec, shared by the ``trust_region``
optimizer family (:mod:`rlopt.optimizers.trust_region`) and the tests.

A spec is ``{name: trust_region, <TrustRegion keyword>: value, ...}``; ``max_kl`` may be a number or
a schedule ``{value, name, ...}`` over ``horizon`` updates (the optimizer starts at its value at
update 0; the agent's param-group scheduler sets later values, as it does for ``lr``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.options import errors_under, reject_unknown_options
from rlopt.schedules import ScheduledValue, parse_scheduled_value, value_at_start
from rlopt.trust_region.hyperparameters import TRUST_REGION_HYPERPARAMETERS, TRUST_REGION_OPTIONS
from rlopt.trust_region.optimizer import TrustRegion

TRUST_REGION_NAME = "trust_region"
"""``actor.optim.name`` of the trust-region step."""
SCHEDULED_OPTIONS: dict[str, float] = {"max_kl": TRUST_REGION_HYPERPARAMETERS["max_kl"].default}
"""Options a spec may give as a schedule ``{value, name, ...}``, with their defaults."""


def trust_region_radius(spec: Mapping[str, Any], horizon: int, key: str = "actor.optim") -> ScheduledValue:
    """The trust radius δ of ``spec`` over ``horizon`` updates (a constant or a schedule)."""
    return parse_scheduled_value(spec.get("max_kl", SCHEDULED_OPTIONS["max_kl"]), horizon, key=f"{key}.max_kl")


def trust_region_from_spec(params: Iterable[Tensor], spec: Mapping[str, Any], key: str = "actor.optim") -> TrustRegion:
    """A :class:`TrustRegion` over ``params`` from a spec of plain values (no schedule); bad specs
    raise a one-line :class:`ConfigError` naming ``key.<option>``."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: must be a mapping {{name: {TRUST_REGION_NAME}, ...}}, got {spec!r}")
    name = spec.get("name", TRUST_REGION_NAME)
    if name != TRUST_REGION_NAME:
        raise ConfigError(f"{key}.name: build_trust_region builds {TRUST_REGION_NAME!r}, got {name!r}")
    reject_unknown_options(spec, TRUST_REGION_OPTIONS, TRUST_REGION_NAME, key)
    try:
        with errors_under(key, TRUST_REGION_OPTIONS):
            return TrustRegion(params, **{option: value for option, value in spec.items() if option != "name"})
    except (TypeError, ValueError, OverflowError) as err:  # e.g. float(10**400), "<" between str and float
        if isinstance(err, ConfigError):
            raise
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"{key}: invalid value ({type(err).__name__}: {detail})") from None


def build_trust_region(
    params: Iterable[Tensor], spec: Mapping[str, Any], horizon: int, key: str = "actor.optim"
) -> TrustRegion:
    """A :class:`TrustRegion` over ``params`` from ``spec``, a scheduled ``max_kl`` taken at update 0."""
    if isinstance(spec, Mapping):
        reject_unknown_options(spec, TRUST_REGION_OPTIONS, TRUST_REGION_NAME, key)
        spec = value_at_start(spec, SCHEDULED_OPTIONS, horizon, key)
    return trust_region_from_spec(params, spec, key)
