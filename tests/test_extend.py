"""Issue 12, item 9: extending a finished run, and ``agent.learn`` called twice.

``rlopt train --resume RUN --total-steps N`` continues a run to N env steps and ``agent.learn(n)``
trains n more steps with the count going on. Both re-fit every schedule to the new length from
the current update (:func:`rlopt.coefficients.refit_schedules`): linear/cosine schedules keep their
start and end values over the new horizon, so a linear lr that reached 0 at the old end resumes
at lr0 · (1 − u / U_new); horizon-free schedules continue unchanged.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agents import A2C, PPO, TRPO
from rlopt.checkpoint import list_checkpoints
from rlopt.cli import EXIT_BAD_INPUT, main
from rlopt.coefficients import refit_schedules
from rlopt.config import config_to_yaml, load_config
from rlopt.errors import ConfigError
from rlopt.files import atomic_write_text
from rlopt.schedules import (
    ScheduledValue,
    build_lr_scheduler,
    build_schedule,
    refit_lr_scheduler,
)
from tests.test_resume import (
    POLL_SECONDS,
    ROOT,
    STARTUP_TIMEOUT_SECONDS,
    assert_identical_runs,
    reap,
    scalars,
    sigkill_running,
)

BATCH = 4 * 32  # env.num_envs × ppo_cartpole's rollout.n_steps
BASE_STEPS = 12 * BATCH  # the finished run: 12 updates
EXTENDED_STEPS = 36 * BATCH  # extended to 36 updates
LR0 = 0.001  # ppo_cartpole: actor and critic adam lr 1e-3, linear to 0; ppo.clip 0.2, linear to 0
CLI_RUN = [
    str(ROOT / "configs" / "ppo_cartpole.yaml"),
    f"total_steps={BASE_STEPS}", "checkpoint.every_steps=768", "checkpoint.keep=3",
    "env.num_envs=4", "ppo.epochs=2", "ppo.minibatch_size=64", "eval.episodes=2",
]  # fmt: skip


def extend(run_dir: Path, total_steps: int | None = EXTENDED_STEPS) -> int:
    flag = [] if total_steps is None else ["--total-steps", str(total_steps)]
    return main(["train", "--resume", str(run_dir), *flag, "--no-progress"])


def newest_step(run_dir: Path) -> int:
    found = list_checkpoints(run_dir)
    return int(found[-1].stem.split("_")[1]) if found else 0


def linear_lr(update: int, horizon: int) -> float:
    return LR0 * (1.0 - min(update / horizon, 1.0))


# ------------------------------------------------------------------------------ the re-fit rule
SPECS = [
    {"name": "linear"},
    {"name": "linear", "end_factor": 0.1, "warmup_steps": 3, "warmup_start_factor": 0.2},
    {"name": "cosine", "min_factor": 0.1},
    {"name": "cosine", "warmup_steps": 4},
    {"name": "step", "step_size": 5, "gamma": 0.5},
    {"name": "inverse_sqrt", "timescale": 3.0},
    {"name": "cosine_restarts", "period": 7, "period_mult": 2},
    {"name": "constant", "warmup_steps": 5},
    None,
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: "none" if spec is None else "-".join(map(str, spec.values())))
def test_refit_equals_the_schedule_built_for_the_new_horizon(spec: dict | None) -> None:
    old, new = build_schedule(spec, 20), build_schedule(spec, 50)
    assert old.refit(50) == new and new.refit(20) == old
    assert old.fits_run_length == (spec is not None and spec["name"] in ("linear", "cosine"))
    if not old.fits_run_length:
        assert old == new  # horizon-free: the extension leaves it as it is


def test_refit_of_a_warmup_longer_than_the_run_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="warmup_steps"):
        build_schedule({"name": "linear", "warmup_steps": 10}, 20).refit(10)


def test_refit_lr_scheduler_matches_a_scheduler_built_for_the_new_horizon() -> None:
    def scheduler(horizon: int) -> torch.optim.lr_scheduler.LambdaLR:
        a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
        optimizer = torch.optim.SGD([{"params": [a], "lr": 0.3}, {"params": [b], "lr": 0.07}])
        return build_lr_scheduler(optimizer, build_schedule({"name": "linear"}, horizon))

    def step(*schedulers: torch.optim.lr_scheduler.LambdaLR) -> None:
        for one in schedulers:
            one.optimizer.step()  # no gradients: moves nothing, keeps torch's order check quiet
            one.step()

    extended, reference = scheduler(10), scheduler(30)
    for _ in range(10):
        step(extended, reference)
    assert [g["lr"] for g in extended.optimizer.param_groups] == [0.0, 0.0]  # the old run ended at lr 0
    refit_lr_scheduler(extended, 30, 10)
    for _ in range(21):  # bit for bit the lrs of a run configured with 30 updates from the start
        assert [g["lr"] for g in extended.optimizer.param_groups] == [g["lr"] for g in reference.optimizer.param_groups]
        assert extended.get_last_lr() == reference.get_last_lr()
        step(extended, reference)
    assert extended.state_dict() == reference.state_dict()


def test_refit_schedules_reports_only_the_schedules_it_changes() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    actor = build_lr_scheduler(torch.optim.SGD([param], lr=0.01), build_schedule({"name": "linear"}, 4))
    critic = build_lr_scheduler(torch.optim.SGD([param], lr=0.02), build_schedule(None, 4))
    for _ in range(4):
        for scheduler in (actor, critic):
            scheduler.optimizer.step()  # no gradients: moves nothing, keeps torch's order check quiet
            scheduler.step()
    coefficients = {"ppo.clip": ScheduledValue(0.2, build_schedule({"name": "linear"}, 4)), "entropy_coef": ScheduledValue(0.01)}
    changed = refit_schedules({"actor lr": actor, "critic lr": critic, "none": None}, coefficients, 4, 8, 4)
    assert changed == [
        "actor lr linear re-fitted to 8 updates: 0.005 at update 4 (was 0)",
        "ppo.clip linear re-fitted to 8 updates: 0.1 at update 4 (was 0)",
    ]
    assert actor.optimizer.param_groups[0]["lr"] == 0.01 * (1 - 4 / 8) and critic.optimizer.param_groups[0]["lr"] == 0.02
    assert coefficients["ppo.clip"].value(6) == 0.2 * (1 - 6 / 8) and coefficients["entropy_coef"].value(6) == 0.01
    assert refit_schedules({"actor lr": actor}, coefficients, 4, 8, 8) == []  # same length: nothing to say


# ------------------------------------------------------------------------------ rlopt train --resume --total-steps
@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of BASE_STEPS env steps (copy it before extending)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *CLI_RUN, "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


@pytest.fixture(scope="module")
def extended(finished: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The finished run extended to EXTENDED_STEPS without interruption, and what it printed."""
    run_dir = tmp_path_factory.mktemp("extended") / "run"
    shutil.copytree(finished, run_dir)
    capture = tmp_path_factory.mktemp("stderr") / "err.txt"
    with capture.open("w") as sink:
        saved, sys.stderr = sys.stderr, sink
        try:
            assert extend(run_dir) == 0
        finally:
            sys.stderr = saved
    return run_dir, capture.read_text()


