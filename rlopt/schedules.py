"""Picklable schedules: an update count t = 0, 1, 2, ... (one per policy update) -> a factor.

One family serves learning rates (through :func:`build_lr_scheduler`, a ``LambdaLR``) and scalar
coefficients such as the entropy coefficient, the PPO clip range or the TRPO KL radius (through
:class:`ScheduledValue`). Every schedule is a closed form of t (seed 000 §4), is a plain class
(never a lambda or closure, which break pickling: SB3 #2115, Tianshou #992) and keeps only plain
python values in ``__dict__``. ``LambdaLR.state_dict()`` copies that ``__dict__``, so a scheduler
state dict stays plain data and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rlopt.errors import ConfigError

__all__ = [
    "SCHEDULE_NAMES",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "InverseSqrt",
    "Linear",
    "Schedule",
    "ScheduledValue",
    "StepDecay",
    "Warmup",
    "build_lr_scheduler",
    "build_schedule",
    "parse_scheduled_value",
    "schedule_from_state_dict",
]


# --------------------------------------------------------------------------------------------
# Field validation shared by constructors, load_state_dict and build_schedule.
# --------------------------------------------------------------------------------------------


def _is_real(value: Any) -> bool:
    """True for ints/floats (python or numpy), False for bools, which YAML typos produce."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Number:
    """A numeric field: ``integer`` or real, finite, with bounds ``low <=/< value <= high``."""

    integer: bool
    low: float
    low_inclusive: bool = True
    high: float | None = None

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number"
        bound = f"{'>=' if self.low_inclusive else '>'} {self.low:g}"
        if self.high is not None:
            bound += f" and <= {self.high:g}"
        return f"{kind} {bound}"

    def check(self, value: Any, where: str) -> int | float:
        """Return ``value`` as int/float or raise ConfigError naming ``where``."""
        if self.integer:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        else:
            ok = _is_real(value) and math.isfinite(float(value))
        if ok:
            number = int(value) if self.integer else float(value)
            above = number >= self.low if self.low_inclusive else number > self.low
            if above and (self.high is None or number <= self.high):
                return number
        raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")


@dataclass(frozen=True)
class _ScheduleState:
    """A nested schedule kept as its plain state dict (see :class:`Warmup`)."""

    def describe(self) -> str:
        return "a schedule state dict"

    def check(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")
        # Building the schedule validates every nested field.
        return schedule_from_state_dict(value, key=where).state_dict()


_POSITIVE_INT = _Number(integer=True, low=1)
_NON_NEGATIVE_INT = _Number(integer=True, low=0)
_NON_NEGATIVE = _Number(integer=False, low=0.0)
_POSITIVE = _Number(integer=False, low=0.0, low_inclusive=False)
_UNIT_INTERVAL = _Number(integer=False, low=0.0, high=1.0)


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


class Schedule:
    """Maps an integer update count ``step`` >= 0 to a multiplicative factor of a base value.

    Subclasses declare ``name`` (the config name) and ``fields`` (validators for every
    constructor argument, which are also the instance attributes and the state-dict keys).
    """

    name: ClassVar[str]
    fields: ClassVar[Mapping[str, Any]]

    def _assign(self, values: Mapping[str, Any], where: str | None = None) -> None:
        """Validate ``values`` against ``fields`` and store them as attributes."""
        prefix = where if where is not None else type(self).__name__
        unknown = sorted(set(values) - set(self.fields))
        missing = sorted(set(self.fields) - set(values))
        if unknown or missing:
            raise ConfigError(
                f"{prefix}: {type(self).__name__} state needs exactly "
                f"{', '.join(self.fields)}; unknown {unknown}, missing {missing}"
            )
        checked = {f: self.fields[f].check(values[f], f"{prefix}.{f}") for f in self.fields}
        self.__dict__.update(checked)

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Plain python values: ``{"name": ..., <field>: ...}``."""
        return {"name": self.name, **copy.deepcopy(self.__dict__)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the fields from :meth:`state_dict` output (validated)."""
        if state.get("name") != self.name:
            raise ConfigError(
                f"{type(self).__name__}.load_state_dict: state is for schedule "
                f"{state.get('name')!r}, expected {self.name!r}"
            )
        self._assign({k: v for k, v in state.items() if k != "name"})

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable through load_state_dict

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """Factor 1 at every step."""

    name = "constant"
    fields: ClassVar[Mapping[str, Any]] = {}

    def __init__(self) -> None:
        self._assign({})

    def __call__(self, step: int) -> float:
        return 1.0


class Linear(Schedule):
    """1 + (end_factor - 1) * min(t / T, 1): linear from 1 to ``end_factor`` over T updates."""

    name = "linear"
    fields: ClassVar[Mapping[str, Any]] = {"horizon": _POSITIVE_INT, "end_factor": _NON_NEGATIVE}

    horizon: int
    end_factor: float

    def __init__(self, horizon: int, end_factor: float = 0.0) -> None:
        self._assign({"horizon": horizon, "end_factor": end_factor})

    def __call__(self, step: int) -> float:
        progress = min(step / self.horizon, 1.0)
        return 1.0 + (self.end_factor - 1.0) * progress


class StepDecay(Schedule):
    """gamma ** floor(t / step_size) (seed 000 §4, step decay)."""

    name = "step"
    fields: ClassVar[Mapping[str, Any]] = {"step_size": _POSITIVE_INT, "gamma": _POSITIVE}

    step_size: int
    gamma: float

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self._assign({"step_size": step_size, "gamma": gamma})

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


class InverseSqrt(Schedule):
    """1 / sqrt(1 + t / timescale); with timescale 1 and k = t + 1 this is seed 000's 1/sqrt(k)."""

    name = "inverse_sqrt"
    fields: ClassVar[Mapping[str, Any]] = {"timescale": _POSITIVE}

    timescale: float

    def __init__(self, timescale: float = 1.0) -> None:
        self._assign({"timescale": timescale})

    def __call__(self, step: int) -> float:
        return 1.0 / math.sqrt(1.0 + step / self.timescale)


def _cosine_factor(elapsed: float, length: float, min_factor: float) -> float:
    """m + (1 - m) * (1 + cos(pi * elapsed / length)) / 2 (seed 000 §4, cosine decay)."""
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * elapsed / length))


