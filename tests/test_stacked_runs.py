"""``rlopt train CONFIG --seeds ...`` (issue 17, "runs stay ordinary"): each seed of a stack writes
the run directory its lone run writes, readable by ``rlopt eval`` and ``Agent.load`` unchanged; bad
input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import PPO, A2C, Agent
from rlopt.cli import main
from rlopt.errors import ConfigError
from rlopt.run_files import SUMMARY_KEYS, list_checkpoints
from rlopt.stacked.runs import MAX_SEEDS_TEXT, STACKED_FILE, parse_seeds

SMALL = {  # two updates of a few hundred env steps, one checkpoint in between (PPO: an evaluation after each update)
    "ppo_cartpole": ["rollout.n_steps=32", "total_steps=512", "checkpoint.every_steps=256", "eval.every_steps=256",
                     "eval.episodes_during=2"],
    "a2c_cartpole": ["total_steps=160", "checkpoint.every_steps=80", "eval.every_steps=0"],
    "trpo_cartpole": ["rollout.n_steps=32", "total_steps=512", "checkpoint.every_steps=256"],
    "acktr_cartpole": ["rollout.n_steps=16", "total_steps=512", "checkpoint.every_steps=256"],  # per-seed update
}
COMMON = ["eval.episodes=1"]


def _tags(run_dir: Path) -> dict[str, list[int]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def stacked_and_lone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per preset: a 2-seed stack in ``stack/`` and the lone run of seed 1 in ``lone/``."""
    out = {}
    for preset, small in SMALL.items():
        root = tmp_path_factory.mktemp(preset)
        argv = ["train", preset, *small, *COMMON]
        assert main([*argv, "--seeds", "0,1", "--run-dir", str(root / "stack"), "--no-progress"]) == 0
        assert main([*argv, "seed=1", "--run-dir", str(root / "lone"), "--no-progress"]) == 0
        out[preset] = (root / "stack", root / "lone")
    return out


@pytest.mark.parametrize("preset", list(SMALL))
def test_each_seed_writes_a_lone_run_directory(stacked_and_lone, preset):
    stack, lone = stacked_and_lone[preset]
    assert sorted(p.name for p in stack.iterdir() if p.is_dir()) == ["seed_0", "seed_1"]
    assert json.loads((stack / STACKED_FILE).read_text()) == {"seeds": [0, 1]}
    lone_cfg = yaml.safe_load((lone / "config.yaml").read_text())
    lone_summary = json.loads((lone / "summary.json").read_text())
    lone_tags = _tags(lone)
    for seed in (0, 1):
        run = stack / f"seed_{seed}"
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg == {**lone_cfg, "seed": seed}  # the lone run's resolved config but its seed
        summary = json.loads((run / "summary.json").read_text())
        assert list(summary) == list(lone_summary) == list(SUMMARY_KEYS)
        assert summary["seed"] == seed and summary["total_steps"] == lone_summary["total_steps"]
        assert _tags(run) == lone_tags  # the same tags at the same env steps
        assert [p.name for p in list_checkpoints(run)] == [p.name for p in list_checkpoints(lone)]
        assert all(p.with_suffix(".env").is_file() for p in list_checkpoints(run))  # the seed's envs beside each


