"""Validators of schedule fields, shared by the constructors, ``load_state_dict`` and the builders.

Bottom of :mod:`rlopt.schedules` (standard library only): each validator returns the value as a
plain int/float or raises :class:`~rlopt.errors.ConfigError` naming the offending key.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from rlopt.errors import ConfigError


def is_real(value: Any) -> bool:
    """True for ints/floats (python or numpy), False for bools, which YAML typos produce."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Number:
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
            ok = is_real(value) and math.isfinite(float(value))
        if ok:
            number = int(value) if self.integer else float(value)
            above = number >= self.low if self.low_inclusive else number > self.low
            if above and (self.high is None or number <= self.high):
                return number
        raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")


POSITIVE_INT = Number(integer=True, low=1)
NON_NEGATIVE_INT = Number(integer=True, low=0)
NON_NEGATIVE = Number(integer=False, low=0.0)
POSITIVE = Number(integer=False, low=0.0, low_inclusive=False)
UNIT_INTERVAL = Number(integer=False, low=0.0, high=1.0)
