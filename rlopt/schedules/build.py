"""Schedules and scheduled values from config specs.

Middle of :mod:`rlopt.schedules`: :func:`build_schedule` turns a spec ``{"name": ..., <kwargs>,
"warmup_steps": ..., "warmup_start_factor": ...}`` into a schedule of
:mod:`rlopt.schedules.closed_forms`; :class:`ScheduledValue` / :func:`parse_scheduled_value` make a
value ``base · schedule(t)`` (a loss coefficient, or an optimizer option such as ``max_kl``), and
:func:`scheduled_values` reads the scheduled options of an optimizer spec. Putting them on an
optimizer's param groups is :mod:`rlopt.schedules.param_groups`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from rlopt.errors import ConfigError
from rlopt.options import reject_unknown_options
from rlopt.schedules.closed_forms import (
    SCHEDULE_CLASSES,
    SCHEDULE_NAMES,
    Constant,
    Schedule,
    Warmup,
    schedule_from_state_dict,
)
from rlopt.schedules.fields import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, is_real

_HORIZON_SCHEDULES = frozenset({"linear", "cosine"})
"""Schedules whose ``horizon`` is the run's update count (minus the warm-up), not a config option."""

_WARMUP_OPTIONS = {"warmup_steps": NON_NEGATIVE_INT, "warmup_start_factor": NON_NEGATIVE}


def _spec_options(cls: type[Schedule]) -> dict[str, bool]:
    """Config-settable constructor arguments of ``cls`` -> whether each is required."""
    signature = inspect.signature(cls.__init__)
    return {
        arg: param.default is inspect.Parameter.empty
        for arg, param in signature.parameters.items()
        if arg not in ("self", "horizon")
    }


def build_schedule(
    spec: Mapping[str, Any] | None, horizon: int, key: str = "schedule"
) -> Schedule:
    """Build ``{"name": ..., <kwargs>, "warmup_steps": w, "warmup_start_factor": s}``.

    ``horizon`` is the total number of updates; linear and cosine decay over ``horizon - w``
    updates after the warm-up. ``None`` gives :class:`Constant`. Bad input raises ConfigError
    naming ``<key>.<field>`` and what is allowed.
    """
    if spec is None:
        return Constant()
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: must be a mapping with a 'name' or null, got {spec!r}")
    horizon = POSITIVE_INT.check(horizon, f"{key} horizon (total updates)")
    name = spec.get("name")
    if name not in SCHEDULE_NAMES:
        raise ConfigError(
            f"{key}.name: unknown schedule {name!r}; valid: {', '.join(SCHEDULE_NAMES)}"
        )
    cls = SCHEDULE_CLASSES[name]
    options = _spec_options(cls)
    reject_unknown_options(spec, [*options, *_WARMUP_OPTIONS], f"schedule {name!r}", key)
    for field, required in options.items():
        if required and field not in spec:
            raise ConfigError(f"{key}.{field}: required for schedule {name!r}")

    warmup = {f: check.check(spec.get(f, 0), f"{key}.{f}") for f, check in _WARMUP_OPTIONS.items()}
    kwargs = {f: cls.fields[f].check(spec[f], f"{key}.{f}") for f in options if f in spec}
    if name in _HORIZON_SCHEDULES:
        inner_horizon = horizon - warmup["warmup_steps"]
        if inner_horizon < 1:
            raise ConfigError(
                f"{key}.warmup_steps: must be < the horizon ({horizon} updates) for schedule "
                f"{name!r}, got {warmup['warmup_steps']}"
            )
        kwargs["horizon"] = inner_horizon
    schedule = cls(**kwargs)
    if warmup["warmup_steps"] == 0:
        return schedule
    return Warmup(schedule, warmup["warmup_steps"], warmup["warmup_start_factor"])


class ScheduledValue:
    """A coefficient ``base * schedule(step)`` (entropy coefficient, PPO clip range, max KL)."""

    def __init__(self, base: float, schedule: Schedule | None = None) -> None:
        if not (is_real(base) and math.isfinite(float(base))):
            raise ConfigError(f"ScheduledValue.base: must be a finite number, got {base!r}")
        self.base = float(base)
        self.schedule = schedule if schedule is not None else Constant()

    def value(self, step: int) -> float:
        """The coefficient at update ``step``."""
        return self.base * self.schedule(step)

    def refit(self, total_updates: int) -> ScheduledValue:
        """This coefficient over a run of ``total_updates`` updates (:meth:`Schedule.refit`)."""
        return ScheduledValue(self.base, self.schedule.refit(total_updates))

    def refit_in_place(self, total_updates: int) -> None:
        """:meth:`refit`, in place: whoever shares this value (a param-group scheduler) sees it."""
        self.schedule = self.schedule.refit(total_updates)

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base = float(state["base"])
        self.schedule = schedule_from_state_dict(state["schedule"])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ScheduledValue)
            and self.base == other.base
            and self.schedule == other.schedule
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ScheduledValue(base={self.base!r}, schedule={self.schedule!r})"


def parse_scheduled_value(raw: Any, horizon: int, key: str) -> ScheduledValue:
    """A number (constant) or ``{"value": v, "name": ..., <schedule kwargs>}`` -> ScheduledValue.

    A mapping without ``name`` is constant (warm-up options still apply with ``name: constant``).
    """
    if is_real(raw):
        if not math.isfinite(float(raw)):
            raise ConfigError(f"{key}: must be finite, got {raw!r}")
        return ScheduledValue(float(raw), Constant())
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{key}: must be a number or a mapping with 'value' and schedule options, got {raw!r}"
        )
    if "value" not in raw:
        raise ConfigError(f"{key}.value: required (the base value the schedule multiplies)")
    base = raw["value"]
    if not (is_real(base) and math.isfinite(float(base))):
        raise ConfigError(f"{key}.value: must be a finite number, got {base!r}")
    rest = {k: v for k, v in raw.items() if k != "value"}
    schedule_spec = {"name": "constant", **rest} if "name" not in rest else rest
    return ScheduledValue(float(base), build_schedule(schedule_spec, horizon, key=key))


def scheduled_values(
    spec: Mapping[str, Any], scheduled: Mapping[str, float], horizon: int, key: str
) -> dict[str, ScheduledValue]:
    """The options of an optimizer ``spec`` that may be schedules (``scheduled``: option -> default),
    each a :class:`ScheduledValue` over ``horizon`` updates (its default when the spec leaves it out);
    errors name ``<key>.<option>``."""
    out: dict[str, ScheduledValue] = {}
    for option, default in scheduled.items():
        where = f"{key}.{option}"
        try:
            out[option] = parse_scheduled_value(spec.get(option, default), horizon, key=where)
        except ConfigError:
            raise
        except (TypeError, ValueError, OverflowError) as err:  # e.g. a schedule option of the wrong type
            raise ConfigError(f"{where}: invalid value ({type(err).__name__}: {' '.join(str(err).split())})") from None
    return out


def value_at_start(spec: Mapping[str, Any], scheduled: Mapping[str, float], horizon: int, key: str) -> dict[str, Any]:
    """``spec`` with each scheduled option it sets replaced by its value at update 0 (what an
    optimizer is built with; the param-group scheduler takes over from there)."""
    present = {option: default for option, default in scheduled.items() if option in spec}
    starts = {option: value.value(0) for option, value in scheduled_values(spec, present, horizon, key).items()}
    return {**spec, **starts}
