"""K seeds of one config in one process (issue 17), built as K lone runs build themselves.

The top-floor half of :mod:`rlopt.stacked`: seed ``k``'s agent is ``agents.build_agent`` with
``seed=k`` (its initial weights are its lone run's), and its random stream continues from the
global RNG state right after, where the lone run draws its first action.

    summaries = train_stacked(load_config("ppo_cartpole"), seeds=range(10))
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from agents import build_agent
from rlopt.config import Config
from rlopt.errors import ConfigError
from rlopt.stacked.learner import StackedLearner, check_stackable
from rlopt.stacked.random import generator_from_global_state
from rlopt.stacked.training import StackedTraining


def build_stacked(cfg: Config, seeds: Iterable[int]) -> StackedLearner:
    """A :class:`StackedLearner` of ``seeds`` for ``cfg`` (its ``seed`` ignored); ConfigError for
    what a stack does not run (:func:`rlopt.stacked.learner.check_stackable`) or a bad config."""
    seeds = [int(s) for s in seeds]
    check_stackable(cfg, seeds)
    agents, generators = [], []
    for seed in seeds:
        seed_cfg = copy.deepcopy(cfg)
        seed_cfg.seed = seed
        agents.append(build_agent(seed_cfg))
        generators.append(generator_from_global_state())
    return StackedLearner(agents, generators)


def train_stacked(
    cfg: Config, seeds: Iterable[int], total_steps: int | None = None, evaluate: bool = True
) -> list[dict[str, Any]]:
    """Train ``seeds`` of ``cfg`` together for ``total_steps`` env steps per seed (default
    ``cfg.total_steps``); one summary per seed, in the order of ``seeds``, with the final
    deterministic evaluation (``eval.episodes``) of each (``evaluate=False``: none)."""
    if total_steps is not None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ConfigError(f"total_steps: must be an int >= 1, got {total_steps!r}")
        cfg = copy.deepcopy(cfg)
        cfg.total_steps = total_steps
    return StackedTraining(build_stacked(cfg, seeds)).train(evaluate=evaluate)
