"""Each run's config rendered as ``config.yaml`` text, as a plain dict and as a hash, once per arm.

OmegaConf takes ~0.1 s to render a config, and the runs of an arm differ only in ``seed``: the
first run of an arm is rendered and the others get a copy with their seed put in. A run whose
config differs otherwise (a value interpolating ``${seed}``) is rendered on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

from rlopt.config import Config, config_to_dict, config_to_yaml

T = TypeVar("T")


class Run(Protocol):
    """What rendering reads of a run (:class:`rlopt.sweep.spec.RunSpec`)."""

    arm: str
    seed: int
    config: Config


SEED_LINE = re.compile(r"^seed: \d+$", re.MULTILINE)
"""The top-level ``seed`` line of :func:`~rlopt.config.config_to_yaml`'s text."""


def tree_hash(tree: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a config as :func:`~rlopt.config.config_to_dict` gives it."""
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def config_hash(cfg: Config) -> str:
    """sha256 of the canonical JSON of the resolved config."""
    return tree_hash(config_to_dict(cfg))


def per_arm(runs: Sequence[Run], render: Callable[[Config], T], reseed: Callable[[T, int], T]) -> list[T]:
    """``render(run.config)`` of each run, computed once per arm (OmegaConf takes ~0.1 s a config): a
    run whose config is its arm's first but for the seed gets ``reseed(first rendering, seed)``."""
    out: list[T] = []
    first: dict[str, tuple[Config, T]] = {}
    for run in runs:
        seen = first.get(run.arm)
        if seen is not None and dataclasses.replace(seen[0], seed=run.seed) == run.config:
            out.append(reseed(seen[1], run.seed))
        else:
            out.append(render(run.config))
            first.setdefault(run.arm, (run.config, out[-1]))
    return out


def config_texts(runs: Sequence[Run]) -> list[str]:
    """Each run's config as :func:`~rlopt.config.config_to_yaml` writes it (``RUN_DIR/config.yaml``)."""
    return per_arm(runs, config_to_yaml, lambda text, seed: SEED_LINE.sub(f"seed: {seed}", text, count=1))


def config_trees(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Each run's config as :func:`~rlopt.config.config_to_dict` gives it."""
    return per_arm(runs, config_to_dict, lambda tree, seed: {**tree, "seed": seed})
