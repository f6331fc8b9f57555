"""K seeds of one config trained in one process (:class:`StackedTraining`), one summary each;
``agents.stacked.train_stacked(cfg, seeds)`` builds and runs it.

The loop of :class:`rlopt.trainer.Trainer` without a run directory (not yet: logs, checkpoints,
resume, evaluations during training -- ``eval.every_steps`` and ``checkpoint.*`` are ignored):
collect every seed's rollout with one policy call per step (:class:`StackedCollector`), one
stacked update, count faults per seed; then each seed's deterministic evaluation
(:func:`rlopt.evaluation.evaluate_episodes`, seeded as its lone run's). A seed with
``health.max_consecutive_faults`` skipped updates in a row stops learning (its summary says so);
the others go on.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import numpy as np

from rlopt.evaluation import evaluate_episodes
from rlopt.stacked.learner import StackedLearner
from rlopt.stacked.rollout import build_collectors


class StackedTraining:
    """Runs a :class:`StackedLearner` in its seeds' envs (the lone trainer's loop, per seed)."""

    def __init__(self, learner: StackedLearner) -> None:
        self.learner = learner
        self.collector = build_collectors(
            learner.cfg, learner.seeds, [a.obs_normalizer for a in learner.agents], device=learner.device
        )
        k = learner.num_seeds
        self.env_steps = 0
        self.skipped_updates = [0] * k
        self.consecutive_faults = [0] * k
        self.recent_returns = [deque(maxlen=100) for _ in range(k)]
        self.wall_seconds = 0.0
        self.last_stats: list[Any] = []

    def train(self, total_steps: int | None = None, evaluate: bool = True) -> list[dict[str, Any]]:
        """Train until ``total_steps`` env steps per seed (default ``cfg.total_steps``); summaries."""
        learner, limit = self.learner, self.learner.cfg.health.max_consecutive_faults
        total = int(total_steps if total_steps is not None else learner.cfg.total_steps)
        try:
            while self.env_steps < total:
                started = time.perf_counter()
                rollouts = self.collector.collect(learner.act, learner.value)
                batch = learner.prepare_batch(self.collector.buffer)
                self.last_stats = learner.update(batch)
                self.wall_seconds += time.perf_counter() - started
                self.env_steps += rollouts[0].env_steps
                for k, (rollout, stats) in enumerate(zip(rollouts, self.last_stats)):
                    self.recent_returns[k].extend(rollout.episode_returns)
                    self.skipped_updates[k] += int(stats.skipped)
                    self.consecutive_faults[k] = self.consecutive_faults[k] + 1 if stats.skipped else 0
                    if self.consecutive_faults[k] >= limit:
                        learner.frozen[k] = True
        finally:
            self.collector.close()
        return [self._summary(k, evaluate) for k in range(learner.num_seeds)]

    def _summary(self, k: int, evaluate: bool) -> dict[str, Any]:
        agent = self.learner.agents[k]
        result = evaluate_episodes(agent, agent.cfg.eval.episodes, agent.cfg.seed) if evaluate else {}
        summary = {
            "agent": agent.cfg.agent,
            "env_id": agent.cfg.env.id,
            "seed": agent.cfg.seed,
            "total_steps": self.env_steps,
            "stacked_seeds": self.learner.num_seeds,
            "wall_seconds_per_seed": round(self.wall_seconds / self.learner.num_seeds, 3),
            "eval_return_mean": result.get("return_mean", math.nan),
            "eval_return_std": result.get("return_std", math.nan),
            "eval_episodes": result.get("episodes", 0),
            "recent_return_mean": float(np.mean(self.recent_returns[k])) if self.recent_returns[k] else math.nan,
            "skipped_updates": self.skipped_updates[k],
        }
        if self.learner.frozen[k]:
            summary["error"] = (f"{self.consecutive_faults[k]} consecutive updates skipped for non-finite values "
                                f"(health.max_consecutive_faults); this seed stopped learning")  # fmt: skip
        return summary
