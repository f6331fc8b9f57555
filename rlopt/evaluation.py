"""Deterministic evaluation on fresh environment instances, of any :class:`~rlopt.learner.Learner`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlopt.envs import make_vec_env
from rlopt.learner import Learner

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation envs are seeded with ``seed + EVAL_SEED_OFFSET``: fresh, but reproducible."""
VIDEO_PREFIX = "rl-video"
"""File names of recorded episodes: ``<prefix>-episode-<i>.mp4`` (RecordVideo's default)."""


def evaluate(agent: Learner, episodes: int, seed: int, deterministic: bool = True) -> dict[str, Any]:
    """Run ``episodes`` complete episodes, one per sub-env of a fresh vector env, and return
    ``{"return_mean", "return_std", "episodes"}`` (std over episodes, ddof=0). Each sub-env
    contributes exactly its first episode, so short episodes are not over-represented.
    ``eval.max_episode_steps`` truncates episodes still running after that many steps (as a
    TimeLimit would), so an env without a time limit cannot hang the evaluation."""
    if episodes <= 0:
        return {"return_mean": float("nan"), "return_std": float("nan"), "episodes": 0}
    max_steps = agent.cfg.eval.max_episode_steps
    envs = make_vec_env(agent.cfg.env.id, episodes)
    try:
        obs, _ = envs.reset(seed=seed + EVAL_SEED_OFFSET)
        returns = np.zeros(episodes, dtype=np.float64)
        running = np.ones(episodes, dtype=bool)
        steps = 0
        while running.any() and (max_steps is None or steps < max_steps):
            actions = agent.predict(obs, deterministic=deterministic)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            steps += 1
            returns += np.where(running, rewards, 0.0)
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()), "episodes": episodes}


def record_video(agent: Learner, episodes: int, seed: int, video_dir: str | Path) -> list[Path]:
    """Record ``episodes`` deterministic episodes with gymnasium's RecordVideo (needs moviepy);
    returns the files written by this call (``rl-video-episode-<i>.mp4``), not older ones in
    ``video_dir``."""
    env = gym.make(agent.cfg.env.id, render_mode="rgb_array", max_episode_steps=agent.cfg.eval.max_episode_steps)
    env = gym.wrappers.RecordVideo(
        env, str(video_dir), episode_trigger=_every_episode, name_prefix=VIDEO_PREFIX, disable_logger=True
    )
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(agent.predict(obs, deterministic=True))
                done = bool(terminated or truncated)
    finally:
        env.close()
    written = [Path(video_dir) / f"{VIDEO_PREFIX}-episode-{episode}.mp4" for episode in range(episodes)]
    return [path for path in written if path.is_file()]


def _every_episode(episode_id: int) -> bool:
    return True
