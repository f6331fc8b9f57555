"""The second bad-input and fault campaign (issue 21) as the project's own table.

Every refusal exits 2 with one ``rlopt: error:`` line, no traceback and no library warning, and
writes nothing; every documented success says what it did in one line. Cases that once hung or
printed library warnings run as real processes with a timeout; the rest call ``rlopt.cli.main``
in-process (the same code path, a fraction of the cost). The earlier table
(``tests/test_bad_input.py``) runs in-process there; one case of each of its classes runs here as
a real process, where warnings and exit codes are the real ones.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from agents import A2C, PPO
from rlopt.checkpoint import list_checkpoints, load_checkpoint
from rlopt.cli import EXIT_BAD_INPUT, EXIT_WRITE_FAILED, main
from rlopt.errors import ConfigError
from rlopt.files import LOCK_FILE, atomic_write_text
from tests.test_bad_input import CASES as EARLIER_CASES
from tests.test_bad_input import BadInput
from tests.test_bad_input import _tree
from tests.test_run_faults import SMALL

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60
"""Seconds a real process may take: any case still running then has hung."""
MAX_LINE = 1000
"""An error line quoting a 100,000-character value stays this short."""
LIBRARY_WARNING = ("Warning:", "warnings.warn", "Traceback")


# ------------------------------------------------------------------------------------ helpers


def _one_line(err: str, prefix: str = "rlopt: error: ") -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    assert not any(marker in lines[0] for marker in LIBRARY_WARNING), err
    assert len(lines[0]) <= MAX_LINE, lines[0][:300]
    return lines[0]


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd`` with this checkout first on the path; a hang fails the test."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _python("-m", "rlopt", *argv, cwd=cwd)


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str, list[str]]:
    """``main(argv)`` in-process: exit code, stdout, stderr and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    torch.set_num_threads(1)  # an agent built before the error may have changed it
    out, err = capsys.readouterr()
    return code, out, err, [f"{w.category.__name__}: {w.message}" for w in caught]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished PPO run (checkpoints at 256 and 512 env steps), a finished A2C run and an
    ``agent.save`` file of an A2C agent: the material the eval and resume cases start from."""
    root = tmp_path_factory.mktemp("runs")
    small = [*SMALL, "total_steps=512", "checkpoint.every_steps=256"]
    assert main(["train", *small, "--run-dir", str(root / "ppo"), "--no-progress"]) == 0
    assert main(["train", *small, "agent=a2c", "--run-dir", str(root / "a2c"), "--no-progress"]) == 0
    A2C.from_config(ROOT / "configs" / "a2c_cartpole.yaml").save(root / "a2c_saved.pt")
    torch.set_num_threads(1)
    return root


def _copy_run(runs: Path, tmp: Path, name: str = "ppo") -> Path:
    return Path(shutil.copytree(runs / name, tmp / name))


# ------------------------------------------------------------------------------------ refusals, in-process


@dataclass(frozen=True)
class Refusal:
    """``argv`` (``{tmp}``: the test's directory, ``{runs}``: the shared runs); ``prepare`` sets
    files up in ``tmp``; the line must hold every string of ``expect``."""

    name: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]
    prepare: Callable[[Path, Path], Any] | None = None


def _edit_agent(runs: Path, tmp: Path) -> None:
    config = _copy_run(runs, tmp) / "config.yaml"
    config.write_text(config.read_text().replace("agent: ppo", "agent: a2c"))


def _tear_every_checkpoint(runs: Path, tmp: Path) -> None:
    run = _copy_run(runs, tmp)
    for checkpoint in list_checkpoints(run):
        checkpoint.write_bytes(b"torn")
    (run / "summary.json").unlink()


def _unfinished_run(runs: Path, tmp: Path) -> None:
    (tmp / "run").mkdir()
    shutil.copy(runs / "ppo" / "config.yaml", tmp / "run" / "config.yaml")


LONG_NAME = "x" * 100_000
REFUSALS = [
    Refusal("run dir name of 300 characters", ("train", *SMALL, "--run-dir", "{tmp}/" + "d" * 300),
            ("--run-dir", "File name too long", "characters)")),
    Refusal("env.num_envs of 400 digits", ("train", *SMALL, "env.num_envs=" + "9" * 400, "--run-dir", "{tmp}/run"),
            ("env.num_envs must be in [1, 4096]", "400 characters")),
    Refusal("ppo.epochs of 400 digits", ("train", *SMALL, "ppo.epochs=" + "9" * 400, "--run-dir", "{tmp}/run"),
            ("ppo.epochs must be in [1, 10000]",)),
    Refusal("network of 400 digits", ("train", *SMALL, f"actor.hidden=[{'9' * 400}]", "--run-dir", "{tmp}/run"),
            ("actor.hidden: each layer in [1, 65536] units", "400 characters")),
    Refusal("eval.max_episode_steps of 400 digits", ("train", *SMALL, "eval.max_episode_steps=" + "9" * 400,
                                                     "--run-dir", "{tmp}/run"), ("eval.max_episode_steps",)),
    Refusal("abbreviated option --episode", ("eval", "{runs}/ppo", "--episode", "2"), ("--episode",)),
    Refusal("abbreviated option --total-step", ("train", "--resume", "{runs}/ppo", "--total-step", "9"),
            ("--total-step",)),
    Refusal("100,000-character optimizer name", ("train", *SMALL, f"actor.optim.name={LONG_NAME}", "--run-dir",
                                                 "{tmp}/run"), ("actor.optim.name", "(100003 characters)")),
    Refusal("oc.env resolver in an override", ("train", *SMALL, "env.id=${oc.env:HOME}", "--run-dir", "{tmp}/run"),
            ("env.id", "resolver")),
    Refusal("resolver in a config file", ("train", "{tmp}/cfg.yaml", "--run-dir", "{tmp}/run"), ("seed", "resolver"),
            lambda runs, tmp: (tmp / "cfg.yaml").write_text("agent: ppo\nseed: '${oc.decode:3}'\n")),
    Refusal("eval --episodes of 400 digits", ("eval", "{runs}/ppo", "--episodes", "9" * 400),
            ("--episodes", "400 characters")),
    Refusal("eval of another agent's checkpoint", ("eval", "{runs}/ppo", "--checkpoint",
                                                   "{runs}/a2c/checkpoints/step_000000000512.pt"),
            ("--checkpoint", "trained as a2c", "agent: ppo")),
    Refusal("eval of another agent's saved file", ("eval", "{runs}/ppo", "--checkpoint", "{runs}/a2c_saved.pt"),
            ("--checkpoint", "trained as a2c")),
    Refusal("eval of a run whose config.yaml names another agent", ("eval", "{tmp}/ppo"),
            ("trained as ppo", "agent: a2c"), _edit_agent),
    Refusal("eval --checkpoint of a pickled env", ("eval", "{runs}/ppo", "--checkpoint",
                                                   "{runs}/ppo/checkpoints/step_000000000512.env"),
            ("--checkpoint", "not a readable rlopt checkpoint")),
    Refusal("resume with every checkpoint torn", ("train", "--resume", "{tmp}/ppo"),
            ("--resume", "no readable checkpoint left"), _tear_every_checkpoint),
    Refusal("eval with every checkpoint torn", ("eval", "{tmp}/ppo"), ("no readable checkpoint left",),
            _tear_every_checkpoint),
    Refusal("new run into an unfinished run", ("train", *SMALL, "--run-dir", "{tmp}/run"),
            ("not empty", "rlopt train --resume"), _unfinished_run),
    Refusal("new run into a finished run", ("train", *SMALL, "--run-dir", "{runs}/ppo"), ("not empty",)),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS, ids=lambda case: case.name)
def test_refusal_is_one_line_without_warnings_and_writes_nothing(
    case: Refusal, runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if case.prepare is not None:
        case.prepare(runs, tmp_path)
    before, shared = _tree(tmp_path), _tree(runs)
    argv = [arg.replace("{tmp}", str(tmp_path)).replace("{runs}", str(runs)) for arg in case.argv]
    code, out, err, caught = _main(argv, capsys)
    assert code == EXIT_BAD_INPUT and out == "", err
    line = _one_line(err)
    assert all(part in line for part in case.expect), line
    assert caught == []  # torch's "Detected pickle protocol", a fallback warning before the error...
    assert _tree(tmp_path) == before and _tree(runs) == shared


# ------------------------------------------------------------------------------------ refusals, real processes


def _earlier(name: str) -> BadInput:
    case = next(case for case in EARLIER_CASES if case.name == name)
    return dataclasses.replace(case, name=f"earlier: {name}")


PROCESS_CASES = [
    BadInput("env.num_envs 1000000 (hung)", ("train", *SMALL, "env.num_envs=1000000", "--run-dir", "{tmp}/run"),
             "env.num_envs must be in [1, 4096]"),
    # one case of each class of the earlier table: keys and ranges, optimizer specs, files, command line, envs
    _earlier("unknown nested key"),
    _earlier("trust region max_kl -1"),
    _earlier("python object tag"),
    _earlier("run dir under a file"),
    _earlier("env reset returns the wrong shape"),  # gymnasium's two-line warning came first
]  # fmt: skip


@pytest.mark.parametrize("case", PROCESS_CASES, ids=lambda case: case.name)
def test_refusal_in_a_real_process(case: BadInput, tmp_path: Path) -> None:
    for name, content in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    before = _tree(tmp_path)
    proc = _cli(*[arg.replace("{tmp}", str(tmp_path)) for arg in case.argv], cwd=ROOT)
    assert proc.returncode == EXIT_BAD_INPUT and proc.stdout == "", proc.stderr
    assert case.expect in _one_line(proc.stderr)
    assert _tree(tmp_path) == before


def test_file_system_refusals_come_before_torch_is_imported(runs: Path, tmp_path: Path) -> None:
    """A locked run, a non-empty --run-dir, a missing run: refused by a process that never
    imported torch (``--resume`` of a run in use took 22 s to refuse)."""
    busy = _copy_run(runs, tmp_path)
    argvs = [["train", "--resume", str(busy)], ["train", *SMALL, "--run-dir", str(busy)],
             ["train", "--resume", str(tmp_path / "missing")], ["eval", str(tmp_path / "missing")]]  # fmt: skip
    code = (f"import sys; from rlopt.files import lock_run_dir; from rlopt.cli import main\n"
            f"held = lock_run_dir({str(busy)!r})\n"
            f"print([main(argv) for argv in {argvs!r}], 'torch' in sys.modules)")  # fmt: skip
    before = _tree(tmp_path)
    proc = _python("-c", code, cwd=tmp_path)
    assert proc.stdout.split("]")[-1].strip() == "False", proc.stdout + proc.stderr  # torch never imported
    assert proc.stdout.startswith("[2, 2, 2, 2]"), proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 4 and all(line.startswith("rlopt: error: ") for line in lines), proc.stderr
    assert "in use" in lines[0] and "not empty" in lines[1] and "missing" in lines[2] + lines[3]
    assert _tree(tmp_path) == {**before, f"ppo/{LOCK_FILE}": _tree(tmp_path)[f"ppo/{LOCK_FILE}"]}


def test_learn_of_10_to_the_400_steps_is_refused_at_once(tmp_path: Path) -> None:
    code = ("from agents import PPO\nfrom rlopt.errors import ConfigError\n"
            "try:\n    PPO.from_config('ppo_cartpole').learn(10**400)\nexcept ConfigError as err:\n    print(err)")  # fmt: skip
    proc = _python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0 and "learn: total_steps" in proc.stdout and "1e+11" in proc.stdout, proc.stderr


# ------------------------------------------------------------------------------------ the Python API


@pytest.mark.parametrize("shape", [(3,), (2, 5), (0,), (2, 3, 4)])
def test_predict_names_the_shape_the_policy_takes(shape: tuple[int, ...]) -> None:
    agent = PPO.from_config(ROOT / "configs" / "ppo_cartpole.yaml")
    with pytest.raises(ConfigError, match=r"predict: observations of shape .* takes one observation of shape \(4,\)"):
        agent.predict(np.zeros(shape))
    assert agent.predict(np.zeros(4))[0].shape == () and agent.predict(np.zeros((2, 4)))[0].shape == (2,)


def test_learn_refuses_another_runs_directory_but_continues_its_own(runs: Path, tmp_path: Path) -> None:
    before = _tree(runs)
    agent = PPO.from_config(ROOT / "configs" / "ppo_cartpole.yaml", env={"num_envs": 2}, rollout={"n_steps": 64},
                            ppo={"epochs": 1, "minibatch_size": 64}, eval={"episodes": 1})  # fmt: skip
    with pytest.raises(ConfigError, match="learn: run_dir: .* is not empty"):
        agent.learn(256, run_dir=runs / "ppo", progress=False)
    assert _tree(runs) == before
    agent.learn(128, run_dir=tmp_path / "own", progress=False)
    assert agent.learn(128, run_dir=tmp_path / "own", progress=False)["total_steps"] == 256  # its own run goes on
    with pytest.raises(ConfigError, match="is not empty"):
        agent.learn(128, run_dir=tmp_path / "own", progress=False, reset_num_timesteps=True)  # a new run there


def test_load_of_a_non_checkpoint_raises_no_library_warning(runs: Path) -> None:
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ConfigError, match="not a readable"):
        warnings.simplefilter("always")
        PPO.load(runs / "ppo" / "checkpoints" / "step_000000000512.env")
    assert [str(w.message) for w in caught] == []


# ------------------------------------------------------------------------------------ documented successes


def test_a_full_disk_is_one_line_and_the_run_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync reports ENOSPC from the third checkpoint on (as a full file system does): exit 4,
    one line naming the file and the resume command; the two checkpoints written stay loadable."""
    import rlopt.files

    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        calls.append(name)
        if sum(".step_" in c and ".pt." in c for c in calls) > 2 and ".step_" in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(rlopt.files.os, "fsync", fsync)
    run = tmp_path / "run"
    argv = ["train", *SMALL, "total_steps=1024", "checkpoint.every_steps=256", "--run-dir", str(run), "--no-progress"]
    code, out, err, _ = _main(argv, capsys)
    assert code == EXIT_WRITE_FAILED and out == "", err
    line = _one_line(err)
    assert "No space left on device" in line and str(run / "checkpoints") in line
    assert f"rlopt train --resume {run}" in line
    kept = list_checkpoints(run)
    assert [p.name for p in kept] == ["step_000000000256.pt", "step_000000000512.pt"]
    assert all("agent" in load_checkpoint(p) for p in kept)
    monkeypatch.setattr(rlopt.files.os, "fsync", real_fsync)  # space freed
    code, out, err, _ = _main(["train", "--resume", str(run), "--no-progress"], capsys)
    assert code == 0 and "resuming" in err and list_checkpoints(run)[-1].name == "step_000000001024.pt"


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _unfinished_run(runs, tmp_path)
    (tmp_path / "run" / LOCK_FILE).write_text("999999\n")  # what the killed process left
    code, out, err, _ = _main(["train", "--resume", str(tmp_path / "run")], capsys)
    assert code == 0, err
    said = [line for line in err.splitlines() if "no checkpoint" in line]
    assert len(said) == 1 and "starting it over from step 0 with its config.yaml" in said[0]
    assert "train_ret=" in err and " ret=" not in err  # the progress bar names the stochastic training return
    assert list_checkpoints(tmp_path / "run")[-1].name == "step_000000000512.pt"


def test_eval_falls_back_past_a_torn_newest_checkpoint(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy_run(runs, tmp_path)
    older, newest = list_checkpoints(run)
    newest.write_bytes(b"torn")
    code, out, err, caught = _main(["eval", str(run), "--episodes", "1"], capsys)
    assert code == 0 and caught == []
    assert older.name in _one_line(err, "rlopt: warning: ") and newest.name in err
    assert '"episodes": 1' in out


def test_nan_rewards_end_with_one_warning_line(tmp_path: Path) -> None:
    proc = _cli("train", *SMALL, "env.id=tests.test_faults:NaNRewardOnce-v0", "--run-dir", str(tmp_path / "run"),
                "--no-progress", cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    assert len(warned) == 1 and warned[0].startswith("rlopt: warning: 1 of 4 updates were skipped"), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_respect_the_umask(umask: int, mode: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == mode
