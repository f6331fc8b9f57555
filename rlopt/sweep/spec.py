"""The sweep file: parse it, expand arms × seeds, build and validate every run's config.

A sweep file names a base preset, overrides applied to every run (``set``), named ``variants``
crossed with a ``grid``, and seeds. Every run's :class:`~rlopt.config.Config` is built and
validated here, before anything is written, so a bad sweep fails in one line naming the sweep,
the arm and the key. Agent-level checks (env ids, agent builders) are injected as ``validate``:
this package never imports ``agents``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from tqdm import tqdm

from rlopt.config import Config, config_to_dict, load_config, read_yaml
from rlopt.errors import ConfigError, short_repr, shorten
from rlopt.presets import resolve_config
from rlopt.report.defaults import REPORT_KEYS, report_settings
from rlopt.run_files import SUMMARY_KEYS, SUMMARY_TEXT_KEYS
from rlopt.sweep.messages import SHOWN_CHARS, format_value, listed
from rlopt.sweep.seeds import MAX_SEEDS, is_int as _is_int, parse_seeds, parse_seeds_per_process
from rlopt.sweep.rendering import config_hash, tree_hash

__all__ = ["MAX_SEEDS", "Arm", "RunSpec", "Sweep", "Validator", "config_hash", "format_value", "get_dotted", "load_sweep",
           "set_dotted"]

Validator = Callable[[Config], Config]
"""Agent-level check of a run's config, injected by the CLI (returns the config or raises ConfigError)."""

ARM_SEPARATOR = "__"
"""Separates a variant name from the grid entries in an arm name (``momentum__actor.max_grad_norm=0.5``)."""
BASE_ARM = "base"
"""The single arm of a sweep with neither variants nor grid."""
MAX_ARM_NAME = 200
"""Arm names become directory names (255 bytes on common filesystems)."""
MAX_ARMS = 1000
"""Arms per sweep (variants x grid), counted before they are expanded; each is validated (~0.1 s)."""
MAX_RUNS = 10_000
"""Runs per sweep (arms x seeds)."""
METRICS = tuple(key for key in SUMMARY_KEYS if key not in SUMMARY_TEXT_KEYS)
"""The numbers of a run's ``summary.json`` a sweep's ``metric`` may name."""
VALIDATION_PROGRESS_DELAY = 2.0
"""Seconds of validating before a progress bar appears on stderr (a terminal only)."""
DEFAULT_METRIC = "eval_return_mean"
DEFAULT_CURVE = "rollout/episode_return"
RESERVED_KEYS = {"seed": "seeds", "threads": "threads_per_run"}
"""Config keys the sweep sets itself -> the sweep key that sets them."""
SWEEP_KEYS = ("name", "base", "set", "seeds", "variants", "grid", "baseline", "metric", "curve", "threads_per_run", "seeds_per_process", "search",
              *REPORT_KEYS)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.=+-]+")
_DOTTED_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Arm:
    """One configuration of the sweep: a name and its dotted overrides (variant, then grid)."""

    name: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class RunSpec:
    """One arm at one seed, with its resolved and validated config."""

    arm: str
    seed: int
    overrides: dict[str, Any]
    """The sweep's ``set``, the arm's overrides and the seed, as dotted keys."""
    config: Config
    config_hash: str

    @property
    def run_dir(self) -> Path:
        """The run directory, relative to the sweep's OUT."""
        return Path("runs") / self.arm / f"seed_{self.seed}"

    @property
    def config_file(self) -> Path:
        """The resolved config that ``rlopt train`` reads, relative to OUT."""
        return Path("configs") / self.arm / f"seed_{self.seed}.yaml"

    @property
    def log_file(self) -> Path:
        """stdout and stderr of every attempt, beside the run directory (relative to OUT)."""
        return Path("runs") / self.arm / f"seed_{self.seed}.log"

    @property
    def label(self) -> str:
        return f"{self.arm}/seed_{self.seed}"


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file with every run resolved."""

    name: str
    path: Path
    base: Path
    set: dict[str, Any]
    seeds: list[int]
    arms: list[Arm]
    baseline: str | None
    metric: str
    curve: str
    threads_per_run: int
    runs: list[RunSpec]
    raw: dict[str, Any]
    """The sweep file as parsed (frozen into ``OUT/sweep.yaml``)."""
    searches: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Tuned arm -> its :class:`rlopt.sweep.search.Search` (the ``search:`` block; empty = no tuning)."""
    seeds_per_process: int | None = None
    """Seeds of an arm trained together in one process (:mod:`rlopt.sweep.stacking`); None: ``auto``."""


