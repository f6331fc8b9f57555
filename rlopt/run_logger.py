"""What a run writes besides its checkpoints: ``config.yaml``, the TensorBoard scalars, the progress
bar and ``summary.json``. The :class:`~rlopt.trainer.Trainer` runs the loop and calls a
:class:`RunLogger` (rsl_rl's runner → logger split); the logger decides nothing about the run.

The run-directory files are written atomically (:mod:`rlopt.files`). Each ``train()`` opens one
TensorBoard writer; a writer opened after a resume purges every point logged after the checkpoint
it resumed from (``purge_step``), so a run killed at any moment and resumed logs each step once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tqdm import tqdm

from rlopt.config import Config, config_to_yaml
from rlopt.files import atomic_write_text
from rlopt.learner import UpdateStats
from rlopt.run_files import CONFIG_FILE, SUMMARY_FILE, wait_for_later_event_file_name


class RunLogger:
    """TensorBoard writer and progress bar of one trainer; with no run directory, only the bar."""

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress
        """Draw a progress bar (tqdm) during ``train()``."""
        self.run_dir: Path | None = None
        self.writer: Any = None
        self.bar: tqdm | None = None
        self.purge_step: int | None = None
        """Set after a resume: the next writer drops the points logged from this step on."""

    def purge_after(self, step: int) -> None:
        """After a resume from the checkpoint at ``step``: the next writer drops every later point
        (logged before the crash; resume itself writes nothing, rlopt train locks the run dir after it)."""
        self.purge_step = step + 1

    def start(self, run_dir: Path | None, cfg: Config, total: int, done: int) -> None:
        """Begin a ``train()`` to ``total`` env steps from ``done``: with a run directory, write its
        ``config.yaml`` and open the TensorBoard writer; then show the progress bar."""
        self.run_dir = run_dir
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / CONFIG_FILE, config_to_yaml(cfg))
            self._open_writer(run_dir, cfg.log.flush_seconds)
        self.bar = tqdm(total=total, initial=min(done, total), unit="step", disable=not self.progress,
                        dynamic_ncols=True, leave=True)  # fmt: skip

    def _open_writer(self, run_dir: Path, flush_seconds: float) -> None:
        if self.writer is not None:
            return
        from torch.utils.tensorboard import SummaryWriter

        from rlopt import event_crc

        event_crc.install()  # the same bytes, its checksums ~9x faster (per update: one event per seed)
        if self.purge_step is not None:
            wait_for_later_event_file_name(run_dir)
        self.writer = SummaryWriter(str(run_dir), purge_step=self.purge_step, flush_secs=flush_seconds)
        self.purge_step = None  # once: a later train() on this trainer must not purge its own steps

    def log_update(self, step: int, stats: UpdateStats, rollout: Any, sps: float, skipped_updates: int) -> None:
        """All scalars of this update as one TensorBoard event (one ``Summary`` with a value per tag):
        the same tags, steps and values as one ``add_scalar`` each, at a fraction of the cost."""
        if self.writer is None:
            return
        self.writer.file_writer.add_summary(self.update_summary(stats, rollout, sps, skipped_updates), step)

    @staticmethod
    def update_summary(stats: UpdateStats, rollout: Any, sps: float, skipped_updates: int) -> Any:
        """The ``Summary`` :meth:`log_update` writes (stacked seeds buffer it: :mod:`rlopt.stacked.runs`)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        scalars = stats.scalars()
        scalars["health/skipped_updates"] = skipped_updates
        if rollout.episode_returns:
            scalars["rollout/episode_return"] = float(np.mean(rollout.episode_returns))
            scalars["rollout/episode_length"] = float(np.mean(rollout.episode_lengths))
        scalars["time/sps"] = sps
        return Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()])

    def show_progress(self, steps: int, sps: float, recent_return: float) -> None:
        """Advance the bar by ``steps`` env steps (up to its total), showing speed and the mean return
        of the recent training episodes."""
        assert self.bar is not None
        self.bar.set_postfix(sps=f"{sps:.0f}", train_ret=f"{recent_return:.1f}",  # train_ret: stochastic episodes
                             refresh=False)  # drawn by bar.update at most every mininterval
        self.bar.update(min(steps, self.bar.total - self.bar.n))

    def log_eval(self, step: int, result: Mapping[str, float]) -> None:
        """An evaluation during training as ``eval/*`` scalars at ``step``."""
        if self.writer is not None:
            self.writer.add_scalar("eval/return_mean", result["return_mean"], step)
            self.writer.add_scalar("eval/return_std", result["return_std"], step)
            self.writer.add_scalar("eval/episode_length", result["episode_length"], step)

    def flush(self) -> None:
        """Write the scalars logged so far to disk (before every checkpoint)."""
        if self.writer is not None:
            self.writer.flush()

    def end_progress(self) -> None:
        """Close the bar (the loop ended, normally or not)."""
        if self.bar is not None:
            self.bar.close()

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """``summary.json`` of the run directory (strict JSON: the caller turned NaN into null)."""
        if self.run_dir is not None:
            text = json.dumps(summary, indent=2, allow_nan=False)
            atomic_write_text(self.run_dir / SUMMARY_FILE, text + "\n")

    def close(self) -> None:
        """Flush and close the TensorBoard writer; idempotent, also after the writer's flush failed
        (a full disk: it is not retried)."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
