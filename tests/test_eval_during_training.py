"""Evaluation during training (issue 12, item 10): ``eval.every_steps`` logs ``eval/*`` at env steps,
keeps ``checkpoints/best.pt``, and changes nothing of the training run itself, resumed or not."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import build_agent
from rlopt.checkpoint import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from rlopt.cli import EXIT_BAD_INPUT, main
from rlopt.config import load_config
from rlopt.evaluation import evaluate_during_training, evaluate_episodes
from tests.test_resume import DISCRETE, assert_identical_runs, kill_and_resume, scalars, train_in_process

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    str(ROOT / "configs" / "ppo_cartpole.yaml"), "total_steps=1536", "env.num_envs=4", "ppo.epochs=2",
    "ppo.minibatch_size=64", "eval.episodes=2", "checkpoint.every_steps=768",
]  # fmt: skip
EVAL_ON = ["eval.every_steps=512", "eval.episodes_during=2"]
DISCRETE_EVAL_ON = [*DISCRETE, "eval.every_steps=384", "eval.episodes_during=2"]


def _training_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    return {tag: points for tag, points in scalars(run_dir).items() if not tag.startswith("eval/")}


def test_eval_on_logs_eval_scalars_and_keeps_the_training_curve_of_eval_off(tmp_path: Path) -> None:
    off, on = tmp_path / "off", tmp_path / "on"
    train_in_process(SMALL, off)
    train_in_process([*SMALL, *EVAL_ON], on)

    logged = scalars(on)
    for tag in ("eval/return_mean", "eval/return_std", "eval/episode_length"):
        assert [step for step, _ in logged[tag]] == [512, 1024, 1536], tag
    assert not any(tag.startswith("eval/") for tag in scalars(off))
    # The evaluations drew nothing from the training RNG streams: every training scalar,
    # the final weights and the final evaluation are those of the run without them.
    assert _training_scalars(on) == scalars(off)
    summary_on, summary_off = (json.loads((d / "summary.json").read_text()) for d in (on, off))
    for key in ("eval_return_mean", "eval_return_std", "total_steps"):
        assert summary_on[key] == summary_off[key]
    agent_on, agent_off = (load_checkpoint(list_checkpoints(d)[-1])["agent"] for d in (on, off))
    for name, tensor in agent_off["actor"].items():
        assert torch.equal(agent_on["actor"][name], tensor), name

    # best.pt: the state at the best evaluation, never taken for a resume checkpoint.
    best = on / CHECKPOINT_DIR / BEST_CHECKPOINT
    assert best.is_file() and not (off / CHECKPOINT_DIR / BEST_CHECKPOINT).exists()
    assert [p.name for p in list_checkpoints(on)] == ["step_000000000768.pt", "step_000000001536.pt"]
    state = load_checkpoint(best)
    returns = [value for _, value in logged["eval/return_mean"]]
    first_best = int(np.argmax(returns))
    assert state["env_steps"] == state["best_eval_step"] == logged["eval/return_mean"][first_best][0]
    assert state["eval_return_mean"] == pytest.approx(max(returns))  # TensorBoard stores float32
    # CartPole pays 1 per step: the mean episode length is the mean return.
    for (_, length), (_, ret) in zip(logged["eval/episode_length"], logged["eval/return_mean"]):
        assert length == ret
    # rlopt eval picks the newest step checkpoint; --checkpoint best.pt evaluates the best one.
    assert main(["eval", str(on), "--checkpoint", str(best), "--episodes", "2"]) == 0


def test_sigkill_then_resume_with_eval_on_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    train_in_process(DISCRETE_EVAL_ON, reference)
    kill_and_resume(DISCRETE_EVAL_ON, reference, tmp_path / "run", random.Random(time.time_ns()))
    assert_identical_runs(reference, tmp_path / "run")  # eval/* included
    ref_best, got_best = (load_checkpoint(d / CHECKPOINT_DIR / BEST_CHECKPOINT) for d in (reference, tmp_path / "run"))
    assert got_best["best_eval_step"] == ref_best["best_eval_step"]
    assert got_best["eval_return_mean"] == ref_best["eval_return_mean"]
    for name, tensor in ref_best["agent"]["actor"].items():
        assert torch.equal(got_best["agent"]["actor"][name], tensor), name


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _draw() -> tuple[list[float], list[float], float]:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()


def test_evaluation_during_training_leaves_the_global_rng_streams_untouched() -> None:
    agent = build_agent(load_config(values={"env": {"num_envs": 2}, "eval": {"episodes": 1}}))
    _seed_all(5)
    expected = _draw()
    _seed_all(5)
    result = evaluate_during_training(agent, episodes=3, seed=0, env_steps=4096)
    assert _draw() == expected
    assert result["episodes"] == 3 and result["episode_length"] == result["return_mean"]  # CartPole: 1 per step
    assert evaluate_during_training(agent, episodes=3, seed=0, env_steps=4096) == result  # reproducible


def test_evaluations_during_training_use_other_episodes_than_the_final_one() -> None:
    agent = build_agent(load_config(values={"env": {"num_envs": 2}}))
    final = evaluate_episodes(agent, 4, seed=0)
    during = [evaluate_during_training(agent, 4, seed=0, env_steps=steps) for steps in (0, 512, 1024)]
    # An untrained policy's episode lengths depend on the start states, i.e. on the reset seed.
    assert len({final["return_mean"], *(r["return_mean"] for r in during)}) > 1


def test_prune_keeps_best_and_removes_its_torn_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / CHECKPOINT_DIR
    folder.mkdir()
    (folder / BEST_CHECKPOINT).write_bytes(b"best")
    torn = folder / f".{BEST_CHECKPOINT}.abc123.tmp"
    torn.write_bytes(b"torn")
    for steps in (1, 2):
        save_checkpoint(tmp_path, steps, {"env_steps": steps}, envs=None, keep=1)
    assert (folder / BEST_CHECKPOINT).read_bytes() == b"best" and not torn.exists()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000000002.pt"]


@pytest.mark.parametrize(
    ("override", "key"), [("eval.every_steps=-1", "eval.every_steps"), ("eval.episodes_during=0", "eval.episodes_during")]
)
def test_bad_eval_during_training_values_exit_2_without_a_run_dir(
    override: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", *SMALL, override, "--run-dir", str(run_dir), "--no-progress"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rlopt: error: {key}") and "\n" not in err
    assert not run_dir.exists()


def test_a_checkpoint_written_before_eval_every_steps_existed_still_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    train_in_process([*SMALL, "total_steps=256", "checkpoint.every_steps=128"], run_dir)
    checkpoint = list_checkpoints(run_dir)[-1]
    state = load_checkpoint(checkpoint)
    old = json.loads(state["config"])
    del old["eval"]["every_steps"], old["eval"]["episodes_during"]  # as an older rlopt recorded it
    state["config"] = json.dumps(old, sort_keys=True)
    torch.save(state, checkpoint)
    (run_dir / "summary.json").unlink()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0  # the new keys kept their defaults
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("every_steps: 0\n  episodes_during", "every_steps: 64\n  episodes_during"))
    assert load_config(config).eval.every_steps == 64
    torch.save(state, list_checkpoints(run_dir)[-1])
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == EXIT_BAD_INPUT  # but not a changed value
    assert "eval.every_steps" in capsys.readouterr().err
