"""The sweep file's ``search:`` block: per arm, a space of dotted config keys to tune before the final runs.

``search`` sits at the top of the sweep file and may be overridden per variant (``variants.<v>.search``,
whose keys replace the sweep's, ``space`` as a whole). Every distribution is checked against the arm's
resolved config before anything runs: the key must exist in the config schema (or be a new entry of a
free-form mapping such as ``actor.optim``, which the agents' validator then checks), the distribution
must fit the key's type, and the config built at each bound (each choice) must validate.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from rlopt.config import config_to_dict
from rlopt.errors import short_repr
from rlopt.run_files import SUMMARY_KEYS, SUMMARY_TEXT_KEYS

SEARCH_KEYS = ("space", "trials", "seeds_per_trial", "total_steps", "objective", "sampler", "pruner", "startup_trials",
               "warmup_steps", "seed")  # fmt: skip
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median")
OBJECTIVES = ("final", "auc")
"""Besides a number of a run's summary.json: ``final`` = mean of the last :data:`FINAL_FRACTION` of the
sweep's ``curve``, ``auc`` = the curve's mean over env steps (area under it / steps)."""
FINAL_FRACTION = 0.1
"""Share of the curve's last points averaged by ``objective: final`` (one point at least)."""
MAX_TRIALS = 1000
"""``search.trials`` per arm."""
MAX_SEEDS_PER_TRIAL = 100
"""``search.seeds_per_trial``."""
MAX_TRIAL_RUNS = 100_000
"""Trial runs per sweep (tuned arms x trials x seeds_per_trial)."""
MAX_CHOICES = 1000
"""Values in one ``choice`` list."""
DEFAULT_TRIALS = 20
DEFAULT_SEEDS_PER_TRIAL = 1
DEFAULT_STARTUP_TRIALS = 5
"""``search.startup_trials``: Optuna's MedianPruner default ``n_startup_trials``."""


@dataclass(frozen=True)
class Search:
    """One arm's tuning: the space and the budget."""

    space: dict[str, dict[str, list[Any]]]
    """Dotted key -> ``{kind: [args]}`` (kind one of :data:`DISTRIBUTIONS`)."""
    trials: int
    seeds_per_trial: int
    total_steps: int | None
    """Env steps of a trial run; None = the arm's own."""
    objective: str
    sampler: str
    pruner: str
    """``none``, or ``median``: stop a trial whose curve falls below the median of the finished trials' curves at
    the same env step (Optuna's MedianPruner, :mod:`rlopt.sweep.pruning`)."""
    startup_trials: int
    """``pruner: median``: no trial is pruned before this many trials of the arm finished (``n_startup_trials``)."""
    warmup_steps: int
    """``pruner: median``: no trial is pruned before this many env steps of its own (``n_warmup_steps``)."""
    seed: int
    """Seeds the sampler (each trial's sampler is seeded from it, the arm and the trial number)."""

    def space_json(self) -> str:
        """The space as canonical JSON (stored with the study: a study with another space is refused)."""
        return json.dumps(self.space, sort_keys=True, separators=(",", ":"))

    def sampler_seed(self, arm: str, number: int) -> int:
        """A 32-bit seed for the sampler asking trial ``number`` of ``arm`` (same sweep + seed -> same params)."""
        digest = hashlib.sha256(f"{self.seed}/{arm}/{number}".encode()).digest()
        return int.from_bytes(digest[:4], "little")


def tuning_seeds(final_seeds: list[int], count: int) -> list[int]:
    """The ``count`` smallest non-negative integers not among the final seeds (disjoint, deterministic)."""
    taken, seeds, candidate = set(final_seeds), [], 0
    while len(seeds) < count:
        if candidate not in taken:
            seeds.append(candidate)
        candidate += 1
    return seeds


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(raw: Mapping[str, Any], key: str, default: Any, low: int, high: int, fail: Callable[[str], Exception]) -> Any:
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    if not _is_int(value) or not low <= value <= high:
        raise fail(f"search.{key} must be an integer in [{low}, {high:,}], got {short_repr(value)}")
    return value


