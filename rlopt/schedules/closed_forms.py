"""The schedule classes: an update count t = 0, 1, 2, ... -> a multiplicative factor, in closed form.

Middle of :mod:`rlopt.schedules`, torch-free: each class validates its fields with
:mod:`rlopt.schedules.fields` and keeps only plain python values in ``__dict__`` (the state
dict), so it pickles and round-trips through ``LambdaLR.state_dict()``. The name -> class registry
and :func:`schedule_from_state_dict` live here too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rlopt.errors import ConfigError
from rlopt.schedules.fields import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    UNIT_INTERVAL,
)


class Schedule:
    """Maps an integer update count ``step`` >= 0 to a multiplicative factor of a base value.

    Subclasses declare ``name`` (the config name) and ``fields`` (validators for every
    constructor argument, which are also the instance attributes and the state-dict keys).
    """

    name: ClassVar[str]
    fields: ClassVar[Mapping[str, Any]]
    fits_run_length: ClassVar[bool] = False
    """Whether the run's length (its update count) sets the shape: :meth:`refit` changes it."""

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

    def refit(self, total_updates: int) -> Schedule:
        """This schedule over a run of ``total_updates`` updates (issue 12, extending a run).

        Only schedules whose shape is set by the run length (linear, cosine, and a warm-up around
        one) change; every other schedule returns itself. ``build_schedule(spec, H).refit(H2)``
        equals ``build_schedule(spec, H2)``.
        """
        return self

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
    fits_run_length = True
    fields: ClassVar[Mapping[str, Any]] = {"horizon": POSITIVE_INT, "end_factor": NON_NEGATIVE}

    horizon: int
    end_factor: float

    def __init__(self, horizon: int, end_factor: float = 0.0) -> None:
        self._assign({"horizon": horizon, "end_factor": end_factor})

    def __call__(self, step: int) -> float:
        progress = min(step / self.horizon, 1.0)
        return 1.0 + (self.end_factor - 1.0) * progress

    def refit(self, total_updates: int) -> Linear:
        return Linear(total_updates, self.end_factor)


class StepDecay(Schedule):
    """gamma ** floor(t / step_size) (step decay, docs/theory.md#schedules)."""

    name = "step"
    fields: ClassVar[Mapping[str, Any]] = {"step_size": POSITIVE_INT, "gamma": POSITIVE}

    step_size: int
    gamma: float

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self._assign({"step_size": step_size, "gamma": gamma})

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


class InverseSqrt(Schedule):
    """1 / sqrt(1 + t / timescale); with timescale 1 and k = t + 1 this is the textbook 1/sqrt(k)."""

    name = "inverse_sqrt"
    fields: ClassVar[Mapping[str, Any]] = {"timescale": POSITIVE}

    timescale: float

    def __init__(self, timescale: float = 1.0) -> None:
        self._assign({"timescale": timescale})

    def __call__(self, step: int) -> float:
        return 1.0 / math.sqrt(1.0 + step / self.timescale)


def _cosine_factor(elapsed: float, length: float, min_factor: float) -> float:
    """m + (1 - m) * (1 + cos(pi * elapsed / length)) / 2 (cosine decay, docs/theory.md#schedules)."""
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * elapsed / length))


class Cosine(Schedule):
    """Cosine decay from 1 to ``min_factor`` over T updates, then held at ``min_factor``."""

    name = "cosine"
    fits_run_length = True
    fields: ClassVar[Mapping[str, Any]] = {"horizon": POSITIVE_INT, "min_factor": UNIT_INTERVAL}

    horizon: int
    min_factor: float

    def __init__(self, horizon: int, min_factor: float = 0.0) -> None:
        self._assign({"horizon": horizon, "min_factor": min_factor})

    def __call__(self, step: int) -> float:
        return _cosine_factor(min(step, self.horizon), self.horizon, self.min_factor)

    def refit(self, total_updates: int) -> Cosine:
        return Cosine(total_updates, self.min_factor)


class CosineRestarts(Schedule):
    """SGDR (Loshchilov & Hutter, 2017, eq. 5): cosine decay restarted at the end of each cycle.

    Cycle i lasts T_i = period * period_mult**i updates; inside it the factor is the cosine decay
    of the elapsed count t_cur, so it jumps back to 1 at every restart.
    """

    name = "cosine_restarts"
    fields: ClassVar[Mapping[str, Any]] = {
        "period": POSITIVE_INT,
        "period_mult": POSITIVE_INT,
        "min_factor": UNIT_INTERVAL,
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


@dataclass(frozen=True)
class ScheduleState:
    """A nested schedule kept as its plain state dict (see :class:`Warmup`)."""

    def describe(self) -> str:
        return "a schedule state dict"

    def check(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")
        # Building the schedule validates every nested field.
        return schedule_from_state_dict(value, key=where).state_dict()


class Warmup(Schedule):
    """Linear warm-up from ``start_factor`` to 1 over ``warmup_steps`` updates, then inner(t - w).

    The inner schedule is held as its plain state dict (``inner_state``) so the whole object,
    and a ``LambdaLR`` state dict built on it, is plain python data.
    """

    name = "warmup"
    fields: ClassVar[Mapping[str, Any]] = {
        "inner_state": ScheduleState(),
        "warmup_steps": NON_NEGATIVE_INT,
        "start_factor": NON_NEGATIVE,
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

    def refit(self, total_updates: int) -> Warmup:
        """The same warm-up, then the inner schedule over the ``total_updates - warmup_steps`` left."""
        inner, left = self.inner, total_updates - self.warmup_steps
        if not inner.fits_run_length:
            return self
        if left < 1:
            raise ConfigError(f"schedule.warmup_steps: must be < the horizon ({total_updates} updates) for "
                              f"schedule {inner.name!r}, got {self.warmup_steps}")  # fmt: skip
        return Warmup(inner.refit(left), self.warmup_steps, self.start_factor)

    @property
    def fits_run_length(self) -> bool:  # type: ignore[override]
        return self.inner.fits_run_length


SCHEDULE_CLASSES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (Constant, Linear, StepDecay, InverseSqrt, Cosine, CosineRestarts, Warmup)
}

SCHEDULE_NAMES: list[str] = sorted(name for name in SCHEDULE_CLASSES if name != "warmup")
"""Names accepted by :func:`build_schedule` (warm-up is an option, not a name)."""


def schedule_from_state_dict(state: Mapping[str, Any], key: str = "schedule") -> Schedule:
    """Rebuild any schedule (including :class:`Warmup`) from :meth:`Schedule.state_dict` output."""
    name = state.get("name")
    cls = SCHEDULE_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        valid = ", ".join(sorted(SCHEDULE_CLASSES))
        raise ConfigError(f"{key}.name: unknown schedule {name!r}; valid: {valid}")
    schedule = cls.__new__(cls)
    schedule._assign({k: v for k, v in state.items() if k != "name"}, where=key)
    return schedule
