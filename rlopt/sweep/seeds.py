"""The sweep file's seeds: ``seeds`` (which seeds every arm runs) and ``seeds_per_process`` (how
many of an arm's seeds one process trains together, :mod:`rlopt.sweep.stacking`). Each check is a
one-line ConfigError built by the caller's ``fail`` (``sweep <name>: <key>: <problem>``)."""

from __future__ import annotations

import numbers
from typing import Any, Callable

from rlopt.config.validation import SEED_MAX
from rlopt.errors import ConfigError, short_repr
from rlopt.sweep.messages import format_value

Fail = Callable[[str], ConfigError]
MAX_SEEDS = 1000
"""Seeds per sweep (``seeds.count`` or the length of the list)."""
MAX_SEEDS_PER_PROCESS = 256
"""``seeds_per_process`` (and ``--seeds-per-process``): at most one stack's seeds
(``rlopt.stacked.learner.MAX_SEEDS``); ``all`` is every seed of an arm, split in stacks of this many."""
DEFAULT_SEEDS_PER_PROCESS: int | str = "all"
"""An arm's seeds share one process unless the sweep says otherwise: measured in docs/sweeps.md
(the ``actor_optimizer`` sweep on 2 workers, lone vs stacked)."""


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_seeds(value: Any, fail: Fail) -> list[int]:
    """The sweep's ``seeds``: ``{start: S, count: N}`` or a list of distinct integers."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"start", "count"})
        if unknown:
            raise fail(f"seeds.{unknown[0]}: unknown key; valid keys of seeds: start, count")
        start, count = value.get("start", 0), value.get("count")
        if not is_int(start) or start < 0:
            raise fail(f"seeds.start must be an integer >= 0, got {format_value(start)}")
        if not is_int(count) or count < 1:
            raise fail(f"seeds.count must be an integer >= 1, got {short_repr(count)}")
        if count > MAX_SEEDS:
            raise fail(f"seeds.count must be <= {MAX_SEEDS} (seeds per sweep), got {short_repr(count)}")
        if start + count - 1 > SEED_MAX:
            raise fail(f"seeds.start + seeds.count - 1 must be <= 2**63 - 1 (the largest seed), got start {short_repr(start)}")
        return list(range(start, start + count))
    if isinstance(value, list):
        if not value:
            raise fail("seeds: the list of seeds is empty")
        if len(value) > MAX_SEEDS:
            raise fail(f"seeds: {len(value)} seeds listed; at most {MAX_SEEDS} (seeds per sweep)")
        for seed in value:
            if not is_int(seed) or not 0 <= seed <= SEED_MAX:
                raise fail(f"seeds: {short_repr(seed)} is not an integer in [0, 2**63 - 1]")
        duplicates = sorted({seed for seed in value if value.count(seed) > 1})
        if duplicates:
            raise fail(f"seeds: seed {duplicates[0]} is listed twice")
        return list(value)
    raise fail(f"seeds must be {{start: S, count: N}} or a list of integers, got {format_value(value)}")


def parse_seeds_per_process(value: Any, seeds: int, fail: Fail, key: str = "seeds_per_process") -> int:
    """``seeds_per_process: K | all`` (None: :data:`DEFAULT_SEEDS_PER_PROCESS`) as the chunk size:
    K in [1, :data:`MAX_SEEDS_PER_PROCESS`], or ``all`` = the ``seeds`` of an arm (at most
    :data:`MAX_SEEDS_PER_PROCESS`). 1 trains every run in its own process, as before stacking."""
    value = DEFAULT_SEEDS_PER_PROCESS if value is None else value
    if isinstance(value, str) and value.strip().lower() == "all":
        return max(1, min(seeds, MAX_SEEDS_PER_PROCESS))
    if isinstance(value, str) and value.strip().isdigit():  # the CLI's text
        value = int(value.strip())
    if not is_int(value) or not 1 <= value <= MAX_SEEDS_PER_PROCESS:
        raise fail(f"{key} must be an integer in [1, {MAX_SEEDS_PER_PROCESS}] or all, got {short_repr(value)}")
    return int(value)
