"""The training loop: collect → ``agent.update(batch)`` → log stats → checkpoint.

Data flows one way: env → rollout batch → learner.update → UpdateStats → TensorBoard. The
trainer is typed against the :class:`~rlopt.learner.Learner` protocol and imports no agent; the
learner never sees the logger. The trainer owns the loop, checkpoints, fault counting and the
evaluations; what a run writes besides checkpoints (``config.yaml``, TensorBoard, the progress
bar, ``summary.json``) is its :class:`~rlopt.run_logger.RunLogger`'s.

What makes a run trustworthy (issue "Runs you can trust"):

* every update is all-or-nothing (:mod:`rlopt.rollback`): if the agent reports a skipped update
  (non-finite observation, reward, loss or gradient), the networks and optimizer states are
  restored to their values before the update, whatever the agent had already stepped;
* scalars are flushed before each checkpoint, and a resumed writer purges everything logged
  after the checkpoint it resumes from (``purge_step``), so a run killed at any moment and
  resumed logs each step exactly once, with the values of the uninterrupted run;
* interval checkpoints are written only after a healthy update, so the checkpoint left behind
  by a run stopped for numerical faults is the last good one.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from rlopt.checkpoint import (
    checkpoint_path,
    first_readable,
    list_checkpoints,
    load_checkpoint,
    load_envs,
    rng_state,
    save_best_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from rlopt.envs import make_vec_env
from rlopt.errors import ConfigError, Interrupted, NumericalFault
from rlopt.evaluation import evaluate_during_training, evaluate_episodes
from rlopt.learner import Learner, UpdateStats
from rlopt.normalization import RewardScaler
from rlopt.rollback import WeightsSnapshot
from rlopt.rollout import RolloutCollector
from rlopt.run_files import (
    CHECKPOINT_FORMAT_VERSION,
    check_resume_config,
    saved_total_steps,
    stored_config,
    strict_json_summary,
)
from rlopt.run_logger import RunLogger

class _Unreadable(Exception):
    """A checkpoint file (``.pt`` or its ``.env``) that cannot be loaded; the message names it."""


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------


class Trainer:
    """Runs one learner in its configured vector env; with a ``run_dir`` it logs and checkpoints."""

    def __init__(
        self, agent: Learner, run_dir: str | Path | None = None, progress: bool = True, env_steps: int = 0
    ) -> None:
        """``env_steps``: the steps the agent has already trained (``agent.learn`` of a loaded agent)."""
        self.agent = agent
        self.cfg = cfg = agent.cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.logger = RunLogger(progress)
        self.envs = make_vec_env(cfg.env.id, cfg.env.num_envs, seed=cfg.seed)
        self.collector = RolloutCollector(
            self.envs, cfg.rollout.n_steps, device=agent.device, obs_normalizer=agent.obs_normalizer, seed=cfg.seed,
            obs_clip=cfg.env.obs_clip,
            reward_scaler=RewardScaler(cfg.env.num_envs, cfg.gamma, clip=cfg.env.reward_clip)
            if cfg.env.normalize_reward
            else None,
        )
        self.env_steps = env_steps
        self.skipped_updates = 0
        self.consecutive_faults = 0
        self.wall_seconds = 0.0  # rollouts + updates
        self.learn_seconds = 0.0  # the whole loop: also logging, progress bar, evaluation and checkpoints
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.best_eval_return = -math.inf
        self.best_eval_step: int | None = None
        self.last_checkpoint: Path | None = None
        self._interrupt_requested = False
        self._previous_sigint_handler: Any = None
        self.resumed_total_steps: int | None = None  # what the checkpoint resume() restored was trained for
        self._snapshot = WeightsSnapshot(*agent.trainables())  # taken before every update, restored if skipped

    # ----------------------------------------------------------------- run directory
    def set_output(self, run_dir: str | Path | None, progress: bool) -> None:
        """Before another :meth:`train` (``agent.learn`` called again): log and checkpoint into
        ``run_dir`` from now on (None keeps the current directory); draw a progress bar or not."""
        if run_dir is not None:
            self.run_dir = Path(run_dir)
        self.logger.progress = progress

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (the envs themselves are pickled aside)."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "config": stored_config(self.cfg),
            "env_steps": self.env_steps,
            "skipped_updates": self.skipped_updates,
            "consecutive_faults": self.consecutive_faults,
            "wall_seconds": self.wall_seconds,
            "learn_seconds": self.learn_seconds,
            "recent_returns": list(self.recent_returns),
            "best_eval_return": self.best_eval_return,
            "best_eval_step": self.best_eval_step,
            "agent": self.agent.state_dict(),
            "collector": self.collector.state_dict(),
            "rng": rng_state(),
        }

    def save_checkpoint(self) -> Path | None:
        """Flush the scalars logged so far, then write ``step_<env_steps>.pt`` (+ ``.env``).

        The flush comes first: a SIGKILL right after the checkpoint must not lose scalars of
        steps the checkpoint covers, since a resume only re-logs the steps after it.
        """
        if self.run_dir is None:
            return None
        self.logger.flush()
        self.last_checkpoint = save_checkpoint(
            self.run_dir, self.env_steps, self.state_dict(), self.envs, self.cfg.checkpoint.keep
        )
        return self.last_checkpoint

    def resume(self, checkpoint: Path | None = None, require_same_config: bool = False) -> int:
        """Restore the newest readable complete checkpoint (or ``checkpoint``); returns its env steps.

        An unreadable checkpoint (a torn ``.pt``, or a torn ``.env`` beside it) is skipped with a
        RuntimeWarning naming the file, for the one before it; if none is readable, ConfigError. With no
        checkpoint at all (a run killed before its first), 0: train() starts over, purging what it logged.
        With ``require_same_config`` (``rlopt train --resume``), a checkpoint trained with another
        config (keys other than ``RESUME_MUTABLE_KEYS`` and ``total_steps``) is a ConfigError too.
        The schedules stay as the checkpoint has them: after a change of ``total_steps``, re-fit
        them (:func:`rlopt.coefficients.refit_run_length`, as ``rlopt train --total-steps`` does).
        """
        if self.run_dir is None:
            raise ValueError("resume needs a Trainer with a run_dir")
        candidates = [Path(checkpoint)] if checkpoint is not None else list_checkpoints(self.run_dir)[::-1]
        if not candidates:  # a run killed before its first checkpoint starts over: purge the points it logged
            self.logger.purge_after(0)
            return 0
        path, steps, skipped = first_readable(candidates, lambda p: self._restore(p, require_same_config),
                                              _Unreadable, "--resume", " to resume from")  # fmt: skip
        for message in skipped:  # warned about once a checkpoint is restored (none is: one error line)
            warnings.warn(f"{message}; resuming from the previous checkpoint {path.name}", RuntimeWarning, stacklevel=2)
        return steps

    def _restore(self, checkpoint: Path, require_same_config: bool) -> int:
        """Load one checkpoint into the trainer; raises :class:`_Unreadable` naming the bad file."""
        try:
            state = load_checkpoint(checkpoint)
        except Exception as err:
            raise _Unreadable(f"{checkpoint} is not a readable rlopt checkpoint ({type(err).__name__})") from None
        if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_FORMAT_VERSION:
            version = state.get("format_version") if isinstance(state, dict) else None
            raise ConfigError(
                f"--resume: {checkpoint} has checkpoint format {version!r}; "
                f"this rlopt reads format {CHECKPOINT_FORMAT_VERSION}"
            )
        if require_same_config:
            check_resume_config(checkpoint, state.get("config"), self.cfg)
        try:
            envs = load_envs(checkpoint)
        except Exception as err:  # unpickling a torn file: EOFError, UnpicklingError, ...
            raise _Unreadable(f"{checkpoint.with_suffix('.env')} is not a readable pickled env "
                              f"({type(err).__name__})") from None  # fmt: skip
        try:
            self.agent.load_state_dict(state["agent"])
            self.collector.load_state_dict(state["collector"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise _Unreadable(f"{checkpoint} does not fit this agent ({type(err).__name__})") from None
        if envs is not None:
            self.envs.close()
            self.envs = self.collector.envs = envs
        if envs is None:
            warnings.warn(
                f"{checkpoint} has no pickled envs beside it: episodes restart from the seed, so the "
                "resumed run will not match an uninterrupted one", RuntimeWarning, stacklevel=2,
            )
            self.collector.reset(self.cfg.seed)
        set_rng_state(state["rng"])
        self.env_steps = int(state["env_steps"])
        self.skipped_updates = int(state["skipped_updates"])
        self.consecutive_faults = int(state["consecutive_faults"])
        self.wall_seconds = float(state["wall_seconds"])
        self.learn_seconds = float(state.get("learn_seconds", self.wall_seconds))  # older checkpoints: rollouts + updates
        self.recent_returns.clear()
        self.recent_returns.extend(state["recent_returns"])
        self.best_eval_return = float(state.get("best_eval_return", -math.inf))
        best_step = state.get("best_eval_step")
        self.best_eval_step = None if best_step is None else int(best_step)
        self.last_checkpoint = Path(checkpoint)
        self.resumed_total_steps = saved_total_steps(state.get("config"))
        self.logger.purge_after(self.env_steps)  # the points the crashed run logged after this checkpoint
        return self.env_steps

    # ----------------------------------------------------------------- the loop
    def train(self, total_steps: int | None = None, keep_envs: bool = False) -> dict[str, Any]:
        """Train until ``total_steps`` env steps, evaluate, write ``summary.json``; return it.

        The writer is closed at the end; with ``keep_envs`` the envs stay open, so that a later
        ``train`` with a larger total continues the same episodes (``agent.learn`` called twice).
        Raises :class:`Interrupted` after SIGINT (a checkpoint is written first) and
        :class:`NumericalFault` after ``health.max_consecutive_faults`` skipped updates in a row.
        """
        total = int(total_steps if total_steps is not None else self.cfg.total_steps)
        self.logger.start(self.run_dir, self.cfg, total, self.env_steps)
        next_checkpoint = self._next_checkpoint_step()
        next_eval = self._next_eval_step()
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            self._previous_sigint_handler = signal.signal(signal.SIGINT, self._request_interrupt)
        try:
            while self.env_steps < total:
                started = time.perf_counter()
                rollout = self.collector.collect(self.agent.act, self.agent.value)
                batch = self.agent.prepare_batch(self.collector.buffer)
                self._snapshot.take()
                stats = self.agent.update(batch)
                if stats.skipped:
                    self._snapshot.restore()
                elapsed = time.perf_counter() - started
                self.wall_seconds += elapsed
                self.env_steps += rollout.env_steps
                self.recent_returns.extend(rollout.episode_returns)
                self._count_faults(stats)
                sps = rollout.env_steps / max(elapsed, 1e-9)
                self.logger.log_update(self.env_steps, stats, rollout, sps, self.skipped_updates)
                self._stop_if_unhealthy()
                self.logger.show_progress(rollout.env_steps, sps, self._recent_return())
                # Before the interval checkpoint, so that it records the best return so far.
                if next_eval is not None and self.env_steps >= next_eval:
                    self._evaluate_during_training()
                    next_eval = self._next_eval_step()
                # Interval checkpoints only after a healthy update: the last one stays good.
                if next_checkpoint is not None and self.env_steps >= next_checkpoint and self.consecutive_faults == 0:
                    self.save_checkpoint()
                    next_checkpoint = self._next_checkpoint_step()
                self.learn_seconds += time.perf_counter() - started
                if self._interrupt_requested:
                    self._save_if_new()
                    raise Interrupted(self.run_dir, self.env_steps)
            self._save_if_new()
        except BaseException:
            self.close()
            raise
        finally:
            if in_main_thread and self._previous_sigint_handler is not None:
                signal.signal(signal.SIGINT, self._previous_sigint_handler)
            self.logger.end_progress()
        summary = self._summarise()
        self.close(envs=not keep_envs)
        return summary

    def _save_if_new(self) -> None:
        if self.run_dir is None:
            return
        if self.last_checkpoint != checkpoint_path(self.run_dir, self.env_steps):
            self.save_checkpoint()

    def _next_multiple(self, every: int) -> int | None:
        """The first multiple of ``every`` env steps after now; None when ``every`` is 0 (off)."""
        return None if every <= 0 else (self.env_steps // every + 1) * every

    def _next_checkpoint_step(self) -> int | None:
        return None if self.run_dir is None else self._next_multiple(self.cfg.checkpoint.every_steps)

    def _next_eval_step(self) -> int | None:
        return self._next_multiple(self.cfg.eval.every_steps)

    def _evaluate_during_training(self) -> None:
        """Deterministic evaluation on separate envs (training RNG streams untouched), logged as
        ``eval/*`` at this env step; a new best mean return rewrites ``checkpoints/best.pt``."""
        result = evaluate_during_training(self.agent, self.cfg.eval.episodes_during, self.cfg.seed, self.env_steps)
        self.logger.log_eval(self.env_steps, result)
        if result["return_mean"] > self.best_eval_return:  # NaN is never a best
            self.best_eval_return = result["return_mean"]
            self.best_eval_step = self.env_steps
            if self.run_dir is not None:
                state = self.state_dict()
                state["eval_return_mean"] = result["return_mean"]
                save_best_checkpoint(self.run_dir, state)

    def _request_interrupt(self, signum: int, frame: Any) -> None:
        """First Ctrl-C: finish the update, checkpoint, stop. A second one acts as before."""
        self._interrupt_requested = True
        if self._previous_sigint_handler is not None:
            signal.signal(signal.SIGINT, self._previous_sigint_handler)

    def _count_faults(self, stats: UpdateStats) -> None:
        """Count skipped updates, in total and in a row."""
        if stats.skipped:
            self.skipped_updates += 1
            self.consecutive_faults += 1
        else:
            self.consecutive_faults = 0

    def _stop_if_unhealthy(self) -> None:
        """K consecutive skipped updates stop the run; the last good checkpoint is left as it is."""
        limit = self.cfg.health.max_consecutive_faults
        if self.consecutive_faults >= limit:
            kept = f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint written"
            raise NumericalFault(
                f"{self.consecutive_faults} consecutive updates had non-finite observations, rewards, losses or "
                f"gradients and were skipped (health.max_consecutive_faults={limit}); stopped at "
                f"{self.env_steps} env steps; {kept}"
            )

    def _recent_return(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def _summarise(self) -> dict[str, Any]:
        result = evaluate_episodes(self.agent, self.cfg.eval.episodes, self.cfg.seed)
        summary = {
            "agent": self.cfg.agent,
            "env_id": self.cfg.env.id,
            "seed": self.cfg.seed,
            "total_steps": self.env_steps,
            "wall_seconds": round(self.wall_seconds, 3),
            "learn_seconds": round(self.learn_seconds, 3),
            "steps_per_second": round(self.env_steps / max(self.wall_seconds, 1e-9), 1),
            "eval_return_mean": result["return_mean"],
            "eval_return_std": result["return_std"],
            "eval_episodes": result["episodes"],
            "skipped_updates": self.skipped_updates,
            "eval_truncated_episodes": result["truncated_episodes"],
            "eval_max_episode_steps": result["max_episode_steps"],
        }
        summary = strict_json_summary(summary)
        self.logger.write_summary(summary)
        return summary

    def close(self, envs: bool = True) -> None:
        """Flush and close the TensorBoard writer and (with ``envs``) the envs; idempotent, also after
        the writer's flush failed (a full disk: it is not retried)."""
        self.logger.close()
        if envs:
            self.envs.close()
