"""The scheduled coefficients of a run, built in one place from the config.

A coefficient is ``base * schedule(update)`` (:class:`~rlopt.schedules.ScheduledValue`): the
entropy bonus ``entropy_coef``, PPO's clip range ``ppo.clip`` and, when the actor step is the
trust region, its radius ``actor.optim.max_kl``. Learners read them by config key at each
update; config validation builds the same objects, so both accept exactly the same specs.

:func:`refit_schedules` is the one rule for a run whose length changes (``rlopt train --resume
RUN --total-steps N``, a second ``agent.learn``): learning rates and coefficients alike.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import torch

from rlopt.errors import ConfigError
from rlopt.schedules import ScheduledValue, Warmup, parse_scheduled_value, refit_lr_scheduler
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


def refit_schedules(
    lr_schedulers: Mapping[str, torch.optim.lr_scheduler.LambdaLR | None],
    coefficients: MutableMapping[str, ScheduledValue],
    update: int,
    total_updates: int,
    previous_total_updates: int,
) -> list[str]:
    """Re-fit every schedule of a run to ``total_updates`` updates, from update ``update`` on.

    The rule (issue 12, extending a run): each schedule becomes the one a run configured with
    ``total_updates`` updates from the start has, at the same update. A linear or cosine schedule
    (with or without warm-up) keeps its start and end values and is stretched to the new
    horizon, so a linear lr that reached 0 at the old end resumes at ``lr0 · (1 − update /
    total_updates)``; ``constant``, ``step``, ``inverse_sqrt`` and ``cosine_restarts`` do not
    depend on the run length and continue unchanged. ``lr_schedulers`` maps a label (``"actor
    lr"``) to a scheduler or None; ``coefficients`` is updated in place. Returns one phrase per
    schedule whose value changes, e.g. ``"actor lr linear re-fitted to 60 updates: 0.0015 at
    update 30 (was 0)"``; "was" is the value under ``previous_total_updates``.
    """
    changed: list[str] = []

    def report(label: str, schedule: Any, old: float, new: float) -> None:
        if schedule.refit(previous_total_updates) != schedule.refit(total_updates):
            kind = f"{schedule.inner.name} (after warm-up)" if isinstance(schedule, Warmup) else schedule.name
            changed.append(f"{label} {kind} re-fitted to {total_updates:,} updates: {new:.3g} at update {update:,} "
                           f"(was {old:.3g})")  # fmt: skip

    for label, scheduler in lr_schedulers.items():
        if scheduler is None:
            continue
        schedule = scheduler.lr_lambdas[0]
        old = scheduler.base_lrs[0] * schedule.refit(previous_total_updates)(update)
        refit_lr_scheduler(scheduler, total_updates, update)
        report(label, schedule, old, scheduler.optimizer.param_groups[0]["lr"])
    for key, value in list(coefficients.items()):
        old = value.refit(previous_total_updates).value(update)
        coefficients[key] = value.refit(total_updates)
        report(key, value.schedule, old, coefficients[key].value(update))
    return changed