def no_check(cfg: Config) -> Config:
    """The identity validator (load_config's checks only)."""
    return cfg


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Assign ``value`` at dotted ``key`` in place; a mapping value replaces the whole sub-tree."""
    parts = key.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"{key}: {prefix} is a value ({format_value(child)}), not a section")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def get_dotted(tree: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key``, or None where the path does not exist."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class _SweepErrors:
    """Builds one-line messages ``sweep <name>[, arm <arm>]: <key>: <problem>``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, message: str, arm: str | None = None) -> ConfigError:
        where = f"sweep {self.name}" + (f", arm {arm}" if arm is not None else "")
        return ConfigError(f"{where}: {message}")


def _check_overrides(value: Any, key: str, fail: _SweepErrors, arm: str | None = None) -> dict[str, Any]:
    """A mapping of dotted config keys -> values (null = empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{key} must be a mapping of dotted config keys to values, got {format_value(value)}", arm)
    for dotted in value:
        if not isinstance(dotted, str) or not _DOTTED_KEY.match(dotted):
            raise fail(f"{key}: {dotted!r} is not a dotted config key such as actor.optim.lr", arm)
        root = dotted.split(".")[0]
        if root in RESERVED_KEYS:
            raise fail(f"{key}.{dotted}: {root} is set by the sweep key {RESERVED_KEYS[root]}", arm)
    return dict(value)


def _check_name(value: Any, key: str, fail: _SweepErrors) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ARM_SEPARATOR in value or len(value) > MAX_ARM_NAME:
        raise fail(
            f"{key}: {shorten(format_value(value), SHOWN_CHARS)} is not a filesystem-safe name of at most {MAX_ARM_NAME} characters "
            f"(letters, digits, _ . = + -, starting with a letter or digit, no '{ARM_SEPARATOR}')"
        )
    return value


def count_arms(variants: Mapping[str, Any], grid: Mapping[str, list[Any]]) -> int:
    """How many arms :func:`expand_arms` would make (variants x grid), without making them."""
    return max(1, len(variants)) * math.prod(len(values) for values in grid.values())


def check_size(arms: int, seeds: int, fail: _SweepErrors) -> None:
    """Refuse more than :data:`MAX_ARMS` arms or :data:`MAX_RUNS` runs (arms x seeds), before expanding."""
    if arms > MAX_ARMS:
        raise fail(f"variants x grid make {arms:,} arms; at most {MAX_ARMS:,} arms per sweep: split the sweep")
    if arms * seeds > MAX_RUNS:
        raise fail(f"{arms:,} arms x {seeds:,} seeds make {arms * seeds:,} runs; at most {MAX_RUNS:,} runs per sweep: "
                   "split the sweep")  # fmt: skip


def _grid_entry(key: str, value: Any) -> str:
    """``key=value`` made filesystem-safe."""
    rendered = _UNSAFE_CHARS.sub("-", format_value(value)).strip("-") or "empty"
    return f"{key}={rendered}"


def expand_arms(variants: Mapping[str, dict[str, Any]], grid: Mapping[str, list[Any]], fail: _SweepErrors) -> list[Arm]:
    """Arms = variants × grid, in definition order; without both, one arm named ``base``."""
    named = list(variants.items()) or [(None, {})]
    combos = list(itertools.product(*grid.values())) if grid else [()]
    arms: list[Arm] = []
    seen: set[str] = set()
    for variant, overrides in named:
        for combo in combos:
            entries = [_grid_entry(key, value) for key, value in zip(grid, combo)]
            name = ARM_SEPARATOR.join([variant, *entries] if variant else entries) or BASE_ARM
            if len(name) > MAX_ARM_NAME:
                raise fail(f"arm name {name[:40]}... is longer than {MAX_ARM_NAME} characters; shorten the variant or grid")
            if name in seen:
                raise fail(f"two arms are both named {name}; make the variant names or grid values distinct")
            seen.add(name)
            arm_overrides = dict(overrides)
            for key, value in zip(grid, combo):
                if key in arm_overrides:
                    raise fail(f"grid.{key} is also set by variant {variant}; set it in one place", name)
                arm_overrides[key] = value
            arms.append(Arm(name, arm_overrides))
    return arms


def resolve_base(value: Any, sweep_path: Path, fail: _SweepErrors) -> Path:
    """A YAML path relative to the sweep file, or else a preset name (``a2c_cartpole``), resolved as
    ``rlopt train`` resolves its config argument (:func:`rlopt.presets.resolve_config`)."""
    if not isinstance(value, str) or not value.strip():
        raise fail(f"base must name a preset such as a2c_cartpole or a YAML path, got {format_value(value)}")
    try:
        path = resolve_config(value, base_dir=sweep_path.parent)
    except ConfigError as err:  # a bare name that is neither a file nor a preset
        raise fail(f"base: {err}") from None
    if not path.is_file():
        raise fail(f"base: no such file {path}")
    return path


def _optional_string(raw: Mapping[str, Any], key: str, default: str | None, fail: _SweepErrors) -> str | None:
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{key} must be a non-empty string, got {format_value(value)}")
    return value


def _build(base_tree: Mapping[str, Any], values: Mapping[str, Any], seed: int, threads: int, validate: Validator,
           fail: _SweepErrors, arm: str) -> Config:  # fmt: skip
    """One run's validated config: base preset < ``values`` (dotted) < seed, threads."""
    tree = copy.deepcopy(dict(base_tree))
    try:
        for key, value in values.items():
            set_dotted(tree, key, value)
        tree["seed"], tree["threads"] = seed, threads
        return validate(load_config(None, values=tree))
    except ConfigError as err:
        raise fail(" ".join(str(err).split()), arm) from None


