"""The defaults ``rlopt report``'s arguments and :func:`~rlopt.report.build.build_report` share
(a leaf, so the light command module and the builder import it without importing each other), and
their bounds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

from rlopt.errors import ConfigError, short_repr
from rlopt.sweep.messages import check_path

DEFAULT_REPS = 20_000
"""Bootstrap resamples per final-score interval (2,000 left a P(improvement) bound 0.05 off; issue 18)."""
DEFAULT_CURVE_REPS = 2000
"""Bootstrap resamples per learning-curve band (100 points per arm: 100x the work of one interval)."""
REPORT_KEYS = ("metric_mode", "threshold", "panels", "normalize")
"""Keys of a sweep file that only the report reads (checked by :func:`report_settings` when the sweep loads);
the first two are also recorded in the manifest (zipped with :func:`report_settings`' pair)."""
METRIC_MODES = ("max", "min")
"""``metric_mode``: whether a higher (max) or a lower (min) score is better."""
MAX_REPS = 100_000
"""``--reps``: time grows linearly (~20 s at the bound for a small sweep); Agarwal et al. (2021) use 2,000-50,000."""
MAX_SEED = 2**63 - 1
"""``--seed``: the range of ``rlopt train``'s seed (numpy's generator takes any integer >= 0)."""


def check_arguments(reps: int, seed: int, out: str | Path = ".", curve_reps: int = DEFAULT_CURVE_REPS,
                    mode: str | None = None) -> None:
    """Refuse ``--reps``/``--curve-reps`` outside [1, MAX_REPS], ``--seed`` outside [0, MAX_SEED], a ``--mode``
    other than max/min and an OUT the OS cannot look up (ConfigError)."""
    check_path(str(out), "report: OUT")
    for flag, value in (("--reps", reps), ("--curve-reps", curve_reps)):
        if not 1 <= int(value) <= MAX_REPS:
            raise ConfigError(f"{flag} must be in [1, {MAX_REPS}], got {short_repr(value)}")
    if mode is not None and mode not in METRIC_MODES:
        raise ConfigError(f"--mode must be one of {', '.join(METRIC_MODES)}, got {short_repr(mode)}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"--seed must be in [0, 2**63 - 1], got {short_repr(seed)}")


def check_panels(value: Any, fail: Callable[[str], Exception]) -> None:
    """Refuse a ``panels:`` that is not a mapping of names to a prefix or a non-empty list of arm names."""
    if value is None:
        return
    if not isinstance(value, dict) or not value:
        raise fail(f"panels must be a mapping of panel names to an arm-name prefix or a list of arms, got {short_repr(value)}")
    for name, spec in value.items():
        ok = (isinstance(spec, str) and spec) or (isinstance(spec, list) and spec and all(isinstance(a, str) for a in spec))
        if not ok:
            raise fail(f"panels.{name} must be an arm-name prefix or a non-empty list of arm names, got {short_repr(spec)}")


def check_normalize(value: Any, fail: Callable[[str], Exception]) -> None:
    """Refuse a ``normalize:`` that is not ``{env_id: [low, high]}`` with two finite, different numbers."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise fail(f"normalize must be a mapping of env ids to [low, high], got {short_repr(value)}")
    for env, pair in value.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
                and pair[0] != pair[1]):
            raise fail(f"normalize.{env} must be [low, high], two different finite numbers, got {short_repr(pair)}")


def report_settings(raw: Mapping[str, Any], fail: Callable[[str], Exception]) -> tuple[str, float | None]:
    """A sweep file's ``metric_mode`` (default max) and ``threshold`` (default None), checked, as are its
    ``panels`` and ``normalize``; ``fail(message)`` builds the error raised for a bad value."""
    check_panels(raw.get("panels"), fail)
    check_normalize(raw.get("normalize"), fail)
    mode, threshold = raw.get("metric_mode", "max"), raw.get("threshold")
    if mode not in METRIC_MODES:
        raise fail(f"metric_mode must be one of {', '.join(METRIC_MODES)}, got {short_repr(mode)}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise fail(f"threshold must be a finite number, got {short_repr(threshold)}")
    return str(mode), None if threshold is None else float(threshold)
