"""The run directories of a stack (issue 17, "runs stay ordinary"): ``DIR/seed_<k>/`` each exactly
what a lone ``rlopt train`` writes -- ``config.yaml`` with its seed, its own TensorBoard events with
the lone run's tags, ``checkpoints/step_<n>.pt`` (+ ``.env``) in the lone format (``rlopt eval`` and
``Agent.load`` read it unchanged) and ``summary.json`` with :data:`rlopt.run_files.SUMMARY_KEYS`.

``DIR/stacked.json`` marks the stack (its seeds); ``rlopt train --resume DIR`` continues all seeds
(:mod:`rlopt.stacked.resume`: each checkpoint also holds the seed's action generator, and its
``.env`` the seed's envs, which hold their state between rollouts). Torch-free at
import: the CLI asks :func:`is_stacked_run` before it imports torch.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from rlopt.config.schema import Config
from rlopt.errors import ConfigError
from rlopt.files import atomic_write_text, check_new_run_dir
from rlopt.run_files import CHECKPOINT_FORMAT_VERSION, stored_config, strict_json_summary

STACKED_FILE = "stacked.json"
"""``DIR/stacked.json``: ``{"seeds": [...]}``, written first; marks DIR as a stack of seed run dirs."""
MAX_SEEDS_TEXT = 256
"""``--seeds`` lists at most this many seeds (``rlopt.stacked.learner.MAX_SEEDS``: one stack)."""
_RANGE = re.compile(r"^(\d+)-(\d+)$")
WRITE_EVERY = (1000, 60.0)
"""A seed's TensorBoard events are written in bursts, every this many updates or seconds (and at
every checkpoint and the end), each burst one append by the loop's thread: through the writer's
thread, one event per seed and update competes with the loop for the GIL (K threads at once), and a
burst waits for that thread event by event; a lone run's writer flushes to disk every 120 s anyway."""


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``0-9`` (inclusive), ``0,3,7`` or a mix (``0-4,9``); distinct ints >= 0, at most
    :data:`MAX_SEEDS_TEXT`. One-line ConfigError naming the bad part otherwise."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if part.isdigit():
            seeds.append(int(part))
        elif (match := _RANGE.match(part)) is not None:
            low, high = int(match.group(1)), int(match.group(2))
            if high < low:
                raise ConfigError(f"--seeds: range {part!r} runs backwards; write {high}-{low}")
            if high - low + 1 > MAX_SEEDS_TEXT:
                raise ConfigError(f"--seeds: {high - low + 1} seeds in {part!r}, at most {MAX_SEEDS_TEXT} in one stack")
            seeds.extend(range(low, high + 1))
        else:
            raise ConfigError(f"--seeds: {part[:40]!r} is no seed or range; write e.g. 0-9 or 0,3,7")
        if len(seeds) > MAX_SEEDS_TEXT:
            raise ConfigError(f"--seeds: more than {MAX_SEEDS_TEXT} seeds, at most {MAX_SEEDS_TEXT} in one stack")
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise ConfigError(f"--seeds: seed {duplicates[0]} is given twice; each seed once")
    return seeds


def seed_dir(run_dir: Path, seed: int) -> Path:
    """``DIR/seed_<seed>``."""
    return Path(run_dir) / f"seed_{seed}"


def is_stacked_run(run_dir: str | Path | None) -> bool:
    """Whether ``run_dir`` is a stack's DIR or one of its ``seed_<k>`` dirs (``DIR/stacked.json``)."""
    if not run_dir or not str(run_dir).strip():
        return False
    try:
        return any((p / STACKED_FILE).is_file() for p in (Path(run_dir), Path(run_dir).parent))
    except OSError:
        return False


def default_stack_dir(agent: str, env_id: str) -> Path:
    """``runs/<agent>-<env>-seeds-<timestamp>`` with the env id made path-safe."""
    safe_env = re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id)
    return Path("runs") / f"{agent}-{safe_env}-seeds-{time.strftime('%Y%m%d-%H%M%S')}"


def check_new_stack_dir(run_dir: Path) -> None:
    """A stack's DIR is new or empty (:func:`rlopt.files.check_new_run_dir`); never overwritten."""
    check_new_run_dir(run_dir, "--run-dir", "; give a new directory")