class Cosine(Schedule):
    """Cosine decay from 1 to ``min_factor`` over T updates, then held at ``min_factor``."""

    name = "cosine"
    fields: ClassVar[Mapping[str, Any]] = {"horizon": _POSITIVE_INT, "min_factor": _UNIT_INTERVAL}

    horizon: int
    min_factor: float

    def __init__(self, horizon: int, min_factor: float = 0.0) -> None:
        self._assign({"horizon": horizon, "min_factor": min_factor})

    def __call__(self, step: int) -> float:
        return _cosine_factor(min(step, self.horizon), self.horizon, self.min_factor)


class CosineRestarts(Schedule):
    """SGDR (Loshchilov & Hutter, 2017, eq. 5): cosine decay restarted at the end of each cycle.

    Cycle i lasts T_i = period * period_mult**i updates; inside it the factor is the cosine decay
    of the elapsed count t_cur, so it jumps back to 1 at every restart.
    """

    name = "cosine_restarts"
    fields: ClassVar[Mapping[str, Any]] = {
        "period": _POSITIVE_INT,
        "period_mult": _POSITIVE_INT,
        "min_factor": _UNIT_INTERVAL,
    }

    period: int
    period_mult: int
    min_factor: float

    def __init__(self, period: int, period_mult: int = 1, min_factor: float = 0.0) -> None:
        self._assign({"period": period, "period_mult": period_mult, "min_factor": min_factor})

    def cycle_position(self, step: int) -> tuple[int, int]:
        """(t_cur, T_i): elapsed updates in the current cycle and that cycle's length."""
        if self.period_mult == 1:
            return step % self.period, self.period
        # Integer walk over cycles: O(log t) iterations, exact at the boundaries (a closed form
        # via log(t) / log(mult) can land on the wrong side of a restart in floating point).
        elapsed, length = step, self.period
        while elapsed >= length:
            elapsed -= length
            length *= self.period_mult
        return elapsed, length

    def __call__(self, step: int) -> float:
        elapsed, length = self.cycle_position(step)
        return _cosine_factor(elapsed, length, self.min_factor)


