"""The training loop: collect → ``agent.update(batch)`` → log stats → checkpoint.

Data flows one way: env → rollout batch → agent.update → UpdateStats → TensorBoard. The agent
never sees the logger; the trainer owns the run directory, checkpoints, fault counting and the
final evaluation.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from rlopt.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    load_envs,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rlopt.config import config_to_yaml
from rlopt.errors import Interrupted, NumericalFault
from rlopt.evaluation import evaluate
from rlopt.rollout import RolloutCollector, make_vec_env

if TYPE_CHECKING:
    from agents.base import Agent, UpdateStats

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"


class Trainer:
    """Runs one agent in its configured vector env; with a ``run_dir`` it logs and checkpoints."""

    def __init__(self, agent: "Agent", run_dir: str | Path | None = None, progress: bool = True) -> None:
        self.agent = agent
        self.cfg = cfg = agent.cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.envs = make_vec_env(cfg.env.id, cfg.env.num_envs, seed=cfg.seed)
        self.collector = RolloutCollector(
            self.envs, cfg.rollout.n_steps, device=agent.device, obs_normalizer=agent.obs_normalizer, seed=cfg.seed,
            obs_clip=cfg.env.obs_clip,
        )
        self.env_steps = 0
        self.skipped_updates = 0
        self.consecutive_faults = 0
        self.wall_seconds = 0.0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.writer: Any = None
        self._interrupt_requested = False

    # ----------------------------------------------------------------- run directory
    def _open_writer(self, purge_step: int | None = None) -> None:
        if self.run_dir is None or self.writer is not None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir), purge_step=purge_step)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (the envs themselves are pickled aside)."""
        return {
            "format_version": 1,
            "env_steps": self.env_steps,
            "skipped_updates": self.skipped_updates,
            "consecutive_faults": self.consecutive_faults,
            "wall_seconds": self.wall_seconds,
            "recent_returns": list(self.recent_returns),
            "agent": self.agent.state_dict(),
            "collector": self.collector.state_dict(),
            "rng": rng_state(),
        }

    def save_checkpoint(self) -> Path | None:
        if self.run_dir is None:
            return None
        return save_checkpoint(self.run_dir, self.env_steps, self.state_dict(), self.envs, self.cfg.checkpoint.keep)

    def resume(self, checkpoint: Path | None = None) -> int:
        """Restore the newest complete checkpoint (or ``checkpoint``); returns its env steps."""
        assert self.run_dir is not None
        path = checkpoint or list_checkpoints(self.run_dir)[-1]
        state = load_checkpoint(path)
        envs = load_envs(path)
        if envs is not None:
            self.envs.close()
            self.envs = self.collector.envs = envs
        self.agent.load_state_dict(state["agent"])
        self.collector.load_state_dict(state["collector"])
        set_rng_state(state["rng"])
        self.env_steps = int(state["env_steps"])
        self.skipped_updates = int(state["skipped_updates"])
        self.consecutive_faults = int(state["consecutive_faults"])
        self.wall_seconds = float(state["wall_seconds"])
        self.recent_returns.extend(state["recent_returns"])
        # Points logged after this checkpoint and before the crash are dropped (purge_step).
        self._open_writer(purge_step=self.env_steps + 1)
        return self.env_steps

    # ----------------------------------------------------------------- the loop
    def train(self, total_steps: int | None = None) -> dict[str, Any]:
        """Train until ``total_steps`` env steps, evaluate, write ``summary.json``; return it."""
        total = int(total_steps if total_steps is not None else self.cfg.total_steps)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_FILE).write_text(config_to_yaml(self.cfg))
            self._open_writer()
        bar = tqdm(total=total, initial=min(self.env_steps, total), unit="step", disable=not self.progress,
                   dynamic_ncols=True, leave=True)
        next_checkpoint = self._next_checkpoint_step()
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGINT, self._request_interrupt) if in_main_thread else None
        try:
            while self.env_steps < total:
                started = time.perf_counter()
                rollout = self.collector.collect(self.agent.act, self.agent.value)
                batch = self.agent.prepare_batch(self.collector.buffer)
                stats = self.agent.update(batch)
                elapsed = time.perf_counter() - started
                self.wall_seconds += elapsed
                self.env_steps += rollout.env_steps
                self.recent_returns.extend(rollout.episode_returns)
                self._check_health(stats)
                self._log(stats, rollout, rollout.env_steps / max(elapsed, 1e-9))
                bar.update(min(rollout.env_steps, total - bar.n))
                bar.set_postfix(sps=f"{rollout.env_steps / max(elapsed, 1e-9):.0f}", ret=f"{self._recent_return():.1f}")
                if next_checkpoint is not None and self.env_steps >= next_checkpoint:
                    self.save_checkpoint()
                    next_checkpoint = self._next_checkpoint_step()
                if self._interrupt_requested:
                    self.save_checkpoint()
                    raise Interrupted(self.run_dir, self.env_steps)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_handler)
            bar.close()
        self.save_checkpoint()
        summary = self._summarise()
        self.close()
        return summary

    def _next_checkpoint_step(self) -> int | None:
        every = self.cfg.checkpoint.every_steps
        if self.run_dir is None or every <= 0:
            return None
        return (self.env_steps // every + 1) * every

    def _request_interrupt(self, signum: int, frame: Any) -> None:
        self._interrupt_requested = True

    def _check_health(self, stats: "UpdateStats") -> None:
        """Count skipped updates; K consecutive ones stop the run with the last good checkpoint."""
        if not stats.skipped:
            self.consecutive_faults = 0
            return
        self.skipped_updates += 1
        self.consecutive_faults += 1
        if self.consecutive_faults >= self.cfg.health.max_consecutive_faults:
            self.close()
            raise NumericalFault(
                f"{self.consecutive_faults} consecutive updates had non-finite observations, losses or "
                f"gradients (health.max_consecutive_faults={self.cfg.health.max_consecutive_faults}); "
                f"stopped at {self.env_steps} env steps, last good checkpoint kept"
            )

    def _recent_return(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def _log(self, stats: "UpdateStats", rollout: Any, sps: float) -> None:
        if self.writer is None:
            return
        step = self.env_steps
        for tag, value in stats.scalars().items():
            self.writer.add_scalar(tag, value, step)
        self.writer.add_scalar("health/skipped_updates", self.skipped_updates, step)
        if rollout.episode_returns:
            self.writer.add_scalar("rollout/episode_return", float(np.mean(rollout.episode_returns)), step)
            self.writer.add_scalar("rollout/episode_length", float(np.mean(rollout.episode_lengths)), step)
        self.writer.add_scalar("time/sps", sps, step)

    def _summarise(self) -> dict[str, Any]:
        result = evaluate(self.agent, self.cfg.eval.episodes, self.cfg.seed)
        summary = {
            "agent": self.cfg.agent,
            "env_id": self.cfg.env.id,
            "seed": self.cfg.seed,
            "total_steps": self.env_steps,
            "wall_seconds": round(self.wall_seconds, 3),
            "steps_per_second": round(self.env_steps / max(self.wall_seconds, 1e-9), 1),
            "eval_return_mean": result["return_mean"],
            "eval_return_std": result["return_std"],
            "eval_episodes": result["episodes"],
            "skipped_updates": self.skipped_updates,
        }
        if self.run_dir is not None:
            (self.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.envs.close()