def build_runs(
    base_tree: Mapping[str, Any],
    set_values: Mapping[str, Any],
    arms: list[Arm],
    seeds: list[int],
    threads: int,
    validate: Validator,
    fail: _SweepErrors,
) -> list[RunSpec]:
    """Every run's config: base preset < ``set`` < arm overrides < seed, threads; then validated.

    The runs of an arm differ only in ``seed``, so each arm is built and validated once (~0.1 s)
    and its other seeds are copies with the seed set; an arm whose values interpolate (``${...}``,
    which may follow the seed) is built at every seed. A progress bar shows on a terminal after
    :data:`VALIDATION_PROGRESS_DELAY` seconds.
    """
    runs = []
    bar = tqdm(arms, desc=f"sweep {fail.name}: validating", unit="arm", file=sys.stderr, disable=None, leave=False,
               delay=VALIDATION_PROGRESS_DELAY, dynamic_ncols=True)  # fmt: skip
    with bar:
        for arm in bar:
            values = {**set_values, **arm.overrides}
            per_seed = "${" in json.dumps([base_tree, values], default=str)
            first: tuple[Config, dict[str, Any]] | None = None
            for seed in seeds:
                if first is None or per_seed:
                    cfg = _build(base_tree, values, seed, threads, validate, fail, arm.name)
                    tree = config_to_dict(cfg)
                    first = first or (cfg, tree)
                else:
                    cfg = dataclasses.replace(copy.deepcopy(first[0]), seed=seed)
                    tree = {**first[1], "seed": seed}
                runs.append(RunSpec(arm.name, seed, {**values, "seed": seed}, cfg, tree_hash(tree)))
    return runs