def _check_distribution(key: str, dist: Any, fail: Callable[[str], Exception]) -> dict[str, list[Any]]:
    where = f"search.space.{key}"
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise fail(f"{where} must be one of {{log_uniform: [lo, hi]}}, {{uniform: [lo, hi]}}, {{int: [lo, hi]}}, "
                   f"{{choice: [...]}}, got {short_repr(dist)}")  # fmt: skip
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args or len(args) > MAX_CHOICES:
            raise fail(f"{where}.choice must be a list of 1 to {MAX_CHOICES} values, got {short_repr(args)}")
        if not all(a is None or isinstance(a, (bool, int, float, str)) for a in args):
            raise fail(f"{where}.choice: values must be numbers, strings, booleans or null, got {short_repr(args)}")
        if len({json.dumps(a, sort_keys=True) for a in args}) != len(args):
            raise fail(f"{where}.choice lists a value twice")
        return {kind: list(args)}
    number = _is_int if kind == "int" else _is_real
    if not isinstance(args, list) or len(args) != 2 or not all(number(a) for a in args):
        what = "integers" if kind == "int" else "finite numbers"
        raise fail(f"{where}.{kind} must be [low, high], two {what}, got {short_repr(args)}")
    low, high = args
    if low >= high:
        raise fail(f"{where}.{kind}: low {short_repr(low)} must be < high {short_repr(high)}")
    if kind == "log_uniform" and low <= 0:
        raise fail(f"{where}.log_uniform: low {short_repr(low)} must be > 0")
    return {kind: [low, high]}


def parse_search(raw: Any, override: Any, fail: Callable[[str], Exception]) -> Search:
    """The search block (``raw``, with a variant's ``override`` keys replacing its own), checked for form."""
    for block, what in ((raw, "search"), (override, "search (of the variant)")):
        if block is not None and not isinstance(block, dict):
            raise fail(f"{what} must be a mapping with keys {', '.join(SEARCH_KEYS)}, got {short_repr(block)}")
    merged = {**(raw or {}), **(override or {})}
    unknown = [key for key in merged if key not in SEARCH_KEYS]
    if unknown:
        raise fail(f"search.{unknown[0]}: unknown key; valid keys of search: {', '.join(SEARCH_KEYS)}")
    space_raw = merged.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise fail(f"search.space must be a non-empty mapping of dotted config keys to distributions, got {short_repr(space_raw)}")
    space = {str(key): _check_distribution(str(key), dist, fail) for key, dist in space_raw.items()}
    sampler = merged.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise fail(f"search.sampler must be one of {', '.join(SAMPLERS)}, got {short_repr(sampler)}")
    if sampler == "grid":
        other = [key for key, dist in space.items() if "choice" not in dist]
        if other:
            raise fail(f"search.space.{other[0]}: sampler grid takes choice distributions only")
        grid = math.prod(len(dist["choice"]) for dist in space.values())
        if merged.get("trials", DEFAULT_TRIALS) > grid:
            raise fail(f"search.trials: the grid has {grid} points; at most {grid} trials with sampler grid")
    pruner = merged.get("pruner", "none")
    if pruner not in PRUNERS:
        raise fail(f"search.pruner must be one of {', '.join(PRUNERS)}, got {short_repr(pruner)}")
    if pruner == "none":
        extra = [key for key in ("startup_trials", "warmup_steps") if key in merged]
        if extra:
            raise fail(f"search.{extra[0]} is for pruner: median (the search has pruner: none)")
    objective = merged.get("objective", "final")
    metrics = [key for key in SUMMARY_KEYS if key not in SUMMARY_TEXT_KEYS]
    if objective not in (*OBJECTIVES, *metrics):
        raise fail(f"search.objective must be final, auc or a number of summary.json ({', '.join(metrics)}), "
                   f"got {short_repr(objective)}")  # fmt: skip
    return Search(
        space=space,
        trials=_int_in(merged, "trials", DEFAULT_TRIALS, 1, MAX_TRIALS, fail),
        seeds_per_trial=_int_in(merged, "seeds_per_trial", DEFAULT_SEEDS_PER_TRIAL, 1, MAX_SEEDS_PER_TRIAL, fail),
        total_steps=_int_in(merged, "total_steps", None, 1, 2**62, fail),
        objective=objective,
        sampler=sampler,
        pruner=pruner,
        startup_trials=_int_in(merged, "startup_trials", DEFAULT_STARTUP_TRIALS, 0, MAX_TRIALS, fail),
        warmup_steps=_int_in(merged, "warmup_steps", 0, 0, 2**62, fail),
        seed=_int_in(merged, "seed", 0, 0, 2**63 - 1, fail),
    )


