"""The scheduled coefficients of a run, built in one place from the config.

A coefficient is ``base * schedule(update)`` (:class:`~rlopt.schedules.ScheduledValue`): the
entropy bonus ``entropy_coef``, PPO's clip range ``ppo.clip`` and, when the actor step is the
trust region, its radius ``actor.optim.max_kl``. Learners read them by config key at each
update; config validation builds the same objects, so both accept exactly the same specs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlopt.errors import ConfigError
from rlopt.schedules import ScheduledValue, parse_scheduled_value
from rlopt.trust_region.build import TRUST_REGION_NAME, trust_region_radius

if TYPE_CHECKING:  # rlopt.config's validation builds the coefficients too
    from rlopt.config.schema import Config


def build_coefficients(cfg: Config) -> dict[str, ScheduledValue]:
    """``{config key: ScheduledValue}`` over ``cfg.num_updates`` updates; bad specs raise a one-line
    :class:`ConfigError` naming the key."""
    horizon = cfg.num_updates
    specs: dict[str, Any] = {"entropy_coef": cfg.entropy_coef, "ppo.clip": cfg.ppo.clip}
    out: dict[str, ScheduledValue] = {}
    for key, raw in specs.items():
        try:
            out[key] = parse_scheduled_value(raw, horizon, key=key)
        except ConfigError:
            raise
        except (TypeError, ValueError, OverflowError) as err:  # e.g. a schedule option of the wrong type
            raise ConfigError(f"{key}: invalid value ({type(err).__name__}: {' '.join(str(err).split())})") from None
    if cfg.actor.optim.get("name") == TRUST_REGION_NAME:
        out["actor.optim.max_kl"] = trust_region_radius(cfg.actor.optim, horizon, key="actor.optim")
    return out
