"""``agent.learn(n)``: SB3's ``learn`` on top of :class:`~rlopt.trainer.Trainer` — calls continue
counting (``reset_num_timesteps=False``), schedules are re-fitted to the new total, the envs and the
episodes in progress are kept between calls (:class:`Learning`, one per agent). Typed against the
:class:`~rlopt.learner.Learner` protocol plus the schedule attributes every agent has (no agent is
imported here); it talks to the trainer through its public methods only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from rlopt.coefficients import refit_run_length
from rlopt.config.validation import TOTAL_STEPS_MAX
from rlopt.errors import ConfigError, short_repr
from rlopt.files import RunDirLocked, check_new_run_dir, lock_run_dir
from rlopt.trainer import Trainer


class Learning:
    """What ``agent.learn`` keeps between calls: the last call's :class:`Trainer` (its envs and
    episodes still open) and the lock on the run directory it logs into. Each agent owns one."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.trainer: Trainer | None = None
        """The last call's trainer; kept only after a call that ends normally (an interrupted one closed its envs)."""
        self.run_dir_lock: tuple[Path, Any] | None = None
        """``(resolved run_dir, its open lock file)`` while this agent logs into ``run_dir``."""

    def learn(self, total_steps: int | None, run_dir: str | Path | None, progress: bool, reset_num_timesteps: bool) -> dict:
        """Train the agent ``total_steps`` more env steps (default: the config's) in its env; returns
        the summary. ``cfg.total_steps`` becomes the total trained to, and the schedules' horizon.

        Calls continue counting (SB3's ``reset_num_timesteps=False``): the step counter (TensorBoard
        x-axis, the summary's ``total_steps``, ``updates_done``), the episodes in progress and the
        logs and checkpoints (``run_dir`` None keeps the previous call's) go on where the previous
        call stopped. Every schedule is re-fitted to the new total from the current update
        (:func:`rlopt.coefficients.refit_run_length`): a linear lr that reached 0 at the end of the
        previous call resumes at lr0·(1 − u/U) at update u of the now U-update run. A loaded agent
        (``PPO.load``, ``agents.load``), even one trained to its end with its lr at 0, continues
        the same way from its ``updates_done`` (env steps = updates × batch size), with fresh
        episodes. ``reset_num_timesteps=True`` restarts the count at 0: fresh episodes, schedules
        from update 0 over ``total_steps``, logs only in the ``run_dir`` given (a new run); the
        weights and optimizer moments are kept.

        A ``run_dir`` is new or empty, or the one this agent's previous call logged into (continued):
        another run's directory is refused with a one-line ConfigError, as ``rlopt train --run-dir``
        refuses it (resume a run with ``rlopt train --resume``). The run's total is at most
        ``TOTAL_STEPS_MAX`` (10**11) env steps.
        """
        agent = self.agent
        steps = agent.cfg.total_steps if total_steps is None else total_steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ConfigError(f"learn: total_steps must be an int >= 1, got {short_repr(steps)}")
        trainer = self.trainer  # the last call's, its envs still open
        continuing = trainer is not None and not reset_num_timesteps
        if reset_num_timesteps:
            done = 0
        else:  # env steps the run has: the previous call's, or a loaded agent's
            done = trainer.env_steps if trainer is not None else agent.updates_done * agent.cfg.batch_size
        if done + int(steps) > TOTAL_STEPS_MAX:
            raise ConfigError(f"learn: total_steps {short_repr(int(steps))} would take the run past {TOTAL_STEPS_MAX:.0e} "
                              f"env steps (it has done {done:,}); give at most {TOTAL_STEPS_MAX - done:,}")  # fmt: skip
        own = continuing and trainer.run_dir is not None and run_dir is not None and _same_dir(trainer.run_dir, run_dir)
        if run_dir is not None and not own:  # a new run directory, never another run's (as rlopt train --run-dir)
            hint = "; give a new directory (a later learn call without run_dir continues in this call's)"
            check_new_run_dir(Path(run_dir), "learn: run_dir", hint)
        self.trainer = None  # kept only after a call that ends normally (an interrupted one closed its envs)
        if trainer is None or reset_num_timesteps:
            if trainer is not None:
                trainer.close()
            if reset_num_timesteps:
                agent.updates_done = 0
            trainer = Trainer(agent, run_dir=run_dir, progress=progress, env_steps=agent.updates_done * agent.cfg.batch_size)
        else:
            trainer.set_output(run_dir, progress)
        previous_updates = agent.cfg.num_updates
        agent.cfg.total_steps = trainer.env_steps + int(steps)
        changed = refit_run_length(agent, agent.cfg.num_updates, previous_updates)
        if changed and progress and agent.updates_done > 0:
            print(f"rlopt: continuing to {agent.cfg.total_steps:,} env steps: {'; '.join(changed)}", file=sys.stderr)
        self._hold_run_dir_lock(trainer.run_dir)
        summary = trainer.train(agent.cfg.total_steps, keep_envs=True)
        self.trainer = trainer
        return summary

    def _hold_run_dir_lock(self, run_dir: Path | None) -> None:
        """Hold ``RUN_DIR/.lock`` (as ``rlopt train`` does) while the agent logs into ``run_dir``: another
        process training into the same directory gets a one-line ConfigError instead of corrupting it.
        Kept across ``learn`` calls; released when the agent moves to another directory (or dies)."""
        held = self.run_dir_lock
        if held is not None and (run_dir is None or held[0] != Path(run_dir).resolve()):
            held[1].close()
            self.run_dir_lock = held = None
        if run_dir is None or held is not None:
            return
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        try:
            self.run_dir_lock = (Path(run_dir).resolve(), lock_run_dir(Path(run_dir)))
        except RunDirLocked as err:
            raise ConfigError(f"learn: run_dir {err}") from None


def _same_dir(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same directory (resolved; a missing one compares by its path)."""
    return Path(a).resolve() == Path(b).resolve()
