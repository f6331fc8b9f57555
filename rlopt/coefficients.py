"""The scheduled values of a run, built in one place from the config.

Each is ``base * schedule(update)`` (:class:`~rlopt.schedules.ScheduledValue`), keyed by its config
key. Two kinds, one mechanism each:

* the loss coefficients (:data:`LOSS_COEFFICIENTS`: the entropy bonus ``entropy_coef`` and PPO's
  clip range ``ppo.clip``), read by the agents' losses at each update (``agent.coefficient(key)``);
* the scheduled options of the optimizer specs (``actor.optim.max_kl`` of the trust-region step),
  declared by their optimizer family and put on the optimizer's param groups, with ``lr``, by its
  :class:`~rlopt.schedules.ParamGroupScheduler` (:func:`param_group_values`).

Config validation builds the same objects, so both accept exactly the same specs.
:func:`refit_run_length` is the one rule for a run whose length changes (``rlopt train --resume RUN
--total-steps N``, a second ``agent.learn``): learning rates, optimizer options and coefficients alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

from rlopt import optimizers
from rlopt.errors import ConfigError
from rlopt.schedules import ParamGroupScheduler, ScheduledValue, Warmup, parse_scheduled_value

if TYPE_CHECKING:  # rlopt.config's validation builds the coefficients too
    from rlopt.config.schema import Config


def _check_entropy(value: ScheduledValue, horizon: int) -> None:
    lowest = min(value.base, value.value(0), value.value(horizon))  # start and end of its schedule
    if lowest < 0:
        raise ConfigError(f"entropy_coef must be >= 0 (a bonus for entropy), got {lowest:g}")


def _check_clip(value: ScheduledValue, horizon: int) -> None:
    if not value.base > 0:
        raise ConfigError(f"ppo.clip must be > 0 (the clip range ε of the ratio), got {value.base}")


LOSS_COEFFICIENTS: dict[str, Callable[[ScheduledValue, int], None]] = {
    "entropy_coef": _check_entropy,
    "ppo.clip": _check_clip,
}
"""Every loss coefficient by its config key (its default is the schema's) and its range check."""
OPTIMIZER_SECTIONS = ("actor", "critic")
"""The config sections whose ``optim`` spec may hold scheduled options."""


def build_coefficients(cfg: Config) -> dict[str, ScheduledValue]:
    """``{config key: ScheduledValue}`` over ``cfg.num_updates`` updates: the loss coefficients, then
    the optimizer specs' scheduled options; bad specs raise a one-line :class:`ConfigError` naming the key."""
    horizon = cfg.num_updates
    out: dict[str, ScheduledValue] = {}
    for key, check in LOSS_COEFFICIENTS.items():
        try:
            out[key] = parse_scheduled_value(attrgetter(key)(cfg), horizon, key=key)
        except ConfigError:
            raise
        except (TypeError, ValueError, OverflowError) as err:  # e.g. a schedule option of the wrong type
            raise ConfigError(f"{key}: invalid value ({type(err).__name__}: {' '.join(str(err).split())})") from None
        check(out[key], horizon)
    for section in OPTIMIZER_SECTIONS:
        key = f"{section}.optim"
        values = optimizers.scheduled_options(attrgetter(key)(cfg), horizon, key)
        out.update((f"{key}.{option}", value) for option, value in values.items())
    return out


def param_group_values(coefficients: Mapping[str, ScheduledValue], section: str) -> dict[str, ScheduledValue]:
    """The scheduled options of ``<section>.optim`` by param-group key (``{"max_kl": ...}``), the
    objects of ``coefficients`` themselves (so a re-fit of one is a re-fit of the other)."""
    prefix = f"{section}.optim."
    return {key[len(prefix) :]: value for key, value in coefficients.items() if key.startswith(prefix)}


def refit_schedules(
    lr_schedulers: Mapping[str, ParamGroupScheduler | None],
    coefficients: MutableMapping[str, ScheduledValue],
    update: int,
    total_updates: int,
    previous_total_updates: int,
) -> list[str]:
    """Re-fit every schedule of a run to ``total_updates`` updates, from update ``update`` on.

    The rule (extending a run): each schedule becomes the one a run configured with
    ``total_updates`` updates from the start has, at the same update. A linear or cosine schedule
    (with or without warm-up) keeps its start and end values and is stretched to the new
    horizon, so a linear lr that reached 0 at the old end resumes at ``lr0 · (1 − update /
    total_updates)``; ``constant``, ``step``, ``inverse_sqrt`` and ``cosine_restarts`` do not
    depend on the run length and continue unchanged. ``lr_schedulers`` maps a label (``"actor
    lr"``) to a scheduler or None; ``coefficients`` are re-fitted in place (the schedulers share the
    optimizer options among them). Returns one phrase per schedule whose value changes, e.g.
    ``"actor lr linear re-fitted to 60 updates: 0.0015 at update 30 (was 0)"``; "was" is the value
    under ``previous_total_updates``.
    """
    lr_changes: list[str] = []
    value_changes: list[str] = []

    def report(into: list[str], label: str, schedule: Any, old: float, new: float) -> None:
        if schedule.refit(previous_total_updates) != schedule.refit(total_updates):
            kind = f"{schedule.inner.name} (after warm-up)" if isinstance(schedule, Warmup) else schedule.name
            into.append(f"{label} {kind} re-fitted to {total_updates:,} updates: {new:.3g} at update {update:,} "
                        f"(was {old:.3g})")  # fmt: skip

    for key, value in coefficients.items():  # first: the schedulers re-apply the shared options
        old, schedule = value.refit(previous_total_updates).value(update), value.schedule
        value.refit_in_place(total_updates)
        report(value_changes, key, schedule, old, value.value(update))
    for label, scheduler in lr_schedulers.items():
        if scheduler is None:
            continue
        schedule = scheduler.lr_lambdas[0]
        old = scheduler.base_lrs[0] * schedule.refit(previous_total_updates)(update)
        scheduler.refit(total_updates, update)
        report(lr_changes, label, schedule, old, scheduler.optimizer.param_groups[0]["lr"])
    return lr_changes + value_changes


class ScheduledAgent(Protocol):
    """What :func:`refit_run_length` reads of an agent."""

    actor_scheduler: ParamGroupScheduler
    critic_scheduler: ParamGroupScheduler | None
    coefficients: MutableMapping[str, ScheduledValue]
    updates_done: int


def refit_run_length(agent: ScheduledAgent, total_updates: int, previous_total_updates: int) -> list[str]:
    """Re-fit every schedule of ``agent`` (its lrs, optimizer options and coefficients) to a run of
    ``total_updates`` updates from its current update (:func:`refit_schedules`); the phrases say what
    changed. The one call of ``rlopt train --resume --total-steps`` and of ``agent.learn``."""
    schedulers = {"actor lr": agent.actor_scheduler, "critic lr": agent.critic_scheduler}
    return refit_schedules(schedulers, agent.coefficients, agent.updates_done, total_updates, previous_total_updates)
