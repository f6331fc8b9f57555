"""Faults found under attack (issue 12, "Faults to fix" items 1, 3, 5 and 6).

One run directory is used by one process at a time; evaluation ends on an env without a time
limit; a resume refuses a config that is not the one its checkpoint was trained with and falls
back past an unreadable checkpoint; ``summary.json`` is strict JSON; switching an optimizer by
name works from every preset.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from agents import PPO, build_agent
from rlopt.checkpoint import atomic_torch_save, list_checkpoints, load_checkpoint
from rlopt.cli import EXIT_BAD_INPUT, main
from rlopt.optim import accepted_options
from rlopt.config import load_config
from rlopt.evaluation import DEFAULT_MAX_EPISODE_STEPS, evaluate_episodes
from rlopt.files import LOCK_FILE, lock_run_dir

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))
SMALL = [
    str(ROOT / "configs" / "ppo_cartpole.yaml"), "total_steps=512", "env.num_envs=2", "rollout.n_steps=64",
    "ppo.epochs=1", "ppo.minibatch_size=64", "eval.episodes=1", "checkpoint.every_steps=128", "checkpoint.keep=3",
]  # fmt: skip


class EndlessCartPole(CartPoleEnv):
    """CartPole that never terminates (and is registered without a TimeLimit)."""

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, _, truncated, info = super().step(action)
        self.steps_beyond_terminated = None  # not terminated: gymnasium would warn of a step after the end
        return np.clip(obs, -1.0, 1.0).astype(np.float32), 1.0, False, truncated, info


gym.register("EndlessCartPole-v0", entry_point=f"{__name__}:EndlessCartPole")
gym.register("SyncCartPole-v0", entry_point=CartPoleEnv, max_episode_steps=500)  # no vectorised version


def train(run_dir: Path, *overrides: str) -> int:
    return main(["train", *SMALL, *overrides, "--run-dir", str(run_dir), "--no-progress"])


def resume(run_dir: Path) -> int:
    return main(["train", "--resume", str(run_dir), "--no-progress"])


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    yield
    torch.set_num_threads(1)


# ------------------------------------------------------------------ item 1: one process per run dir


def test_second_process_on_a_locked_run_dir_exits_2_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert train(run_dir) == 0
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    holder = lock_run_dir(run_dir)  # "another process" (flock locks conflict between open files)
    try:
        capsys.readouterr()
        assert resume(run_dir) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and f"pid {os.getpid()}" in err and "in use" in err
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before
        assert train(tmp_path / "other") == 0  # another run dir is not affected
    finally:
        holder.close()
    assert resume(run_dir) == 0  # released: resumable again


def test_stale_lock_of_a_killed_process_never_blocks(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_text("999999\n")  # written by a process that died before any output
    assert train(run_dir) == 0  # a directory holding only a stale lock counts as empty
    assert list_checkpoints(run_dir)
    (run_dir / LOCK_FILE).write_text("999999\n")
    assert resume(run_dir) == 0


def test_lock_file_is_not_a_checkpoint_and_blocks_a_fresh_run_while_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = lock_run_dir(run_dir)
    try:
        assert train(run_dir) == EXIT_BAD_INPUT
        assert "in use" in capsys.readouterr().err
        assert sorted(os.listdir(run_dir)) == [LOCK_FILE]
    finally:
        holder.close()
    with open(run_dir / LOCK_FILE, "a") as handle:  # released: nobody holds it any more
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ------------------------------------------------------------------ item 3: evaluation always ends


def test_evaluation_of_an_env_without_time_limit_ends_and_says_so(tmp_path: Path) -> None:
    agent = PPO.from_config(ROOT / "configs" / "ppo_cartpole.yaml", env={"id": f"{__name__}:EndlessCartPole-v0"})
    result = evaluate_episodes(agent, episodes=2, seed=0)
    assert result["return_mean"] == float(DEFAULT_MAX_EPISODE_STEPS)
    assert result["truncated_episodes"] == 2 and result["max_episode_steps"] == DEFAULT_MAX_EPISODE_STEPS
    agent = PPO.from_config(ROOT / "configs" / "ppo_cartpole.yaml", eval={"max_episode_steps": 7})
    result = evaluate_episodes(agent, episodes=3, seed=0)  # CartPole's own limit is 500; 7 cuts every episode
    assert result["return_mean"] == 7.0 and result["truncated_episodes"] == 3
    assert train(tmp_path / "run", f"env.id={__name__}:EndlessCartPole-v0", "eval.max_episode_steps=50") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["eval_truncated_episodes"] == 1 and summary["eval_return_mean"] == 50.0


def test_evaluation_uses_the_env_time_limit_and_chunks_many_episodes() -> None:
    agent = PPO.from_config(ROOT / "configs" / "ppo_cartpole.yaml", env={"id": f"{__name__}:SyncCartPole-v0"})
    one_go = evaluate_episodes(agent, episodes=5, seed=3)
    assert one_go["max_episode_steps"] == 500 and one_go["truncated_episodes"] == 0
    assert one_go["return_std"] > 0  # the episodes differ, so a changed seed would show
    chunked = evaluate_episodes(agent, episodes=5, seed=3, chunk=2)  # sub-env i is seeded seed + i either way
    assert chunked == one_go


# ------------------------------------------------------------------ item 5: resume refuses another config


def test_resume_refuses_a_config_edited_after_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert train(run_dir, "total_steps=256") == 0
    config = run_dir / "config.yaml"
    original = config.read_text()
    edited = yaml.safe_load(original)
    edited["agent"] = "a2c"
    config.write_text(yaml.safe_dump(edited))
    before = (run_dir / "summary.json").read_bytes()
    capsys.readouterr()
    assert resume(run_dir) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "agent" in err and "device" in err and "threads" in err
    assert (run_dir / "summary.json").read_bytes() == before
    edited = yaml.safe_load(original)
    edited["device"], edited["threads"] = "cpu", 2  # the keys one may change on resume
    config.write_text(yaml.safe_dump(edited))
    assert resume(run_dir) == 0


def test_checkpoint_without_stored_config_still_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert train(run_dir, "total_steps=256", "checkpoint.every_steps=128") == 0
    first = list_checkpoints(run_dir)[0]
    state = load_checkpoint(first)
    state.pop("config")  # as written by rlopt before issue 12 (format version 1)
    atomic_torch_save(state, first)
    for later in list_checkpoints(run_dir)[1:]:
        later.unlink()
    (run_dir / "summary.json").unlink()
    assert resume(run_dir) == 0


# ------------------------------------------------------------------ item 6


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
@pytest.mark.parametrize("section", ["actor", "critic"])
def test_switching_optimizer_by_name_works_from_every_preset(
    preset: Path, section: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if section == "actor" and yaml.safe_load(preset.read_text())["agent"] in ("npg", "trpo", "acktr"):
        pytest.skip("the trust-region agents' actor step is trust_region by definition")
    notices: list[str] = []
    agent = build_agent(load_config(preset, [f"{section}.optim.name=sgd"], notices=notices))
    optimizer = getattr(agent, f"{section}_optimizer")
    assert type(optimizer) is torch.optim.SGD
    original = yaml.safe_load(preset.read_text()).get(section, {}).get("optim", {})
    assert optimizer.param_groups[0]["lr"] == original.get("lr", optimizer.param_groups[0]["lr"])  # lr kept
    dropped = sorted(set(original) - {"name", "lr"} - set(accepted_options("sgd") or ()))  # SGD keeps momentum
    assert len(notices) == (1 if dropped else 0) and all(key in notices[0] for key in dropped), notices


def test_cli_prints_one_notice_naming_the_dropped_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train(tmp_path / "run", "total_steps=128", "actor.optim.name=sgd") == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rlopt: note:")]
    assert notes == ["rlopt: note: actor.optim.name=sgd does not take eps: dropped"]
    with pytest.warns(UserWarning, match="critic.optim.name=sgd does not take eps"):
        load_config(ROOT / "configs" / "ppo_cartpole.yaml", ["critic.optim.name=sgd"])


def test_options_given_with_the_new_name_are_still_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *SMALL, "actor.optim={name: sgd, lr: 0.01, eps: 0.1}", "--run-dir", "x"]) == EXIT_BAD_INPUT
    assert "actor.optim.eps" in capsys.readouterr().err


def test_resume_falls_back_past_an_unreadable_newest_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert train(run_dir) == 0
    newest = list_checkpoints(run_dir)[-1]
    reference = load_checkpoint(newest)["agent"]["actor"]
    newest.write_bytes(b"torn")
    (run_dir / "summary.json").unlink()
    with pytest.warns(RuntimeWarning, match=newest.name):
        assert resume(run_dir) == 0
    resumed = load_checkpoint(list_checkpoints(run_dir)[-1])["agent"]["actor"]
    assert all(torch.equal(resumed[k], v) for k, v in reference.items())  # the same run, bit-exact


def test_unreadable_env_file_is_blamed_on_the_env_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert train(run_dir, "total_steps=128", "checkpoint.every_steps=0") == 0
    (only,) = list_checkpoints(run_dir)
    only.with_suffix(".env").write_bytes(b"torn")
    capsys.readouterr()
    assert resume(run_dir) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert only.with_suffix(".env").name in err and f"{only.name} " not in err


def test_nan_eval_return_is_written_as_null_with_a_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert train(run_dir, "eval.episodes=0") == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in strict JSON")

    summary = json.loads((run_dir / "summary.json").read_text(), parse_constant=refuse)
    assert summary["eval_return_mean"] is None and summary["eval_return_finite"] is False
    printed = json.loads(capsys.readouterr().out.splitlines()[-1], parse_constant=refuse)
    assert printed == summary
