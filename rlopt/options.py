"""Declared options of an optimizer spec: each one listed once with its default, its range check
and a one-line doc, and the one "unknown option; accepted: …" error of every spec.

Standard library only (a leaf: the trust-region step, K-FAC and the optimizer registry all read it).
A table ``{name: Option}`` is the single listing of a family's hyper-parameters: the optimizer's
signature (:func:`signature`), its ``defaults`` (:func:`defaults`), its checks (:func:`check_all`)
and the schema's default spec are derived from it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rlopt.errors import ConfigError, first_line

Check = Callable[[str, Any], None]
"""``check(name, value)``: raise a one-line ConfigError ``"<name> must be …, got …"``, else return."""


@dataclass(frozen=True)
class Option:
    """One hyper-parameter: its default, its check and what it means (one line)."""

    default: Any
    check: Check
    doc: str


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(name: str, value: Any) -> None:
    """A finite int or float (not a bool or a string)."""
    if not _is_real(value) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")


def real(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = True) -> Check:
    """A finite number ``>= low`` (``> low`` with ``low_open``) and, when ``high`` is given, ``< high``
    (``<= high`` with ``high_open=False``); the message names the interval, e.g. ``in [0, 1)``."""
    if high is None:
        bound = f"{'>' if low_open else '>='} {low:g}"
    else:
        bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(name: str, value: Any) -> None:
        finite(name, value)
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        if not (above and below):
            raise ConfigError(f"{name} must be {bound}, got {value}")

    return check


def integer(low: int) -> Check:
    """An int (not a bool) ``>= low``."""

    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")

    return check


def boolean(name: str, value: Any) -> None:
    """True or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def defaults(table: Mapping[str, Option]) -> dict[str, Any]:
    """``{name: default}`` of a table, in its order."""
    return {name: option.default for name, option in table.items()}


def resolve(table: Mapping[str, Option], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """A constructor's keyword arguments ``given`` over the table's defaults, all checked; an option
    the table does not declare is a TypeError, as for any python signature."""
    unknown = [name for name in given if name not in table]
    if unknown:
        raise TypeError(f"{owner} got an unexpected keyword argument {unknown[0]!r}")
    values = {**defaults(table), **given}
    check_all(values, table)
    return values


def check_all(values: Mapping[str, Any], table: Mapping[str, Option]) -> None:
    """Check every option of ``table`` present in ``values``, in the table's order."""
    for name, option in table.items():
        if name in values:
            option.check(name, values[name])


def signature(table: Mapping[str, Option], leading: Iterable[str] = ("self", "params")) -> inspect.Signature:
    """The constructor signature ``(self, params, <option>=<default>, ...)`` a table declares: set as
    ``__init__.__signature__`` so ``inspect`` and help() show each option and its default."""
    positional = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in leading]
    keywords = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o.default) for n, o in table.items()]
    return inspect.Signature([*positional, *keywords])


def reject_unknown_options(spec: Mapping[str, Any], accepted: Iterable[str], owner: str, key: str) -> None:
    """The one "unknown option" error of a spec: ``<key>.<option>: unknown option for <owner>;
    accepted: name, <accepted>`` for the first key of ``spec`` (other than ``name``) not accepted."""
    accepted = tuple(accepted)
    for option in spec:
        if option != "name" and option not in accepted:
            raise ConfigError(f"{key}.{option}: unknown option for {owner}; accepted: {', '.join(['name', *accepted])}")


@contextmanager
def errors_under(key: str, options: Iterable[str]) -> Iterator[None]:
    """Prefix a ConfigError raised by a check of a bare option (``"damping must be > 0"``) with the
    spec's key (``"critic.optim.damping must be > 0"``); any other message becomes ``"<key>: …"``."""
    try:
        yield
    except ConfigError as err:
        message = str(err)
        if message.startswith(f"{key}.") or message.startswith(f"{key}:"):
            raise
        first = message.split(" ")[0]
        raise ConfigError(f"{key}.{message}" if first in set(options) else f"{key}: {message}") from None


@contextmanager
def any_error_as_config_error(key: str) -> Iterator[None]:
    """Turn whatever a builder raises on a malformed value into a ConfigError naming ``key``.

    The builders raise ConfigError for what they check; torch and float() add TypeError
    (``'<=' between float and str``), OverflowError (``float(10**400)``), AssertionError
    (``capturable=True`` on CPU) and RuntimeError (``differentiable=True``): equally bad input.
    """
    try:
        yield
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{key}: invalid value ({type(err).__name__}: {first_line(err)})") from None
