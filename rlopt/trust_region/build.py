"""One builder of the trust-region optimizer from a config spec, shared by the learners that use it
and by config validation (so the two can never parse ``actor.optim`` differently).

A spec is ``{name: trust_region, <TrustRegion keyword>: value, ...}``; ``max_kl`` may be a number or
a schedule ``{value, name, ...}`` over ``horizon`` updates (the optimizer starts at its value at
update 0; the learner writes later values into ``param_groups[0]["max_kl"]``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from rlopt.errors import ConfigError
from rlopt.schedules import ScheduledValue, parse_scheduled_value
from rlopt.trust_region.optimizer import TrustRegion

TRUST_REGION_NAME = "trust_region"
"""``actor.optim.name`` of the trust-region step."""
TRUST_REGION_OPTIONS: tuple[str, ...] = tuple(
    name for name in inspect.signature(TrustRegion.__init__).parameters if name not in ("self", "params")
)
"""Keywords a spec may set besides ``name``: exactly the constructor's."""
_DEFAULT_MAX_KL: float = inspect.signature(TrustRegion.__init__).parameters["max_kl"].default


def trust_region_radius(spec: Mapping[str, Any], horizon: int, key: str = "actor.optim") -> ScheduledValue:
    """The trust radius δ of ``spec`` over ``horizon`` updates (a constant or a schedule)."""
    return parse_scheduled_value(spec.get("max_kl", _DEFAULT_MAX_KL), horizon, key=f"{key}.max_kl")


def build_trust_region(
    params: Iterable[Tensor], spec: Mapping[str, Any], horizon: int, key: str = "actor.optim"
) -> TrustRegion:
    """A :class:`TrustRegion` over ``params`` from ``spec``; bad specs raise a one-line
    :class:`ConfigError` naming ``key.<option>`` (unknown option, out of range, wrong type)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: must be a mapping {{name: {TRUST_REGION_NAME}, ...}}, got {spec!r}")
    name = spec.get("name", TRUST_REGION_NAME)
    if name != TRUST_REGION_NAME:
        raise ConfigError(f"{key}.name: build_trust_region builds {TRUST_REGION_NAME!r}, got {name!r}")
    kwargs = {option: value for option, value in spec.items() if option != "name"}
    for option in kwargs:
        if option not in TRUST_REGION_OPTIONS:
            raise ConfigError(
                f"{key}.{option}: unknown option for {TRUST_REGION_NAME}; "
                f"accepted: name, {', '.join(TRUST_REGION_OPTIONS)}"
            )
    try:
        kwargs["max_kl"] = trust_region_radius(spec, horizon, key).value(0)
        return TrustRegion(params, **kwargs)
    except ConfigError as err:  # TrustRegion names the bare option ("cg_iters must be ..."): prefix the key
        message = str(err)
        raise ConfigError(f"{key}.{message}" if message.split(" ")[0] in TRUST_REGION_OPTIONS else message) from None
    except (TypeError, ValueError, OverflowError) as err:  # e.g. float(10**400), "<" between str and float
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"{key}: invalid value ({type(err).__name__}: {detail})") from None