def _lookup(tree: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """(whether dotted ``key`` is in ``tree``, its value) -- a present key may hold null."""
    node: Any = tree
    *parents, last = key.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, Mapping) else None
    return (True, node[last]) if isinstance(node, Mapping) and last in node else (False, None)


def check_space(search: Search, tree: Mapping[str, Any], build: Callable[[dict[str, Any]], Any],
                fail: Callable[[str], Exception]) -> None:  # fmt: skip
    """Each key exists in the arm's resolved config ``tree`` (or is a new entry of a mapping there), its
    distribution fits the current value's type, and ``build(values)`` validates at every bound and choice."""
    for key, dist in search.space.items():
        kind, args = next(iter(dist.items()))
        where = f"search.space.{key}"
        present, current = _lookup(tree, key)
        if present and isinstance(current, dict):
            raise fail(f"{where}: {key} is a section, not a value")
        if not present and not isinstance(_lookup(tree, key.rpartition(".")[0])[1], dict):
            raise fail(f"{where}: unknown config key {key}")
        if kind == "choice":
            continue
        if isinstance(current, (str, bool, list)):
            raise fail(f"{where}: {kind} does not fit {key}, a {type(current).__name__} ({short_repr(current)}); use choice")
        if _is_int(current) and kind != "int":
            raise fail(f"{where}: {kind} does not fit {key}, an integer; use int or choice")
    lows = {key: next(iter(d.values()))[0] for key, d in search.space.items()}
    build(lows)
    build({key: next(iter(d.values()))[-1] for key, d in search.space.items()})
    for key, dist in search.space.items():
        for value in dist.get("choice", [])[1:-1]:
            build({**lows, key: value})


def arm_searches(raw: Any, variant_searches: Mapping[str, Any], arms: list[Any], runs: list[Any],
                 build: Callable[[Any, dict[str, Any]], Any], fail: Callable[[str, str], Exception]) -> dict[str, Search]:  # fmt: skip
    """Each tuned arm's checked :class:`Search` (an arm whose variant and sweep have no ``search`` is not tuned).

    ``runs`` are the sweep's (each arm's first is its resolved config); ``build(arm, values)`` builds and validates the
    arm's config with ``values`` set (raising the sweep's one-line error)."""
    searches: dict[str, Search] = {}
    first = {run.arm: run for run in reversed(runs)}
    for arm in arms:
        variant = arm.name.split("__")[0]
        override = variant_searches.get(variant)
        if raw is None and override is None:
            continue
        arm_fail = lambda message, name=arm.name: fail(message, name)  # noqa: E731
        search = parse_search(raw, override, arm_fail)
        check_space(search, config_to_dict(first[arm.name].config), lambda values, a=arm: build(a, values), arm_fail)
        searches[arm.name] = search
    total = sum(search.trials * search.seeds_per_trial for search in searches.values())
    if total > MAX_TRIAL_RUNS:
        raise fail(f"search: {total:,} trial runs (arms x trials x seeds_per_trial); at most {MAX_TRIAL_RUNS:,} "
                   "per sweep: split the sweep", None)  # fmt: skip
    return searches