class Warmup(Schedule):
    """Linear warm-up from ``start_factor`` to 1 over ``warmup_steps`` updates, then inner(t - w).

    The inner schedule is held as its plain state dict (``inner_state``) so the whole object,
    and a ``LambdaLR`` state dict built on it, is plain python data.
    """

    name = "warmup"
    fields: ClassVar[Mapping[str, Any]] = {
        "inner_state": _ScheduleState(),
        "warmup_steps": _NON_NEGATIVE_INT,
        "start_factor": _NON_NEGATIVE,
    }

    inner_state: dict[str, Any]
    warmup_steps: int
    start_factor: float

    def __init__(self, inner: Schedule, warmup_steps: int, start_factor: float = 0.0) -> None:
        if not isinstance(inner, Schedule):
            raise ConfigError(f"Warmup.inner: must be a Schedule, got {inner!r}")
        self._assign(
            {
                "inner_state": inner.state_dict(),
                "warmup_steps": warmup_steps,
                "start_factor": start_factor,
            }
        )

    @property
    def inner(self) -> Schedule:
        """The wrapped schedule, rebuilt from ``inner_state``."""
        return schedule_from_state_dict(self.inner_state)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
        # Rebuilding costs a few microseconds once per update; it keeps __dict__ plain.
        return self.inner(step - self.warmup_steps)


_SCHEDULE_CLASSES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (Constant, Linear, StepDecay, InverseSqrt, Cosine, CosineRestarts, Warmup)
}
_HORIZON_SCHEDULES = frozenset({"linear", "cosine"})

SCHEDULE_NAMES: list[str] = sorted(name for name in _SCHEDULE_CLASSES if name != "warmup")
"""Names accepted by :func:`build_schedule` (warm-up is an option, not a name)."""


def schedule_from_state_dict(state: Mapping[str, Any], key: str = "schedule") -> Schedule:
    """Rebuild any schedule (including :class:`Warmup`) from :meth:`Schedule.state_dict` output."""
    name = state.get("name")
    cls = _SCHEDULE_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        valid = ", ".join(sorted(_SCHEDULE_CLASSES))
        raise ConfigError(f"{key}.name: unknown schedule {name!r}; valid: {valid}")
    schedule = cls.__new__(cls)
    schedule._assign({k: v for k, v in state.items() if k != "name"}, where=key)
    return schedule


# --------------------------------------------------------------------------------------------
# Building from config
# --------------------------------------------------------------------------------------------

_WARMUP_OPTIONS = {"warmup_steps": _NON_NEGATIVE_INT, "warmup_start_factor": _NON_NEGATIVE}


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
    horizon = _POSITIVE_INT.check(horizon, f"{key} horizon (total updates)")
    name = spec.get("name")
    if name not in SCHEDULE_NAMES:
        raise ConfigError(
            f"{key}.name: unknown schedule {name!r}; valid: {', '.join(SCHEDULE_NAMES)}"
        )
    cls = _SCHEDULE_CLASSES[name]
    options = _spec_options(cls)
    for field in spec:
        if field != "name" and field not in options and field not in _WARMUP_OPTIONS:
            accepted = ", ".join(["name", *options, *_WARMUP_OPTIONS])
            raise ConfigError(
                f"{key}.{field}: unknown option for schedule {name!r}; accepted: {accepted}"
            )
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


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` whose lr at update t is ``base_lr * schedule(t)`` in every param group.

    Call ``scheduler.step()`` once per policy update. The schedule is a callable object, so
    ``LambdaLR.state_dict()`` records its ``__dict__`` and a round-trip restores it.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    for index, group in enumerate(optimizer.param_groups):
        if "lr" not in group:
            raise ValueError(
                f"{type(optimizer).__name__}.param_groups[{index}] has no 'lr' to schedule"
            )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)


# --------------------------------------------------------------------------------------------
# Scheduled scalar coefficients
# --------------------------------------------------------------------------------------------


class ScheduledValue:
    """A coefficient ``base * schedule(step)`` (entropy coefficient, PPO clip range, max KL)."""

    def __init__(self, base: float, schedule: Schedule | None = None) -> None:
        if not (_is_real(base) and math.isfinite(float(base))):
            raise ConfigError(f"ScheduledValue.base: must be a finite number, got {base!r}")
        self.base = float(base)
        self.schedule = schedule if schedule is not None else Constant()

    def value(self, step: int) -> float:
        """The coefficient at update ``step``."""
        return self.base * self.schedule(step)

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
    if _is_real(raw):
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
    if not (_is_real(base) and math.isfinite(float(base))):
        raise ConfigError(f"{key}.value: must be a finite number, got {base!r}")
    rest = {k: v for k, v in raw.items() if k != "value"}
    schedule_spec = {"name": "constant", **rest} if "name" not in rest else rest
    return ScheduledValue(float(base), build_schedule(schedule_spec, horizon, key=key))
