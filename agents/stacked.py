"""K seeds of one config in one process (issue 17), built as K lone runs build themselves.

The top-floor half of :mod:`rlopt.stacked`: seed ``k``'s agent is ``agents.build_agent`` with
``seed=k`` (its initial weights are its lone run's), and its random stream continues from the
global RNG state right after, where the lone run draws its first action.

    summaries = train_stacked(load_config("ppo_cartpole"), seeds=range(10))
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agents.registry import build_agent
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
    cfg: Config,
    seeds: Iterable[int],
    total_steps: int | None = None,
    evaluate: bool = True,
    run_dir: str | Path | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train ``seeds`` of ``cfg`` together for ``total_steps`` env steps per seed (default
    ``cfg.total_steps``); one summary per seed, in the order of ``seeds``, with the final
    deterministic evaluation (``eval.episodes``) of each (``evaluate=False``: none). With
    ``run_dir``, each seed writes its lone run directory ``run_dir/seed_<k>/`` (an existing
    non-empty ``run_dir`` is the caller's to refuse: ``rlopt train --seeds`` does)."""
    if total_steps is not None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ConfigError(f"total_steps: must be an int >= 1, got {total_steps!r}")
        cfg = copy.deepcopy(cfg)
        cfg.total_steps = total_steps
    return StackedTraining(build_stacked(cfg, seeds), run_dir=run_dir, progress=progress).train(evaluate=evaluate)


class StackedAgents:
    """The Python face of a stack (``PPO.from_config(..., seeds=range(10))``): ``agents[k]`` is seed
    ``k``'s lone agent (``predict``, ``save``); :meth:`learn` trains all seeds together once and
    returns one summary per seed (with ``run_dir``, each seed writes ``run_dir/seed_<k>/``)."""

    def __init__(self, cfg: Config, seeds: Iterable[int]) -> None:
        self.cfg = cfg
        self.seeds = [int(s) for s in seeds]
        self.learner = build_stacked(cfg, self.seeds)
        self._learned = False

    @property
    def agents(self) -> list[Any]:
        """Each seed's lone agent, in the order of ``seeds`` (its state current after :meth:`learn`)."""
        return self.learner.agents

    def learn(
        self, total_steps: int | None = None, run_dir: str | Path | None = None, progress: bool = True
    ) -> list[dict[str, Any]]:
        """Train every seed ``total_steps`` env steps (default the config's; the schedules are fitted
        to it) and evaluate each; one summary per seed. A stack learns once (continuing one is
        ``rlopt train --resume RUN_DIR`` of its ``run_dir``); a non-empty ``run_dir`` is refused."""
        from rlopt.stacked.runs import check_new_stack_dir

        if self._learned:
            raise RuntimeError("a stack learns once; build a new one, or resume its run_dir with rlopt train --resume")
        if total_steps is not None:
            if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
                raise ConfigError(f"total_steps: must be an int >= 1, got {total_steps!r}")
            if total_steps != self.cfg.total_steps:  # the schedules' horizon: rebuilt as a lone learn re-fits them
                self.cfg = copy.deepcopy(self.cfg)
                self.cfg.total_steps = total_steps
                self.learner = build_stacked(self.cfg, self.seeds)
        if run_dir is not None:
            check_new_stack_dir(Path(run_dir))
        self._learned = True
        summaries = StackedTraining(self.learner, run_dir=run_dir, progress=progress).train()
        self.learner.sync_agents()  # each lone agent's optimizer state and schedules, as after its own learn
        return summaries