class SeedRun:
    """One seed's run directory inside a stack: the files a lone :class:`rlopt.trainer.Trainer` writes,
    through the lone run's own :class:`rlopt.run_logger.RunLogger` (its bar off: the stack has one)."""

    def __init__(self, run_dir: Path, cfg: Config, purge_step: int | None = None) -> None:
        """``purge_step``: resumed, TensorBoard drops what was logged at and after it (as a lone resume)."""
        from rlopt.run_logger import RunLogger

        self.run_dir, self.cfg = Path(run_dir), cfg
        self.logger = RunLogger(progress=False)
        if purge_step is not None:
            self.logger.purge_after(purge_step - 1)
        self.logger.start(self.run_dir, cfg, total=0, done=0)  # config.yaml and the TensorBoard writer
        self.logger.end_progress()
        self._pending: list[tuple[Any, int, float]] = []
        self._written = time.monotonic()

    def log(self, stats: Any, rollout: Any, skipped_updates: int, sps: float, env_steps: int) -> None:
        """The scalars of one update, with the lone trainer's tags, step and wall time
        (:meth:`RunLogger.update_summary`), kept and handed to the writer in bursts (:data:`WRITE_EVERY`)."""
        if self.logger.writer is None:
            return
        self._pending.append((self.logger.update_summary(stats, rollout, sps, skipped_updates), env_steps, time.time()))
        if len(self._pending) >= WRITE_EVERY[0] or time.monotonic() - self._written >= WRITE_EVERY[1]:
            self.write_pending()

    def write_pending(self) -> None:
        """Write the kept events to the seed's event file, all in one append
        (:func:`rlopt.event_crc.append_summaries`)."""
        if self.logger.writer is not None and self._pending:
            from rlopt.event_crc import append_summaries

            append_summaries(self.logger.writer.file_writer, self._pending)
        self._pending.clear()
        self._written = time.monotonic()

    def save_checkpoint(self, env_steps: int, state: dict[str, Any], envs: Any) -> Path:
        """Flush the scalars, then write ``step_<env_steps>.pt`` and the seed's pickled vector env
        (:func:`rlopt.checkpoint.save_checkpoint`: between rollouts the lone envs hold the state)."""
        from rlopt.checkpoint import save_checkpoint

        self.write_pending()
        self.logger.flush()
        return save_checkpoint(self.run_dir, env_steps, self.full_state(env_steps, state), envs, self.cfg.checkpoint.keep)

    def full_state(self, env_steps: int, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with the keys every lone checkpoint has first (format, config, env steps, RNG)."""
        from rlopt.checkpoint import rng_state

        return {"format_version": CHECKPOINT_FORMAT_VERSION, "config": stored_config(self.cfg),
                "env_steps": env_steps, "rng": rng_state(), **state}  # fmt: skip

    def write_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
        """``summary.json`` (strict JSON, as the lone trainer writes it); returns what was written."""
        summary = strict_json_summary(summary)
        self.logger.write_summary(summary)
        return summary

    def close(self) -> None:
        try:
            self.write_pending()
        finally:
            self.logger.close()


def open_stack(run_dir: Path, cfgs: list[Config], purge_step: int | None = None, mark: bool = True) -> list[SeedRun]:
    """Write ``DIR/stacked.json`` (``mark``: a sweep's stacks leave it out) and open each seed's :class:`SeedRun`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if mark:
        atomic_write_text(run_dir / STACKED_FILE, json.dumps({"seeds": [c.seed for c in cfgs]}) + "\n")
    return [SeedRun(seed_dir(run_dir, c.seed), c, purge_step) for c in cfgs]


def read_stack_seeds(run_dir: Path) -> list[int]:
    """The seeds ``DIR/stacked.json`` lists; a one-line ConfigError for a torn or foreign file."""
    path = Path(run_dir) / STACKED_FILE
    try:
        seeds = json.loads(path.read_text())["seeds"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--resume: {path} is unreadable ({type(err).__name__})") from None
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise ConfigError(f"--resume: {path} lists no seeds")
    return seeds
