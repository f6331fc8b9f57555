"""``rlopt eval RUN_DIR [--episodes N] [--checkpoint PATH] [--video DIR] [--device D]`` and ``evaluate``.

Issue "Runs you can trust", requirement 4: evaluation prints JSON
``{"return_mean", "return_std", "episodes"}`` for the newest or a chosen checkpoint, and can
record the episodes with gymnasium's RecordVideo.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import AGENTS, PPO, Agent
from rlopt.checkpoint import list_checkpoints, load_checkpoint
from rlopt.cli import EXIT_BAD_INPUT, main
from rlopt.config import load_config
from rlopt.evaluation import EVAL_SEED_OFFSET, evaluate
from rlopt.run_files import CONFIG_FILE
from rlopt.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
MAX_COUNTDOWN = 5


class Countdown(gym.Env):
    """Episodes of 1 + (reset seed mod 5) steps with reward 1 each: the return is known from the seed."""

    observation_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.remaining = 1 + (seed if seed is not None else int(self.np_random.integers(MAX_COUNTDOWN))) % MAX_COUNTDOWN
        return np.array([self.remaining], dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.remaining -= 1
        return np.array([self.remaining], dtype=np.float32), 1.0, self.remaining == 0, False, {}


gym.register("Countdown-v0", entry_point=f"{__name__}:Countdown")


class Endless(Countdown):
    """Never terminates and has no TimeLimit: only eval.max_episode_steps can end its episodes."""

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(1, dtype=np.float32), 1.0, False, False, {}


gym.register("Endless-v0", entry_point=f"{__name__}:Endless")


def tiny_agent(env_name: str, **eval_cfg: Any) -> Agent:
    """A PPO agent on one of this module's envs; evaluation only, never trained."""
    return PPO.from_config(None, env={"id": f"{__name__}:{env_name}", "num_envs": 2}, rollout={"n_steps": 8},
                           ppo={"minibatch_size": 8}, eval=eval_cfg)  # fmt: skip


def countdown_lengths(episodes: int, seed: int) -> np.ndarray:
    """Length (= return) of each evaluation episode of Countdown, known from its reset seed."""
    return np.array([1 + (seed + EVAL_SEED_OFFSET + e) % MAX_COUNTDOWN for e in range(episodes)], dtype=np.float64)


def test_evaluate_counts_exactly_the_first_episode_of_each_env() -> None:
    """Episodes of different lengths: after a short one ends, its env's later episodes must not count."""
    episodes, seed = 7, 11
    lengths = countdown_lengths(episodes, seed)
    assert len(set(lengths)) == MAX_COUNTDOWN  # all five lengths occur
    result = evaluate(tiny_agent("Countdown-v0"), episodes, seed)
    assert result == {"return_mean": lengths.mean(), "return_std": lengths.std(), "episodes": episodes}


def test_eval_max_episode_steps_truncates_like_a_time_limit() -> None:
    endless = tiny_agent("Endless-v0", max_episode_steps=7)
    assert evaluate(endless, 3, seed=0) == {"return_mean": 7.0, "return_std": 0.0, "episodes": 3}
    episodes, seed = 7, 11
    lengths = countdown_lengths(episodes, seed)
    capped = np.minimum(lengths, 2)
    assert (capped < lengths).any() and (capped == lengths).any()
    result = evaluate(tiny_agent("Countdown-v0", max_episode_steps=2), episodes, seed)
    assert result == {"return_mean": capped.mean(), "return_std": capped.std(), "episodes": episodes}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short PPO CartPole run with checkpoints at 512 and 1024 env steps."""
    folder = tmp_path_factory.mktemp("run")
    agent = PPO.from_config(
        ROOT / "configs" / "ppo_cartpole.yaml", total_steps=1024, env={"num_envs": 4},
        ppo={"epochs": 4, "minibatch_size": 64}, checkpoint={"every_steps": 512, "keep": 5}, eval={"episodes": 4},
    )  # fmt: skip
    Trainer(agent, run_dir=folder, progress=False).train()
    return folder


def evaluate_checkpoint(run_dir: Path, checkpoint: Path, episodes: int) -> dict[str, Any]:
    """The numbers computed in-process from the checkpoint's weights."""
    cfg = load_config(run_dir / CONFIG_FILE)
    agent: Agent = AGENTS[cfg.agent].from_config(cfg)
    agent.load_state_dict(load_checkpoint(checkpoint)["agent"])
    return evaluate(agent, episodes, cfg.seed)


