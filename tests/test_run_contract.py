"""The run contract of ``rlopt train``: a short smoke run per agent writes the resolved config,
TensorBoard scalars under the exact tags at env-step x-values, checkpoints and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlopt.cli import main

SUMMARY_KEYS = {
    "agent", "env_id", "seed", "total_steps", "wall_seconds", "learn_seconds", "steps_per_second",
    "eval_return_mean", "eval_return_std", "eval_episodes",
}
BASE_TAGS = {
    "actor/loss", "actor/entropy", "actor/kl", "actor/kl_max", "actor/grad_norm", "actor/lr",
    "critic/loss", "critic/grad_norm", "critic/lr", "critic/explained_variance",
    "rollout/episode_return", "rollout/episode_length", "time/sps", "health/skipped_updates",
    "schedule/entropy_coef",
}
TRUST_REGION_TAGS = {
    "actor/cg_residual", "actor/line_search_steps", "actor/step_accepted", "actor/cos_to_grad",
    "actor/expected_improvement", "actor/actual_improvement", "actor/improvement_ratio", "actor/step_norm",
    "actor/step_fraction", "actor/cg_iterations", "actor/negative_curvature",
}
EXTRA_TAGS = {
    "npg": TRUST_REGION_TAGS | {"schedule/max_kl"},
    "trpo": TRUST_REGION_TAGS | {"schedule/max_kl"},
    "ppo": {"actor/clip_fraction", "schedule/ppo_clip"},
}
SMALL = ["total_steps=2048", "env.num_envs=4", "rollout.n_steps=128", "eval.episodes=2", "checkpoint.every_steps=1024"]


@pytest.mark.parametrize("agent", ["reinforce", "a2c", "npg", "trpo", "ppo"])
def test_train_writes_the_run_contract(agent: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    overrides = SMALL + (["ppo.minibatch_size=128"] if agent == "ppo" else [])
    code = main(["train", f"configs/{agent}_cartpole.yaml", *overrides, "--run-dir", str(run_dir), "--no-progress"])
    assert code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["agent"] == agent and summary["env_id"] == "CartPole-v1" and summary["eval_episodes"] == 2
    assert summary["total_steps"] == 2048 and summary["steps_per_second"] > 0
    # The whole loop (logging, progress bar, checkpoints too) takes longer than rollouts + updates.
    assert summary["learn_seconds"] > summary["wall_seconds"] > 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["agent"] == agent and resolved["total_steps"] == 2048 and resolved["env"]["num_envs"] == 4

    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == BASE_TAGS | EXTRA_TAGS.get(agent, set())
    steps = [e.step for e in events.Scalars("actor/loss")]
    assert steps == [512 * k for k in range(1, 5)]  # x-axis = env steps, one point per update

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    assert checkpoints == ["step_000000001024.pt", "step_000000002048.pt"]


def test_default_run_dir_is_agent_env_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    preset = Path(__file__).resolve().parent.parent / "configs" / "a2c_cartpole.yaml"
    assert main(["train", str(preset), "total_steps=256", "eval.episodes=1", "--no-progress"]) == 0
    (created,) = (tmp_path / "runs").iterdir()
    assert created.name.startswith("a2c-CartPole-v1-") and (created / "summary.json").is_file()