def test_rlopt_eval_and_load_read_a_seed_directory_unchanged(stacked_and_lone, capsys):
    stack, _ = stacked_and_lone["ppo_cartpole"]
    capsys.readouterr()
    assert main(["eval", str(stack / "seed_1")]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = json.loads((stack / "seed_1" / "summary.json").read_text())
    assert result["return_mean"] == summary["eval_return_mean"]  # the final checkpoint is the evaluated policy
    agent = PPO.load(stack / "seed_1")
    assert agent.cfg.seed == 1 and agent.updates_done == 2
    other = Agent.load(stack / "seed_0")
    assert not all(torch.equal(a, b) for a, b in zip(agent.actor.state_dict().values(), other.actor.state_dict().values()))
    with pytest.raises(ConfigError, match="holds a PPO agent"):
        A2C.load(stack / "seed_1")


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds(" 5 ,0-1") == [5, 0, 1]
    assert len(parse_seeds(f"0-{MAX_SEEDS_TEXT - 1}")) == MAX_SEEDS_TEXT


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--seeds", "0-x"], "--seeds: '0-x' is no seed or range"),
        (["--seeds", ""], "--seeds: '' is no seed or range"),
        (["--seeds", "3-1"], "--seeds: range '3-1' runs backwards"),
        (["--seeds", "0,1,1"], "--seeds: seed 1 is given twice"),
        (["--seeds", "0-256"], f"--seeds: 257 seeds in '0-256', at most {MAX_SEEDS_TEXT}"),
        (["--seeds", "0-99999999999"], f"at most {MAX_SEEDS_TEXT}"),
        (["--seeds", "-1"], "--seeds: '-1' is no seed or range"),
        (["seed=3", "--seeds", "0,1"], "seed: given by --seeds"),
        (["--seeds", "0,1", "--total-steps", "10"], "--total-steps extends a run and needs --resume"),
        (["--seeds", "0,1", "--run-dir", ""], '--run-dir: "" is no directory'),
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "ppo_cartpole", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "preset,overrides,message",
    [
        ("a2c_cartpole", ["actor.optim={name: lbfgs, lr: 1.0}"], "actor.optim: invalid value"),
        ("ppo_cartpole", ["rollout.n_steps=0"], "rollout.n_steps"),
    ],
)
def test_unsupported_configs_are_refused_before_writing(tmp_path, capsys, preset, overrides, message):
    run_dir = tmp_path / "stack"
    assert main(["train", preset, *overrides, "--seeds", "0-2", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not run_dir.exists()


def test_a_non_empty_run_dir_and_bad_resumes_are_refused(stacked_and_lone, tmp_path, capsys):
    stack, lone = stacked_and_lone["a2c_cartpole"]
    before = {p.relative_to(stack): p.stat().st_mtime_ns for p in stack.rglob("*")}
    cases = [
        (["train", "a2c_cartpole", "--seeds", "0,1", "--run-dir", str(stack)], "exists and is not empty"),
        (["train", "--resume", str(lone), "--seeds", "0,1"], "--seeds starts a new stacked run"),
        (["train", "--resume", str(stack / "seed_1")], f"resume the whole stack: rlopt train --resume {stack}"),
        (["train", "--resume", str(stack), "--total-steps", "80"], "--total-steps 80 is below the 256 env steps"),
        (["train", "--resume", str(stack), "--run-dir", str(tmp_path / "x")], "--resume takes only the run directory"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert {p.relative_to(stack): p.stat().st_mtime_ns for p in stack.rglob("*")} == before
    assert not (tmp_path / "x").exists()


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"] if t != "time/sps"}


@pytest.mark.parametrize("preset", ["ppo_cartpole", "acktr_cartpole"])
def test_resume_continues_every_seed_exactly(stacked_and_lone, tmp_path, capsys, preset):
    """A stack stopped after its interval checkpoint (its points after it logged, as a killed process
    may leave them: the resume purges them) and resumed ends with the uninterrupted stack's weights,
    optimizer states (ACKTR: each seed's K-FAC factors) and scalars."""
    from agents.stacked import build_stacked
    from rlopt.config import load_config
    from rlopt.stacked.training import StackedTraining

    stack, _ = stacked_and_lone[preset]
    overrides = [*SMALL[preset], *COMMON]
    cfg = load_config(preset, overrides)
    run_dir = tmp_path / "stack"
    StackedTraining(build_stacked(cfg, [0, 1]), run_dir=run_dir).train(evaluate=False)
    for seed in (0, 1):  # killed before its final checkpoint: the last one is the interval one at 256
        (run_dir / f"seed_{seed}" / "summary.json").unlink()
        for path in (run_dir / f"seed_{seed}" / "checkpoints").glob("step_000000000512.*"):
            path.unlink()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert f"resuming {run_dir} (2 seeds) from 256 env steps" in capsys.readouterr().err
    for seed in (0, 1):
        ours, theirs = (list_checkpoints(d / f"seed_{seed}")[-1] for d in (run_dir, stack))
        assert ours.name == theirs.name == "step_000000000512.pt"
        a, b = torch.load(ours, weights_only=True)["agent"], torch.load(theirs, weights_only=True)["agent"]
        for name in ("actor", "critic"):
            assert all(torch.equal(a[name][k], b[name][k]) for k in b[name])
            for i, state in b[f"{name}_optimizer"]["state"].items():
                ours_state = a[f"{name}_optimizer"]["state"][i]
                assert ours_state.keys() == state.keys()
                assert all(torch.equal(ours_state[k], v) if isinstance(v, torch.Tensor) else ours_state[k] == v
                           for k, v in state.items())  # fmt: skip
        assert _scalars(run_dir / f"seed_{seed}") == _scalars(stack / f"seed_{seed}")  # each step once, same values
        summary, expected = (json.loads((d / f"seed_{seed}" / "summary.json").read_text()) for d in (run_dir, stack))
        assert summary["eval_return_mean"] == expected["eval_return_mean"]


def test_a_stacks_fused_optimizers_leave_each_checkpoint_the_lone_implementation(stacked_and_lone):
    """A stack steps Adam fused (``stack_exact: false``); each seed's checkpoint keeps its lone run's
    param group (foreach, not fused), so a lone resume of the seed runs as its lone run would."""
    from agents.stacked import build_stacked
    from rlopt.config import load_config

    stack, lone = stacked_and_lone["ppo_cartpole"]
    assert build_stacked(load_config("ppo_cartpole", []), [0, 1]).actor_optimizer.param_groups[0]["fused"] is True
    assert build_stacked(load_config("ppo_cartpole", ["stack_exact=true"]), [0, 1]).actor_optimizer.param_groups[0]["fused"] is not True
    ours, theirs = (torch.load(list_checkpoints(d)[-1], weights_only=True)["agent"] for d in (stack / "seed_1", lone))
    for name in ("actor_optimizer", "critic_optimizer"):
        assert ours[name]["param_groups"] == theirs[name]["param_groups"]
        assert theirs[name]["param_groups"][0]["foreach"] is True


def test_stacked_agents_learn_returns_one_summary_per_seed(tmp_path):
    stack = PPO.from_config("ppo_cartpole", ["rollout.n_steps=32", *COMMON], seeds=range(2))
    summaries = stack.learn(256, run_dir=tmp_path / "stack", progress=False)
    assert [(s["seed"], s["total_steps"]) for s in summaries] == [(0, 256), (1, 256)]
    assert list(summaries[0]) == list(SUMMARY_KEYS)
    loaded = PPO.load(tmp_path / "stack" / "seed_1")  # the lone agent of seed 1 is what its run dir holds
    assert all(torch.equal(a, b) for a, b in zip(stack.agents[1].actor.state_dict().values(), loaded.actor.state_dict().values()))
    with pytest.raises(RuntimeError, match="a stack learns once"):
        stack.learn(256)


def test_evaluations_inside_a_stack_are_the_lone_runs(stacked_and_lone):
    """eval.every_steps: seed 1's evaluation points (eval/* at the same env steps), its best.pt and the
    best-eval bookkeeping of its checkpoints are its lone run's."""
    stack, lone = stacked_and_lone["ppo_cartpole"]
    ours, theirs = _scalars(stack / "seed_1"), _scalars(lone)
    eval_tags = [t for t in theirs if t.startswith("eval/")]
    assert sorted(eval_tags) == ["eval/episode_length", "eval/return_mean", "eval/return_std"]
    for tag in eval_tags:
        assert [s for s, _ in ours[tag]] == [s for s, _ in theirs[tag]] == [256, 512]
        assert [v for _, v in ours[tag]] == pytest.approx([v for _, v in theirs[tag]], rel=1e-5)
    best = [torch.load(d / "checkpoints" / "best.pt", weights_only=True) for d in (stack / "seed_1", lone)]
    assert best[0]["best_eval_step"] == best[1]["best_eval_step"] is not None
    assert best[0]["eval_return_mean"] == pytest.approx(best[1]["eval_return_mean"], rel=1e-5)
    final = [torch.load(list_checkpoints(d)[-1], weights_only=True) for d in (stack / "seed_1", lone)]
    assert (final[0]["best_eval_return"], final[0]["best_eval_step"]) == pytest.approx(
        (final[1]["best_eval_return"], final[1]["best_eval_step"]), rel=1e-5)
    assert "eval/return_mean" not in _scalars(stacked_and_lone["a2c_cartpole"][0] / "seed_0")  # every_steps=0: none


def test_resume_total_steps_extends_every_seed_as_a_lone_extension(stacked_and_lone, tmp_path, capsys):
    """``rlopt train --resume STACK --total-steps N``: each seed continues to N with its schedules
    re-fitted, ending where its lone run extended the same way ends."""
    import shutil

    stack, lone = stacked_and_lone["a2c_cartpole"]
    shutil.copytree(stack, tmp_path / "stack")
    shutil.copytree(lone, tmp_path / "lone")
    assert main(["train", "--resume", str(tmp_path / "stack"), "--total-steps", "512", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "total_steps 160 -> 512" in err and "continuing from 256 env steps" in err
    assert main(["train", "--resume", str(tmp_path / "lone"), "--total-steps", "512", "--no-progress"]) == 0
    capsys.readouterr()
    for seed in (0, 1):
        summary = json.loads((tmp_path / "stack" / f"seed_{seed}" / "summary.json").read_text())
        assert summary["total_steps"] == 512
        assert yaml.safe_load((tmp_path / "stack" / f"seed_{seed}" / "config.yaml").read_text())["total_steps"] == 512
    ours = torch.load(list_checkpoints(tmp_path / "stack" / "seed_1")[-1], weights_only=True)
    theirs = torch.load(list_checkpoints(tmp_path / "lone")[-1], weights_only=True)
    assert ours["env_steps"] == theirs["env_steps"] == 512
    for name in ("actor", "critic"):
        for key, value in theirs["agent"][name].items():
            torch.testing.assert_close(ours["agent"][name][key], value, rtol=1e-5, atol=1e-6)
        assert ours["agent"][f"{name}_scheduler"] == theirs["agent"][f"{name}_scheduler"]
    assert main(["train", "--resume", str(tmp_path / "stack"), "--total-steps", "100"]) == 2
    assert "--total-steps 100 is below the 512 env steps" in capsys.readouterr().err