def run_eval(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, Any, str]:
    code = main(["eval", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else out), err


def test_eval_prints_json_for_the_newest_checkpoint(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code, result, _ = run_eval(capsys, str(run_dir))
    assert code == 0
    assert set(result) == {"return_mean", "return_std", "episodes"}
    summary = json.loads((run_dir / "summary.json").read_text())
    # Default episodes = the run's eval.episodes; same weights and seed as the final evaluation.
    assert result["episodes"] == summary["eval_episodes"] == 4
    assert result["return_mean"] == summary["eval_return_mean"]
    assert result["return_std"] == summary["eval_return_std"]


def test_eval_episodes_and_checkpoint_options(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    older, newest = list_checkpoints(run_dir)
    assert older.name == "step_000000000512.pt"
    code, result, _ = run_eval(capsys, str(run_dir), "--episodes", "3", "--checkpoint", str(older))
    assert code == 0
    assert result == evaluate_checkpoint(run_dir, older, 3)
    code, result, _ = run_eval(capsys, str(run_dir), "--episodes", "3")
    assert result == evaluate_checkpoint(run_dir, newest, 3)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda run, tmp: [str(tmp)], "has no config.yaml"),
        (lambda run, tmp: [str(run), "--episodes", "0"], "--episodes must be >= 1"),
        (lambda run, tmp: [str(run), "--checkpoint", str(tmp / "missing.pt")], "no such file"),
        (lambda run, tmp: [str(run), "--checkpoint", str(run / CONFIG_FILE)], "not a readable rlopt checkpoint"),
    ],
    ids=["not-a-run", "zero-episodes", "missing-checkpoint", "not-a-checkpoint"],
)
def test_eval_bad_input_exits_2_with_one_line(
    make_args: Any, message: str, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run_eval(capsys, *make_args(run_dir, tmp_path))
    assert code == EXIT_BAD_INPUT
    assert message in err and len(err.strip().splitlines()) == 1


def test_eval_device_overrides_the_run_device(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run trained on CUDA can be evaluated on a CPU machine with --device cpu; without it the error is one line."""
    moved = tmp_path / "cuda_run"
    shutil.copytree(run_dir, moved)
    config = moved / CONFIG_FILE
    config.write_text(config.read_text().replace("device: auto", "device: cuda:7"))
    assert "device: cuda:7" in config.read_text()
    if not torch.cuda.is_available():
        code, _, err = run_eval(capsys, str(moved))
        assert code == EXIT_BAD_INPUT and "device" in err and len(err.strip().splitlines()) == 1
    code, result, _ = run_eval(capsys, str(moved), "--device", "cpu")
    assert code == 0 and result == evaluate_checkpoint(run_dir, list_checkpoints(run_dir)[-1], 4)
    code, _, err = run_eval(capsys, str(moved), "--device", "tpu")
    assert code == EXIT_BAD_INPUT and "device" in err and len(err.strip().splitlines()) == 1


def test_eval_video_records_one_file_per_episode(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")  # CartPole's rgb_array renderer
    video_dir = tmp_path / "videos"
    code, result, _ = run_eval(capsys, str(run_dir), "--episodes", "2", "--video", str(video_dir))
    assert code == 0
    assert result["episodes"] == 2
    videos = [Path(v) for v in result["videos"]]
    assert [v.name for v in videos] == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]
    for video in videos:
        assert video.parent == video_dir and video.stat().st_size > 1000
        assert video.read_bytes()[4:8] == b"ftyp"  # an MP4 container
