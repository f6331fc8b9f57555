"""Deterministic evaluation on fresh environment instances, of any :class:`~rlopt.learner.Learner`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlopt.envs import make_vec_env, resolve_spec
from rlopt.learner import Learner

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation envs are seeded with ``seed + EVAL_SEED_OFFSET``: fresh, but reproducible."""
DEFAULT_MAX_EPISODE_STEPS = 10_000
"""Evaluation episodes of an env without its own time limit are cut after this many steps."""
EVAL_CHUNK_ENVS = 256
"""At most this many evaluation envs exist at once (10**7 episodes in one vector env ran out of memory)."""
VIDEO_PREFIX = "rl-video"
"""File names of recorded episodes: ``<prefix>-episode-<i>.mp4`` (RecordVideo's default)."""


def episode_step_limit(agent: Learner) -> int:
    """Steps after which an evaluation episode is cut: ``eval.max_episode_steps``, else the env's
    own time limit, else :data:`DEFAULT_MAX_EPISODE_STEPS` (an env without one would hang)."""
    if agent.cfg.eval.max_episode_steps is not None:
        return int(agent.cfg.eval.max_episode_steps)
    own = resolve_spec(agent.cfg.env.id).max_episode_steps
    return int(own) if own is not None else DEFAULT_MAX_EPISODE_STEPS


def evaluate(agent: Learner, episodes: int, seed: int, deterministic: bool = True) -> dict[str, Any]:
    """``{"return_mean", "return_std", "episodes"}`` of :func:`evaluate_episodes`."""
    result = evaluate_episodes(agent, episodes, seed, deterministic)
    return {key: result[key] for key in ("return_mean", "return_std", "episodes")}


def evaluate_episodes(
    agent: Learner, episodes: int, seed: int, deterministic: bool = True, chunk: int = EVAL_CHUNK_ENVS
) -> dict[str, Any]:
    """Run ``episodes`` complete episodes, one per sub-env of fresh vector envs of at most
    ``chunk`` sub-envs, and return ``{"return_mean", "return_std", "episodes",
    "truncated_episodes", "max_episode_steps", "episode_length"}`` (std over episodes, ddof=0;
    ``episode_length`` is the mean steps per episode, a cut episode counted at the cut). A chunk starting at
    episode ``k`` is reset with seed ``seed + EVAL_SEED_OFFSET + k`` (a ``SyncVectorEnv`` seeds
    its sub-env ``i`` with ``seed + i``: the same episodes whatever the chunking; an env's own
    vectorised class may seed differently), and each sub-env contributes
    exactly its first episode, so short episodes are not over-represented. Episodes still running
    after :func:`episode_step_limit` steps are cut there and counted in ``truncated_episodes``."""
    max_steps = episode_step_limit(agent)
    if episodes <= 0:
        return {"return_mean": float("nan"), "return_std": float("nan"), "episodes": 0,
                "truncated_episodes": 0, "max_episode_steps": max_steps, "episode_length": float("nan")}  # fmt: skip
    returns = np.zeros(episodes, dtype=np.float64)
    lengths = np.zeros(episodes, dtype=np.int64)
    cut = 0
    for start in range(0, episodes, chunk):
        size = min(chunk, episodes - start)
        envs = make_vec_env(agent.cfg.env.id, size)
        try:
            obs, _ = envs.reset(seed=seed + EVAL_SEED_OFFSET + start)
            running = np.ones(size, dtype=bool)
            steps = 0
            while running.any() and steps < max_steps:
                actions, _ = agent.predict(obs, deterministic=deterministic)
                obs, rewards, terminated, truncated, _ = envs.step(actions)
                steps += 1
                returns[start : start + size] += np.where(running, rewards, 0.0)
                lengths[start : start + size] += running
                running &= ~(terminated | truncated)
            cut += int(running.sum())
        finally:
            envs.close()
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()), "episodes": episodes,
            "truncated_episodes": cut, "max_episode_steps": max_steps,
            "episode_length": float(lengths.mean())}  # fmt: skip


TRAINING_EVAL_SEED_OFFSET = 7_919_000_000
"""Evaluations during training use seed ``seed + TRAINING_EVAL_SEED_OFFSET + env_steps`` (then
:data:`EVAL_SEED_OFFSET` is added as for any evaluation): other episodes than the final
evaluation's, a different set at each evaluation, and the same ones again on a resume."""


def training_eval_seed(seed: int, env_steps: int) -> int:
    """The evaluation seed of a run with seed ``seed`` at ``env_steps`` of its training."""
    return seed + TRAINING_EVAL_SEED_OFFSET + env_steps


@contextmanager
def global_rng_kept() -> Iterator[None]:
    """Restore the global python/numpy/torch RNG states on exit, so that an evaluation during
    training leaves the run bit-identical to one without evaluations."""
    from rlopt.checkpoint import rng_state, set_rng_state

    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def evaluate_during_training(agent: Learner, episodes: int, seed: int, env_steps: int) -> dict[str, Any]:
    """:func:`evaluate_episodes` at ``env_steps`` of a training run, deterministic, with seed
    :func:`training_eval_seed`, the global RNG states kept (:func:`global_rng_kept`)."""
    with global_rng_kept():
        return evaluate_episodes(agent, episodes, training_eval_seed(seed, env_steps), deterministic=True)


def record_video(agent: Learner, episodes: int, seed: int, video_dir: str | Path) -> list[Path]:
    """Record ``episodes`` deterministic episodes with gymnasium's RecordVideo (needs moviepy);
    returns the files written by this call (``rl-video-episode-<i>.mp4``), not older ones in
    ``video_dir``."""
    env = gym.make(agent.cfg.env.id, render_mode="rgb_array", max_episode_steps=episode_step_limit(agent))
    env = gym.wrappers.RecordVideo(
        env, str(video_dir), episode_trigger=_every_episode, name_prefix=VIDEO_PREFIX, disable_logger=True
    )
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
            done = False
            while not done:
                action, _ = agent.predict(obs, deterministic=True)
                obs, _, terminated, truncated, _ = env.step(action)
                done = bool(terminated or truncated)
    finally:
        env.close()
    written = [Path(video_dir) / f"{VIDEO_PREFIX}-episode-{episode}.mp4" for episode in range(episodes)]
    return [path for path in written if path.is_file()]


def _every_episode(episode_id: int) -> bool:
    return True