def test_extension_reaches_the_new_total_and_continues_the_logs(extended: tuple[Path, str]) -> None:
    run_dir, _ = extended
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] == EXTENDED_STEPS
    assert load_config(run_dir / "config.yaml").total_steps == EXTENDED_STEPS  # config.yaml says what the run is now
    logged = scalars(run_dir)
    for tag in ("actor/loss", "critic/loss", "actor/lr", "health/skipped_updates"):
        steps = [step for step, _ in logged[tag]]
        assert steps == list(range(BATCH, EXTENDED_STEPS + 1, BATCH)), tag  # one point per update, no duplicates


def test_extension_refits_the_lr_to_the_new_horizon_from_the_current_update(extended: tuple[Path, str]) -> None:
    run_dir, _ = extended
    old_updates, new_updates = BASE_STEPS // BATCH, EXTENDED_STEPS // BATCH
    for tag in ("actor/lr", "critic/lr"):
        for step, value in scalars(run_dir)[tag]:  # the lr update u used is logged at env step (u + 1)·batch
            update = step // BATCH - 1
            horizon = old_updates if update < old_updates else new_updates
            assert value == pytest.approx(linear_lr(update, horizon), rel=1e-6, abs=1e-12), (tag, step)
    # The first update of the extension: lr0 · (1 − 12/36), not the 0 the finished run ended at.
    assert dict(scalars(run_dir)["actor/lr"])[BASE_STEPS + BATCH] == pytest.approx(LR0 * 2 / 3, rel=1e-6)


def test_extension_prints_one_line_saying_what_happened_to_each_schedule(extended: tuple[Path, str]) -> None:
    _, err = extended
    lines = [line for line in err.splitlines() if "re-fitted" in line]
    assert lines == [
        f"rlopt: total_steps {BASE_STEPS:,} -> {EXTENDED_STEPS:,} (12 -> 36 updates), continuing from "
        f"{BASE_STEPS:,} env steps (update 12): actor lr linear re-fitted to 36 updates: 0.000667 at update 12 (was 0); "
        "critic lr linear re-fitted to 36 updates: 0.000667 at update 12 (was 0); "
        "ppo.clip linear re-fitted to 36 updates: 0.133 at update 12 (was 0); every other schedule unchanged"
    ]