def load_sweep(path: str | Path, validate: Validator = no_check) -> Sweep:
    """Parse a sweep file and build every run's validated config (ConfigError on any bad input)."""
    path = Path(path)
    raw = read_yaml(path)
    fail = _SweepErrors(path.stem)
    name = _check_name(raw.get("name", path.stem), "name", fail)
    fail = _SweepErrors(name)
    unknown = [key for key in raw if key not in SWEEP_KEYS]
    if unknown:
        raise fail(f"{unknown[0]}: unknown sweep key; valid keys: {', '.join(SWEEP_KEYS)}")
    base = resolve_base(raw.get("base"), path, fail)
    set_values = _check_overrides(raw.get("set"), "set", fail)
    seeds = parse_seeds(raw.get("seeds", [0]), fail)
    metric = _optional_string(raw, "metric", DEFAULT_METRIC, fail)
    if metric not in METRICS:
        raise fail(f"metric: {short_repr(metric)} is not a number of a run's summary.json; one of {', '.join(METRICS)}")
    variants_raw = raw.get("variants") or {}
    if not isinstance(variants_raw, dict):
        raise fail(f"variants must be a mapping of arm names to overrides, got {format_value(variants_raw)}")
    searches = {v: o["search"] for v, o in variants_raw.items() if isinstance(o, dict) and "search" in o}
    variants = {
        _check_name(variant, f"variants.{variant}", fail): _check_overrides(
            {k: x for k, x in o.items() if k != "search"} if isinstance(o, dict) else o, f"variants.{variant}", fail, variant)
        for variant, o in variants_raw.items()
    }
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise fail(f"grid must be a mapping of dotted keys to lists of values, got {format_value(grid_raw)}")
    _check_overrides(grid_raw, "grid", fail)
    for key, values in grid_raw.items():
        if not isinstance(values, list) or not values:
            raise fail(f"grid.{key} must be a non-empty list of values, got {format_value(values)}")
    check_size(count_arms(variants, grid_raw), len(seeds), fail)
    arms = expand_arms(variants, grid_raw, fail)
    baseline = _optional_string(raw, "baseline", None, fail)
    if baseline is not None and baseline not in {arm.name for arm in arms}:
        raise fail(f"baseline: {short_repr(baseline)} is not an arm; arms: {listed([arm.name for arm in arms])}")
    curve = _optional_string(raw, "curve", DEFAULT_CURVE, fail)
    report_settings(raw, fail)  # metric_mode and threshold, which the manifest reads from raw
    threads = raw.get("threads_per_run", 1)
    if not _is_int(threads) or threads < 1:
        raise fail(f"threads_per_run must be an integer >= 1, got {format_value(threads)}")
    per_process = parse_seeds_per_process(raw.get("seeds_per_process"), len(seeds), fail)
    try:
        base_tree = read_yaml(base)
    except ConfigError as err:
        raise fail(f"base: {err}") from None
    runs = build_runs(base_tree, set_values, arms, seeds, threads, validate, fail)
    from rlopt.sweep.search import arm_searches  # noqa: PLC0415 (search imports nothing of spec)
    searches = arm_searches(raw.get("search"), searches, arms, runs, lambda arm, values: _build(
        base_tree, {**set_values, **arm.overrides, **values}, seeds[0], threads, validate, fail, arm.name), fail)
    return Sweep(name=name, path=path, base=base, set=set_values, seeds=seeds, arms=arms, baseline=baseline,
                 metric=metric, curve=curve, threads_per_run=threads, runs=runs, raw=raw, searches=searches,
                 seeds_per_process=per_process)
