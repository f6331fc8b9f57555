"""The sweep file's seeds: ``seeds`` (which seeds every arm runs) and ``seeds_per_process`` (how
many of an arm's seeds one process trains together, :mod:`rlopt.sweep.stacking`). Each check is a
one-line ConfigError built by the caller's ``fail`` (``sweep <name>: <key>: <problem>``). Torch-free
at import (``rlopt sweep``'s argument checks use it)."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from rlopt.errors import ConfigError, short_repr
from rlopt.sweep.messages import format_value

Fail = Callable[[str], ConfigError]
MAX_SEEDS = 1000
"""Seeds per sweep (``seeds.count`` or the length of the list)."""
MAX_SEEDS_PER_PROCESS = 256
"""``seeds_per_process`` (and ``--seeds-per-process``): at most one stack's seeds
(``rlopt.stacked.learner.MAX_SEEDS``); ``all`` is every seed of an arm, split in stacks of this many."""
DEFAULT_SEEDS_PER_PROCESS = "auto"
"""Measured (docs/sweeps.md): the ``actor_optimizer`` sweep (6 arms x 10 seeds, 5,000 steps a run) on 2
workers took 399 s one run per process and 74 s with each arm's 10 seeds in one process; ``auto``
stacks as many seeds as keep every worker busy (:func:`auto_seeds_per_process`)."""


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_seeds(value: Any, fail: Fail) -> list[int]:
    """The sweep's ``seeds``: ``{start: S, count: N}`` or a list of distinct integers."""
    from rlopt.config.validation import SEED_MAX  # here: the CLI imports this module before torch

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


def parse_seeds_per_process(value: Any, seeds: int, fail: Fail, key: str = "seeds_per_process") -> int | None:
    """``seeds_per_process: K | all | auto`` (None: :data:`DEFAULT_SEEDS_PER_PROCESS`) as the chunk
    size: K in [1, :data:`MAX_SEEDS_PER_PROCESS`]; ``all`` = the ``seeds`` of an arm (at most
    :data:`MAX_SEEDS_PER_PROCESS`); ``auto`` -> None, resolved by :func:`auto_seeds_per_process` once
    the workers are known. 1 trains every run in its own process, as before stacking."""
    value = DEFAULT_SEEDS_PER_PROCESS if value is None else value
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "all":
        return max(1, min(seeds, MAX_SEEDS_PER_PROCESS))
    if text == "auto":
        return None
    if text is not None and text.isdigit():  # the CLI's text
        value = int(text)
    if not is_int(value) or not 1 <= value <= MAX_SEEDS_PER_PROCESS:
        raise fail(f"{key} must be an integer in [1, {MAX_SEEDS_PER_PROCESS}], all or auto, got {short_repr(value)}")
    return int(value)


def auto_seeds_per_process(arms: int, seeds: int, workers: int) -> int:
    """``auto``: the fewest processes that keep ``workers`` busy -- each arm's ``seeds`` split into
    ceil(workers / arms) stacks (one stack per arm when there are at least as many arms as workers),
    at most :data:`MAX_SEEDS_PER_PROCESS` seeds each. Stacking is cheaper per seed the more seeds
    share a process (issue 17's table: PPO 29.4 CPU s per seed alone, 8.6 at 10), so no more
    processes than workers are made."""
    per_arm = max(1, math.ceil(workers / max(arms, 1)))
    return max(1, min(math.ceil(seeds / per_arm), MAX_SEEDS_PER_PROCESS))
