"""rlopt.run_logger: what a run writes besides checkpoints (config.yaml, one TensorBoard event per
update, eval scalars, summary.json), and nothing without a run directory."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from rlopt.config import Config, config_to_yaml
from rlopt.learner import UpdateStats
from rlopt.run_logger import RunLogger

ROLLOUT = SimpleNamespace(episode_returns=[1.0, 3.0], episode_lengths=[2, 4])
EVAL = {"return_mean": 5.0, "return_std": 0.5, "episode_length": 7.0}


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows (purges applied), as (step, value) per tag."""
    acc = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _one_run(logger: RunLogger, run_dir: Path | None, steps: list[int], value: float) -> None:
    logger.start(run_dir, Config(), total=steps[-1], done=steps[0] - 1)
    for step in steps:
        logger.log_update(step, UpdateStats(actor_loss=value, actor_lr=3e-4), ROLLOUT, sps=100.0, skipped_updates=2)
        logger.show_progress(1, sps=100.0, recent_return=math.nan)
    logger.end_progress()
    logger.close()


def test_an_update_is_one_event_with_every_tag_and_the_files_are_the_run_s(tmp_path: Path) -> None:
    cfg = Config(total_steps=128)
    logger = RunLogger(progress=False)
    logger.start(tmp_path, cfg, total=128, done=0)
    assert (tmp_path / "config.yaml").read_text() == config_to_yaml(cfg)
    stats = UpdateStats(actor_loss=1.5, actor_lr=3e-4, critic_loss=0.25)
    stats.record({"actor/clip_fraction": 0.125})
    logger.log_update(64, stats, ROLLOUT, sps=100.0, skipped_updates=2)
    logger.log_eval(64, EVAL)
    logger.flush()
    logger.write_summary({"total_steps": 64, "eval_return_mean": None})
    logger.close()
    logger.close()  # idempotent
    scalars = _scalars(tmp_path)
    expected = {**stats.scalars(), "health/skipped_updates": 2.0, "rollout/episode_return": 2.0,
                "rollout/episode_length": 3.0, "time/sps": 100.0, "eval/return_mean": 5.0, "eval/return_std": 0.5,
                "eval/episode_length": 7.0}  # fmt: skip
    assert set(scalars) == set(expected)
    for tag, value in expected.items():
        assert scalars[tag] == [(64, pytest.approx(value, nan_ok=True))], tag
    assert (tmp_path / "summary.json").read_text() == '{\n  "total_steps": 64,\n  "eval_return_mean": null\n}\n'
    assert json.loads((tmp_path / "summary.json").read_text())["total_steps"] == 64


def test_without_a_run_dir_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    logger = RunLogger(progress=False)
    _one_run(logger, None, [1, 2], 1.0)
    logger.log_eval(2, EVAL)
    logger.write_summary({"total_steps": 2})
    assert logger.writer is None and os.listdir(tmp_path) == []


def test_a_logger_after_a_resume_drops_the_points_logged_after_the_checkpoint(tmp_path: Path) -> None:
    _one_run(RunLogger(progress=False), tmp_path, [1, 2, 3, 4], 1.0)  # "crashed" after step 4
    resumed = RunLogger(progress=False)
    resumed.purge_after(2)  # the checkpoint it resumes from
    _one_run(resumed, tmp_path, [3, 4, 5], 2.0)
    assert _scalars(tmp_path)["actor/loss"] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0)]
    _one_run(resumed, tmp_path, [6], 3.0)  # a later train() on the same trainer purges nothing
    assert np.array_equal([s for s, _ in _scalars(tmp_path)["actor/loss"]], [1, 2, 3, 4, 5, 6])