@pytest.mark.parametrize("how", ["flag", "config.yaml"])
def test_a_total_below_the_steps_done_is_refused_in_one_line_and_writes_nothing(
    how: str, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    if how == "config.yaml":
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(load_config(run_dir / "config.yaml", ["total_steps=1000"])))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert extend(run_dir, 1000 if how == "flag" else None) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"1000 is below the {BASE_STEPS} env steps" in err and ("--total-steps" in err) == (how == "flag")
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_total_steps_flag_without_resume_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", *CLI_RUN, "--run-dir", str(run_dir), "--total-steps", "512", "--no-progress"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--resume" in err and "total_steps=N" in err
    assert not run_dir.exists()


def test_extension_killed_before_its_first_checkpoint_resumes_exactly(
    finished: Path, extended: tuple[Path, str], tmp_path: Path
) -> None:
    """What a SIGKILL right after the extension started leaves: config.yaml already rewritten to the
    new total, the newest checkpoint still the finished run's. A plain --resume continues the
    extension (the same re-fit) and ends bit-identical to the uninterrupted extension."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    new_config = load_config(run_dir / "config.yaml", [f"total_steps={EXTENDED_STEPS}"])
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(new_config))  # as the extension's train() does first
    assert extend(run_dir, None) == 0
    assert_identical_runs(extended[0], run_dir)


def test_extension_killed_mid_run_resumes_bit_identical(finished: Path, extended: tuple[Path, str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    command = [sys.executable, "-m", "rlopt.cli", "train", "--resume", str(run_dir),
               "--total-steps", str(EXTENDED_STEPS), "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        times = []
        for target in (BASE_STEPS + 768, BASE_STEPS + 2 * 768):  # two checkpoints of the extension
            deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
            while newest_step(run_dir) < target:
                assert process.poll() is None, f"extension ended early: {process.communicate()}"
                assert time.monotonic() < deadline, "no checkpoint appeared in time"
                time.sleep(POLL_SECONDS)
            times.append(time.monotonic())
        time.sleep(random.Random(time.time_ns()).uniform(0.0, times[1] - times[0]))
        sigkill_running(process, "the extension finished before the kill")
    finally:
        reap(process)
    assert load_config(run_dir / "config.yaml").total_steps == EXTENDED_STEPS
    assert not (run_dir / "summary.json").exists()  # the finished run's summary went when the extension began
    assert extend(run_dir, None) == 0  # a plain --resume: config.yaml and the checkpoint agree on the new total
    assert_identical_runs(extended[0], run_dir)


# ------------------------------------------------------------------------------ agent.learn called twice
TINY = {"env": {"num_envs": 2}, "rollout": {"n_steps": 32}, "eval": {"episodes": 1},
        "ppo": {"epochs": 2, "minibatch_size": 32}}  # fmt: skip
LEARN_BATCH = 2 * 32
STEPS = 8 * LEARN_BATCH


def tiny_ppo(**values: object) -> PPO:
    return PPO.from_config("configs/ppo_cartpole.yaml", **TINY, **values)


def logged_lr(run_dir: Path) -> list[tuple[int, float]]:
    return scalars(run_dir)["actor/lr"]


def test_learn_twice_continues_counting_and_refits_the_schedules(tmp_path: Path) -> None:
    agent = tiny_ppo(total_steps=10 * STEPS)
    first = agent.learn(STEPS, run_dir=tmp_path / "run", progress=False)
    assert first["total_steps"] == STEPS and agent.updates_done == 8
    assert agent.actor_optimizer.param_groups[0]["lr"] == 0.0  # fitted to learn's 8 updates, not the config's
    second = agent.learn(STEPS, progress=False)  # run_dir None: the same run directory goes on
    assert second["total_steps"] == 2 * STEPS and agent.updates_done == 16 and agent.cfg.total_steps == 2 * STEPS
    assert load_config(tmp_path / "run" / "config.yaml").total_steps == 2 * STEPS
    points = logged_lr(tmp_path / "run")
    assert [step for step, _ in points] == list(range(LEARN_BATCH, 2 * STEPS + 1, LEARN_BATCH))
    for step, value in points:
        update = step // LEARN_BATCH - 1
        assert value == pytest.approx(linear_lr(update, 8 if update < 8 else 16), rel=1e-6, abs=1e-12), step
    assert agent.coefficient("ppo.clip") == 0.0 and agent.coefficients["ppo.clip"].value(8) == pytest.approx(0.1)


def test_learn_twice_equals_one_learn_of_the_sum_with_constant_schedules() -> None:
    constant = {"total_steps": STEPS, "actor": {"schedule": {"name": "constant"}}}
    split = A2C.from_config("configs/a2c_cartpole.yaml", **TINY, **constant)  # seeds torch's global RNG
    split.learn(STEPS, progress=False)
    summary = split.learn(STEPS, progress=False)
    whole = A2C.from_config("configs/a2c_cartpole.yaml", **TINY, **constant)
    reference = whole.learn(2 * STEPS, progress=False)
    assert summary["total_steps"] == reference["total_steps"] == 2 * STEPS
    assert summary["eval_return_mean"] == reference["eval_return_mean"]
    for x, y in zip([*split.actor.parameters(), *split.critic.parameters()], [*whole.actor.parameters(), *whole.critic.parameters()]):
        assert torch.equal(x, y)  # the same episodes went on: no reset between the two calls


def test_reset_num_timesteps_restarts_the_count_and_the_schedules(tmp_path: Path) -> None:
    agent = tiny_ppo(total_steps=STEPS)
    agent.learn(STEPS, progress=False)
    summary = agent.learn(STEPS, run_dir=tmp_path / "again", progress=False, reset_num_timesteps=True)
    assert summary["total_steps"] == STEPS and agent.updates_done == 8
    points = logged_lr(tmp_path / "again")
    assert points[0] == (LEARN_BATCH, pytest.approx(LR0)) and len(points) == 8


def test_a_loaded_agent_whose_lr_reached_zero_keeps_learning_with_the_refitted_lr(tmp_path: Path) -> None:
    agent = tiny_ppo(total_steps=STEPS)
    agent.learn(STEPS, run_dir=tmp_path / "run", progress=False)
    for loaded in (PPO.load(tmp_path / "run"), PPO.load(agent.save(tmp_path / "ppo.pt"))):
        assert loaded.updates_done == 8 and loaded.actor_optimizer.param_groups[0]["lr"] == 0.0
        before = [p.detach().clone() for p in loaded.actor.parameters()]
        out = tmp_path / f"more-{len(list(tmp_path.iterdir()))}"
        summary = loaded.learn(STEPS, run_dir=out, progress=False)
        assert summary["total_steps"] == 2 * STEPS and loaded.updates_done == 16
        points = logged_lr(out)
        assert points[0] == (STEPS + LEARN_BATCH, pytest.approx(LR0 / 2))  # lr0 · (1 − 8/16) at update 8
        assert any(not torch.equal(x, y) for x, y in zip(before, loaded.actor.parameters()))


def test_learn_refits_the_trust_region_radius_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    radius = {"name": "trust_region", "max_kl": {"value": 0.02, "name": "linear"}}
    agent = TRPO.from_config("configs/trpo_cartpole.yaml", **TINY, total_steps=STEPS, actor={"optim": radius},
                             critic={"minibatch_size": 64})  # fmt: skip
    agent.learn(STEPS, progress=False)
    assert agent.coefficient("actor.optim.max_kl") == 0.0  # the end of its 8-update linear schedule
    capsys.readouterr()
    agent.learn(STEPS, progress=True)
    said = [line for line in capsys.readouterr().err.splitlines() if "re-fitted" in line]
    assert len(said) == 1 and said[0].startswith(f"rlopt: continuing to {2 * STEPS:,} env steps: ")
    assert "actor.optim.max_kl linear re-fitted to 16 updates: 0.01 at update 8 (was 0)" in said[0]
    assert agent.coefficients["actor.optim.max_kl"].value(12) == pytest.approx(0.02 * (1 - 12 / 16))


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_learn_refuses_a_bad_step_count(bad: object) -> None:
    with pytest.raises(ConfigError, match="learn: total_steps"):
        tiny_ppo(total_steps=STEPS).learn(bad, progress=False)  # type: ignore[arg-type]


def test_learn_holds_the_run_directory_lock_like_the_cli(tmp_path: Path) -> None:
    """Another process's lock on RUN_DIR stops learn() at once; after learn() the lock is ours."""
    from rlopt.files import RunDirLocked, lock_run_dir

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    other = lock_run_dir(run_dir)  # another holder (a separate open file description)
    agent = tiny_ppo()
    with pytest.raises(ConfigError, match="in use by another process"):
        agent.learn(LEARN_BATCH, run_dir=run_dir, progress=False)
    other.close()
    agent.learn(LEARN_BATCH, run_dir=run_dir, progress=False)
    with pytest.raises(RunDirLocked):
        lock_run_dir(run_dir)  # held by the agent until it moves elsewhere
