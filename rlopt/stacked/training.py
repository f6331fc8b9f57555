"""K seeds of one config trained in one process (:class:`StackedTraining`), one summary each;
``agents.stacked.train_stacked(cfg, seeds)`` builds and runs it.

The loop of :class:`rlopt.trainer.Trainer`; with a ``run_dir`` each seed writes the lone run
directory ``run_dir/seed_<k>/`` (:mod:`rlopt.stacked.runs`: config, TensorBoard, interval and final
checkpoints, ``summary.json``); one tqdm bar for the stack; :meth:`StackedTraining.resume` continues
it exactly (:mod:`rlopt.stacked.resume`). Every ``eval.every_steps`` env steps each seed still learning
is evaluated as its lone run is, all together (:meth:`StackedTraining._evaluate_during_training`). As alone, the
first Ctrl-C finishes the update, checkpoints every seed and raises :class:`rlopt.errors.Interrupted`.
Collect every seed's rollout with one policy call per step (:class:`StackedCollector`), one
stacked update, count faults per seed; then every seed's deterministic evaluation, all seeds
stepped together, each result its lone run's (:func:`rlopt.stacked.evaluation.evaluate_stacked`). A seed with
``health.max_consecutive_faults`` skipped updates in a row stops learning (its summary says so);
the others go on.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rlopt.errors import Interrupted
from rlopt.evaluation import global_rng_kept, training_eval_seed
from rlopt.run_files import strict_json_summary
from rlopt.stacked.evaluation import evaluate_stacked
from rlopt.stacked.learner import StackedLearner
from rlopt.stacked.rollout import build_collectors
from rlopt.stacked.runs import SeedRun, open_stack


class StackedTraining:
    """Runs a :class:`StackedLearner` in its seeds' envs (the lone trainer's loop, per seed)."""

    def __init__(
        self, learner: StackedLearner, run_dir: str | Path | None = None, progress: bool = False, mark: bool = True
    ) -> None:
        """``mark=False``: no ``run_dir/stacked.json`` (a sweep's arm directory, whose ``seed_<k>`` dirs
        are grouped into stacks by the sweep, :mod:`rlopt.sweep.stacking`)."""
        self.learner = learner
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.mark = mark
        self.progress = progress
        self.runs: list[SeedRun] = []
        self.collector = build_collectors(
            learner.cfg, learner.seeds, [a.obs_normalizer for a in learner.agents], device=learner.device
        )
        k = learner.num_seeds
        self.env_steps = 0
        self.skipped_updates = [0] * k
        self.consecutive_faults = [0] * k
        self.recent_returns = [deque(maxlen=100) for _ in range(k)]
        self.best_eval_return = [-math.inf] * k  # as Trainer.best_eval_return, per seed
        self.best_eval_step: list[int | None] = [None] * k
        self.resumed_total_steps: int | None = None  # what the checkpoint resume() restored was trained for
        self.wall_seconds = 0.0  # rollouts + updates of all seeds
        self.learn_seconds = 0.0  # the whole loop: also logging and checkpoints
        self.last_stats: list[Any] = []
        self._purge_step: int | None = None
        self._interrupted = False
        self._previous_sigint: Any = None

    def resume(self) -> int:
        """Continue the stack in ``run_dir`` from the newest env step every seed checkpointed
        (:mod:`rlopt.stacked.resume`); returns it (0: none, the stack starts over)."""
        from rlopt.stacked.resume import common_checkpoint_step, restore_stack
        from rlopt.stacked.runs import seed_dir

        if self.run_dir is None:
            raise ValueError("resume needs a StackedTraining with a run_dir")
        dirs = [seed_dir(self.run_dir, seed) for seed in self.learner.seeds]
        step = common_checkpoint_step(dirs)
        if step is not None:
            restore_stack(self, dirs, step)
        self._purge_step = (step or 0) + 1  # the points logged after it are dropped
        return step or 0

    def train(self, total_steps: int | None = None, evaluate: bool = True) -> list[dict[str, Any]]:
        """Train until ``total_steps`` env steps per seed (default ``cfg.total_steps``); summaries."""
        learner, limit = self.learner, self.learner.cfg.health.max_consecutive_faults
        total = int(total_steps if total_steps is not None else learner.cfg.total_steps)
        if self.run_dir is not None:
            self.runs = open_stack(self.run_dir, [a.cfg for a in learner.agents], self._purge_step, self.mark)
            self._purge_step = None
        every, eval_every = learner.cfg.checkpoint.every_steps, learner.cfg.eval.every_steps
        next_checkpoint = (self.env_steps // every + 1) * every if every > 0 else None
        next_eval = (self.env_steps // eval_every + 1) * eval_every if eval_every > 0 else None
        previous = self._previous_sigint = None
        if self.run_dir is not None and threading.current_thread() is threading.main_thread():
            previous = self._previous_sigint = signal.signal(signal.SIGINT, self._request_interrupt)  # first Ctrl-C
        bar = tqdm(total=total, initial=min(self.env_steps, total), unit="step", disable=not self.progress,
                   dynamic_ncols=True, leave=True, desc=f"{learner.num_seeds} seeds")  # fmt: skip
        try:
            while self.env_steps < total:
                started = time.perf_counter()
                rollouts = self.collector.collect(learner.act, learner.value)
                batch = learner.prepare_batch(self.collector.buffer)
                self.last_stats = learner.update(batch)
                elapsed = time.perf_counter() - started
                self.wall_seconds += elapsed
                self.env_steps += rollouts[0].env_steps
                for k, (rollout, stats) in enumerate(zip(rollouts, self.last_stats)):
                    self.recent_returns[k].extend(rollout.episode_returns)
                    self.skipped_updates[k] += int(stats.skipped)
                    self.consecutive_faults[k] = self.consecutive_faults[k] + 1 if stats.skipped else 0
                    if self.consecutive_faults[k] >= limit:
                        learner.frozen[k] = True
                    if self.runs:  # each seed's sps: its share of the stack's steps per second
                        self.runs[k].log(stats, rollout, self.skipped_updates[k], rollout.env_steps / max(elapsed, 1e-9), self.env_steps)
                returns = [r for seed_returns in self.recent_returns for r in seed_returns]
                bar.set_postfix(sps=f"{rollouts[0].env_steps * learner.num_seeds / max(elapsed, 1e-9):.0f}",  # all seeds
                                train_ret=f"{sum(returns) / len(returns) if returns else math.nan:.1f}", refresh=False)
                bar.update(min(rollouts[0].env_steps, total - bar.n))
                if next_eval is not None and self.env_steps >= next_eval:  # before the checkpoint, as alone
                    self._evaluate_during_training()
                    next_eval = (self.env_steps // eval_every + 1) * eval_every
                if next_checkpoint is not None and self.env_steps >= next_checkpoint and self.runs:
                    self.save_checkpoints()
                    next_checkpoint = (self.env_steps // every + 1) * every
                self.learn_seconds += time.perf_counter() - started
                if self._interrupted:
                    self.save_checkpoints()
                    raise Interrupted(self.run_dir, self.env_steps)
            if self.runs:
                self.save_checkpoints()
            results = evaluate_stacked(learner, learner.cfg.eval.episodes) if evaluate else [{}] * learner.num_seeds
            return [self._summary(k, result) for k, result in enumerate(results)]
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            bar.close()
            self.collector.close()
            for run in self.runs:
                run.close()

    def _request_interrupt(self, signum: int, frame: Any) -> None:
        """First Ctrl-C: finish the update, checkpoint, stop; a second one acts as before."""
        self._interrupted = True
        signal.signal(signal.SIGINT, self._previous_sigint)

    def _evaluate_during_training(self) -> None:
        """Each seed still learning: the lone trainer's deterministic evaluation at this env step
        (:func:`rlopt.evaluation.evaluate_during_training`'s result, seeded by the seed and the step;
        all seeds stepped together, global RNG states restored after), its ``eval/*`` scalars, and a
        new best mean return rewriting its ``checkpoints/best.pt``."""
        from rlopt.checkpoint import save_best_checkpoint

        learner = self.learner
        indices = [k for k in range(learner.num_seeds) if not learner.frozen[k]]  # a frozen seed's lone run stopped
        seeds = [training_eval_seed(learner.agents[k].cfg.seed, self.env_steps) for k in indices]
        with global_rng_kept():
            results = evaluate_stacked(learner, learner.cfg.eval.episodes_during, seeds, indices)
        for k, result in zip(indices, results):
            if self.runs:
                self.runs[k].logger.log_eval(self.env_steps, result)
            if result["return_mean"] > self.best_eval_return[k]:  # NaN is never a best
                self.best_eval_return[k], self.best_eval_step[k] = result["return_mean"], self.env_steps
                if self.runs:
                    state = self.seed_states([k])[0]
                    state["eval_return_mean"] = result["return_mean"]
                    save_best_checkpoint(self.runs[k].run_dir, self.runs[k].full_state(self.env_steps, state))

    def seed_states(self, seeds: list[int] | None = None) -> list[dict[str, Any]]:
        """The checkpoint state of each seed index in ``seeds`` (default all), the lone trainer's
        ``Trainer.state_dict`` keys (``agent`` is its lone ``Agent.state_dict``) and ``stacked``."""
        indices = range(self.learner.num_seeds) if seeds is None else seeds
        states = self.learner.seed_state_dicts()
        collectors = self.collector.state_dict()
        k_seeds = self.learner.num_seeds
        return [{
            "skipped_updates": self.skipped_updates[k], "consecutive_faults": self.consecutive_faults[k],
            "wall_seconds": self.wall_seconds / k_seeds, "learn_seconds": self.learn_seconds / k_seeds,
            "recent_returns": list(self.recent_returns[k]), "best_eval_return": self.best_eval_return[k],
            "best_eval_step": self.best_eval_step[k], "agent": states[k], "collector": collectors[k],
            "stacked": {"seeds": self.learner.seeds, "generator": self.learner.generators[k].get_state()},
        } for k in indices]  # fmt: skip

    def save_checkpoints(self) -> list[Path]:
        """Each seed's checkpoint at the current env step, in the lone trainer's format."""
        states = self.seed_states()
        return [run.save_checkpoint(self.env_steps, states[k], self.collector.collectors[k].envs)
                for k, run in enumerate(self.runs)]  # fmt: skip

    def _summary(self, k: int, result: dict[str, Any]) -> dict[str, Any]:
        """Seed ``k``'s summary with its final evaluation ``result`` (``{}``: none)."""
        agent = self.learner.agents[k]
        k_seeds = self.learner.num_seeds
        wall = self.wall_seconds / k_seeds  # each seed's share of the stack's time
        summary = {
            "agent": agent.cfg.agent,
            "env_id": agent.cfg.env.id,
            "seed": agent.cfg.seed,
            "total_steps": self.env_steps,
            "wall_seconds": round(wall, 3),
            "learn_seconds": round(self.learn_seconds / k_seeds, 3),
            "steps_per_second": round(self.env_steps / max(wall, 1e-9), 1),
            "eval_return_mean": result.get("return_mean", math.nan),
            "eval_return_std": result.get("return_std", math.nan),
            "eval_episodes": result.get("episodes", 0),
            "skipped_updates": self.skipped_updates[k],
            "eval_truncated_episodes": result.get("truncated_episodes", 0),
            "eval_max_episode_steps": result.get("max_episode_steps", 0),
        }
        if self.learner.frozen[k]:
            summary["error"] = (f"{self.consecutive_faults[k]} consecutive updates skipped for non-finite values "
                                f"(health.max_consecutive_faults); this seed stopped learning")  # fmt: skip
        return self.runs[k].write_summary(summary) if self.runs else strict_json_summary(summary)
