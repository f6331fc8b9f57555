"""``rlopt sweep``: sweep-file expansion and validation, layout, resume, lock, failures, threads.

Runs are real ``rlopt train`` subprocesses of a tiny A2C CartPole config (512 env steps).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from agents import check_config
from rlopt.checkpoint import list_checkpoints
from rlopt.config import Config, load_config
from rlopt.errors import ConfigError
from rlopt.run_files import SUMMARY_KEYS
from rlopt.cli import main as cli_main
from rlopt.sweep import add_sweep_parser, sweep_command
from rlopt.sweep.spec import load_sweep
from rlopt.sweep.hparams import HPARAMS_SUFFIX
from rlopt.sweep.runner import START_MARKER
from rlopt.sweep.spec import config_hash
from tests.sweep_envs import PROBE_DIR_VARIABLE
from tests.test_resume import scalars

ROOT = Path(__file__).resolve().parents[1]
TINY = {"total_steps": 512, "eval.episodes": 1, "env.num_envs": 2, "checkpoint.every_steps": 256}
PAIR = {"adam": {"actor.optim": {"name": "adam", "lr": 0.001}}, "sgd": {"actor.optim": {"name": "sgd", "lr": 0.1}}}
DRIVER = (
    "import argparse, sys\n"
    "from rlopt.sweep import add_sweep_parser, sweep_command\n"
    "parser = argparse.ArgumentParser(prog='rlopt')\n"
    "add_sweep_parser(parser.add_subparsers(dest='command'))\n"
    "sys.exit(sweep_command(parser.parse_args(sys.argv[1:]), lambda cfg: cfg))\n"
)  # fmt: skip


def keep(cfg: Config) -> Config:
    """The injected validator of these tests: load_config's checks only."""
    return cfg


def write_sweep(path: Path, **fields: Any) -> Path:
    """A sweep file of one process per run (these tests; tests/test_sweep_stacked.py stacks seeds)."""
    fields = {"name": path.stem, "base": "a2c_cartpole", "set": TINY, "seeds_per_process": 1, **fields}
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def sweep(*argv: str, validate: Any = keep) -> int:
    """``rlopt sweep ARGV`` through the parser the CLI registers."""
    parser = argparse.ArgumentParser(prog="rlopt")
    add_sweep_parser(parser.add_subparsers(dest="command"))
    return sweep_command(parser.parse_args(["sweep", *argv]), validate)


def starts(out: Path, arm: str, seed: int) -> int:
    """How many times the run was started (one marker per attempt in its log)."""
    log = out / "runs" / arm / f"seed_{seed}.log"
    return log.read_text().count(START_MARKER) if log.is_file() else 0


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` (but the lock) with its size and mtime."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def assert_no_duplicate_points(run_dir: Path) -> None:
    for tag, points in scalars(run_dir).items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), f"{tag} has duplicate or unordered steps in {run_dir}"


# ---------------------------------------------------------------------------------------------
# Expansion
# ---------------------------------------------------------------------------------------------


def test_arms_are_variants_times_grid_in_order(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "s.yaml", seeds=[3, 1], variants=PAIR,
                       grid={"actor.max_grad_norm": [0.5, None], "critic.optim.lr": [0.01]})  # fmt: skip
    spec = load_sweep(path, keep)
    names = [arm.name for arm in spec.arms]
    assert names == [
        "adam__actor.max_grad_norm=0.5__critic.optim.lr=0.01",
        "adam__actor.max_grad_norm=null__critic.optim.lr=0.01",
        "sgd__actor.max_grad_norm=0.5__critic.optim.lr=0.01",
        "sgd__actor.max_grad_norm=null__critic.optim.lr=0.01",
    ]
    assert [(run.arm, run.seed) for run in spec.runs] == [(name, seed) for name in names for seed in (3, 1)]
    assert spec.runs[2].config.actor.max_grad_norm is None and spec.runs[0].config.actor.max_grad_norm == 0.5
    assert spec.runs[1].overrides == {**TINY, **PAIR["adam"], "actor.max_grad_norm": 0.5,
                                      "critic.optim.lr": 0.01, "seed": 1}  # fmt: skip


def test_grid_alone_and_neither(tmp_path: Path) -> None:
    grid_only = load_sweep(write_sweep(tmp_path / "g.yaml", grid={"gamma": [0.9, 0.99]}), keep)
    assert [arm.name for arm in grid_only.arms] == ["gamma=0.9", "gamma=0.99"]
    assert [run.config.gamma for run in grid_only.runs] == [0.9, 0.99]
    single = load_sweep(write_sweep(tmp_path / "one.yaml", seeds={"start": 5, "count": 2}), keep)
    assert [(run.arm, run.seed, run.config.seed) for run in single.runs] == [("base", 5, 5), ("base", 6, 6)]
    assert single.baseline is None and single.metric == "eval_return_mean" and single.curve == "rollout/episode_return"


def test_dict_value_replaces_the_subtree_and_leaves_refine_it(tmp_path: Path) -> None:
    path = write_sweep(
        tmp_path / "s.yaml",
        set={**TINY, "actor.optim": {"name": "adam", "lr": 0.001, "eps": 1e-5}},
        variants={"sgd": {"actor.optim": {"name": "sgd", "lr": 0.1}}, "adam_lr": {"actor.optim.lr": 0.003}},
    )
    runs = {run.arm: run.config for run in load_sweep(path, keep).runs}
    assert runs["sgd"].actor.optim == {"name": "sgd", "lr": 0.1}  # no inherited eps
    assert runs["adam_lr"].actor.optim == {"name": "adam", "lr": 0.003, "eps": 1e-5}


def test_set_threads_and_base_path(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    shutil.copy(ROOT / "configs" / "ppo_cartpole.yaml", tmp_path / "presets" / "mine.yaml")
    path = write_sweep(tmp_path / "s.yaml", base="presets/mine.yaml", threads_per_run=2)
    (run,) = load_sweep(path, keep).runs
    assert (run.config.agent, run.config.threads, run.config.total_steps, run.config.eval.episodes) == ("ppo", 2, 512, 1)
    assert run.config_hash == config_hash(run.config) == config_hash(load_config(None, values={
        **yaml.safe_load((ROOT / "configs" / "ppo_cartpole.yaml").read_text()), "total_steps": 512, "threads": 2,
        "env": {"id": "CartPole-v1", "num_envs": 2}, "eval": {"episodes": 1}, "checkpoint": {"every_steps": 256},
    }))  # fmt: skip


def test_the_injected_validator_names_the_arm(tmp_path: Path) -> None:
    def refuse_sgd(cfg: Config) -> Config:
        if cfg.actor.optim.get("name") == "sgd":
            raise ConfigError("actor.optim.name: sgd is refused by this agent")
        return cfg

    with pytest.raises(ConfigError, match=r"^sweep s, arm sgd: actor.optim.name: sgd is refused"):
        load_sweep(write_sweep(tmp_path / "s.yaml", variants=PAIR), refuse_sgd)


# ---------------------------------------------------------------------------------------------
# Bad sweep files: exit 2, one line, nothing written
# ---------------------------------------------------------------------------------------------

BAD_SWEEPS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown sweep key": ({"variant": PAIR}, "variant: unknown sweep key"),
    "misspelt config key": ({"variants": {"a": {"actor.optm.lr": 0.1}}}, "arm a: actor.optm"),
    "unknown optimizer": ({"variants": {"a": {"actor.optim": {"name": "adamx", "lr": 0.1}}}}, "arm a: actor.optim.name"),
    "negative lr": ({"variants": {"a": {"actor.optim": {"name": "sgd", "lr": -1.0}}}}, "arm a: actor.optim"),
    "bad value type": ({"grid": {"gamma": ["high"]}}, "arm gamma=high: gamma"),
    "value out of range": ({"variants": {"far": {"gamma": 2.0}}}, "arm far: gamma must be in [0, 1]"),
    "duplicate arm names": ({"grid": {"gamma": [0.5, "0.5"]}}, "two arms are both named gamma=0.5"),
    "empty seed list": ({"seeds": []}, "seeds: the list of seeds is empty"),
    "duplicate seeds": ({"seeds": [1, 2, 1]}, "seed 1 is listed twice"),
    "zero seed count": ({"seeds": {"start": 0, "count": 0}}, "seeds.count must be an integer >= 1"),
    "unknown seeds key": ({"seeds": {"start": 0, "count": 2, "step": 2}}, "seeds.step: unknown key"),
    "baseline not an arm": ({"variants": PAIR, "baseline": "rmsprop"}, "baseline: 'rmsprop' is not an arm"),
    "metric not a string": ({"metric": 5}, "metric must be a non-empty string"),
    "curve not a string": ({"curve": ["a"]}, "curve must be a non-empty string"),
    "zero threads": ({"threads_per_run": 0}, "threads_per_run must be an integer >= 1"),
    "unknown preset": ({"base": "a2c_cartpol"}, "base: unknown preset 'a2c_cartpol'"),
    "missing base file": ({"base": "nowhere/x.yaml"}, "base: no such file"),
    "unsafe variant name": ({"variants": {"a/b": {"gamma": 0.9}}}, "variants.a/b: a/b is not a filesystem-safe name"),
    "separator in variant name": ({"variants": {"a__b": {"gamma": 0.9}}}, "is not a filesystem-safe name"),
    "grid value not a list": ({"grid": {"gamma": 0.9}}, "grid.gamma must be a non-empty list"),
    "seed set by hand": ({"set": {"seed": 3}}, "set.seed: seed is set by the sweep key seeds"),
    "threads set by an arm": ({"variants": {"a": {"threads": 4}}}, "threads is set by the sweep key threads_per_run"),
    "set not a mapping": ({"set": [1, 2]}, "set must be a mapping"),
    "path through a value": ({"variants": {"a": {"gamma.x": 1}}}, "arm a: gamma.x: gamma is a value"),
    "grid key also in a variant": ({"variants": {"a": {"gamma": 0.9}}, "grid": {"gamma": [0.5]}}, "grid.gamma is also set by variant a"),
    "overrides not a mapping": ({"variants": {"a": 3}}, "variants.a must be a mapping"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_bad_sweep_exits_2_with_one_line_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fields, expected = BAD_SWEEPS[case]
    path = write_sweep(tmp_path / "bad.yaml", **fields)
    out = tmp_path / "out"
    assert sweep(str(path), "--out", str(out), validate=check_config) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlopt: error: sweep bad"), err
    assert expected in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "argv", "expected"),
    [
        ("name: x\nbase: [unclosed\n", [], "malformed YAML"),
        ("name: x\nbase: a2c_cartpole\n", ["--workers", "0"], "--workers must be in [1, 1024]"),
        ("name: x\nbase: a2c_cartpole\n", ["--address", "auto"], "--address is for --backend ray"),
    ],
)
def test_bad_file_or_arguments_exit_2(text: str, argv: list[str], expected: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    (tmp_path / "x.yaml").write_text(text)
    assert sweep(str(tmp_path / "x.yaml"), "--out", str(tmp_path / "out"), *argv) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# A finished sweep: layout, HParams, re-running, adding a seed, changed config, lock, dry run
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two arms x one seed, run on two workers: (sweep file, OUT)."""
    folder = tmp_path_factory.mktemp("pair")
    path = write_sweep(folder / "pair.yaml", seeds=[0], variants=PAIR, baseline="adam")
    assert sweep(str(path), "--out", str(folder / "out"), "--workers", "2") == 0
    return path, folder / "out"


def test_layout_and_manifest_follow_the_contract(finished: tuple[Path, Path]) -> None:
    path, out = finished
    data = manifest(out)
    assert {k: data[k] for k in ("format_version", "name", "metric", "curve", "baseline")} == {
        "format_version": 1, "name": "pair", "metric": "eval_return_mean", "curve": "rollout/episode_return",
        "baseline": "adam",
    }  # fmt: skip
    assert data["arms"] == {name: {"overrides": overrides} for name, overrides in PAIR.items()}
    assert yaml.safe_load((out / "sweep.yaml").read_text())["rlopt_version"] == "0.1.0"
    for entry in data["runs"]:
        run_dir = out / entry["run_dir"]
        assert entry["run_dir"] == f"runs/{entry['arm']}/seed_0"
        assert (entry["status"], entry["exit_code"]) == ("finished", 0) and entry["wall_seconds"] > 0
        assert entry["overrides"] == {**TINY, **PAIR[entry["arm"]], "seed": 0}
        assert entry["config_hash"] == config_hash(load_config(run_dir / "config.yaml"))
        assert load_config(out / "configs" / entry["arm"] / "seed_0.yaml") == load_config(run_dir / "config.yaml")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["total_steps"] == 512 and list(summary) == list(SUMMARY_KEYS)  # what a metric may name
        assert list_checkpoints(run_dir) and starts(out, entry["arm"], 0) == 1


def test_each_run_has_one_hparams_row_with_the_same_keys_and_types(finished: tuple[Path, Path]) -> None:
    _, out = finished
    kinds = []
    for arm in PAIR:
        run_dir = out / "runs" / arm / "seed_0"
        assert not [p for p in run_dir.iterdir() if p.is_dir() and p.name != "checkpoints"]  # no sub-runs
        assert len(list(run_dir.glob(f"*{HPARAMS_SUFFIX}"))) == 1
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        events.Reload()
        summary = json.loads((run_dir / "summary.json").read_text())
        assert [(e.step, e.value) for e in events.Scalars("hparam/eval_return_mean")] == [
            (512, pytest.approx(summary["eval_return_mean"]))
        ]
        start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
        values = start.session_start_info.hparams
        kinds.append({key: values[key].WhichOneof("kind") for key in values})
        assert values["arm"].string_value == arm
        assert json.loads(values["actor.optim"].string_value) == PAIR[arm]["actor.optim"]
    assert kinds[0] == kinds[1] == {"arm": "string_value", "seed": "number_value", "actor.optim": "string_value"}


def test_rerun_skips_finished_runs(finished: tuple[Path, Path]) -> None:
    path, out = finished
    summaries = {arm: (out / "runs" / arm / "seed_0" / "summary.json").stat().st_mtime_ns for arm in PAIR}
    assert sweep(str(path), "--out", str(out)) == 0
    assert all(starts(out, arm, 0) == 1 for arm in PAIR)
    assert summaries == {arm: (out / "runs" / arm / "seed_0" / "summary.json").stat().st_mtime_ns for arm in PAIR}


def test_adding_a_seed_runs_only_the_new_run(finished: tuple[Path, Path], tmp_path: Path) -> None:
    path, out = finished
    shutil.copytree(out, tmp_path / "out")
    grown = write_sweep(tmp_path / "pair.yaml", seeds=[0, 1], variants={"adam": PAIR["adam"]}, baseline="adam")
    assert sweep(str(grown), "--out", str(tmp_path / "out")) == 0
    assert (starts(tmp_path / "out", "adam", 0), starts(tmp_path / "out", "adam", 1)) == (1, 1)
    assert [(e["arm"], e["seed"], e["status"]) for e in manifest(tmp_path / "out")["runs"]] == [
        ("adam", 0, "finished"), ("adam", 1, "finished")
    ]  # fmt: skip


def test_a_changed_config_for_an_existing_run_is_refused(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = finished
    before = snapshot(out)
    changed = write_sweep(tmp_path / "pair.yaml", seeds=[0], variants={**PAIR, "sgd": {"actor.optim": {"name": "sgd", "lr": 0.05}}})
    assert sweep(str(changed), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "run sgd/seed_0 already exists" in err and "actor.optim.lr: 0.1 -> 0.05" in err, err
    assert snapshot(out) == before


def test_a_locked_directory_exits_2_naming_the_holder(
    finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = finished
    with open(out / ".lock", "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.seek(0), handle.truncate(), handle.write("4242\n"), handle.flush()
        started = time.monotonic()
        assert sweep(str(path), "--out", str(out)) == 2
        assert time.monotonic() - started < 10  # at once, no waiting for the holder
    assert "in use by another rlopt sweep (pid 4242)" in capsys.readouterr().err


def test_dry_run_prints_the_runs_and_writes_nothing(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = finished
    before = snapshot(out)
    grown = write_sweep(tmp_path / "pair.yaml", seeds=[0, 1], variants=PAIR)
    assert sweep(str(grown), "--out", str(out), "--dry-run") == 0
    table = capsys.readouterr().out.splitlines()
    rows = [line.split()[:3] for line in table if line.startswith(("adam ", "sgd "))]
    assert rows == [["adam", "0", "finished"], ["adam", "1", "pending"], ["sgd", "0", "finished"], ["sgd", "1", "pending"]]
    assert snapshot(out) == before
    assert sweep(str(grown), "--out", str(tmp_path / "new"), "--dry-run") == 0
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# Killed mid-way, failing runs, threads
# ---------------------------------------------------------------------------------------------


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kill_driver_when(path: Path, out: Path, ready: Callable[[], bool], timeout: float = 180) -> None:
    """Run the sweep ``path`` into ``out`` on 1 worker until ``ready()``, then SIGKILL the driver alone
    (its runs die with it: waited for, a survivor fails the test)."""
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, "sweep", str(path), "--out", str(out), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ready():
        assert driver.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)  # the driver only: its runs die with it
    driver.wait()
    deadline = time.monotonic() + 30
    while _processes_mentioning(str(out)):
        assert time.monotonic() < deadline, "a run outlived its killed driver"
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="runs die with the driver via PR_SET_PDEATHSIG")
def test_a_killed_sweep_resumes_only_unfinished_runs(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "kill.yaml", seeds=[0, 1, 2],
                       set={**TINY, "total_steps": 3072, "checkpoint.every_steps": 256})  # fmt: skip
    out = tmp_path / "out"
    first, second = out / "runs" / "base" / "seed_0", out / "runs" / "base" / "seed_1"
    kill_driver_when(path, out, lambda: (first / "summary.json").is_file() and bool(list_checkpoints(second)))
    assert not (second / "summary.json").is_file()
    assert [e["status"] for e in manifest(out)["runs"]] == ["finished", "running", "pending"]
    stale = out / "runs" / "base" / "seed_2" / "events.out.tfevents.1.stale"  # killed before its first checkpoint
    stale.parent.mkdir()
    stale.write_text("x")

    assert sweep(str(path), "--out", str(out), "--workers", "2") == 0
    assert [starts(out, "base", seed) for seed in (0, 1, 2)] == [1, 2, 1]
    assert "--resume" in (out / "runs" / "base" / "seed_1.log").read_text().split(START_MARKER)[2]
    assert not stale.exists()
    for seed in (0, 1, 2):
        run_dir = out / "runs" / "base" / f"seed_{seed}"
        assert json.loads((run_dir / "summary.json").read_text())["total_steps"] == 3072
        assert_no_duplicate_points(run_dir)
        assert scalars(run_dir)["rollout/episode_return"][-1][0] <= 3072
    assert [e["status"] for e in manifest(out)["runs"]] == ["finished"] * 3


def test_a_failing_run_fails_the_sweep_while_the_others_finish_with_their_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    (tmp_path / "probe").mkdir()
    monkeypatch.setenv(PROBE_DIR_VARIABLE, str(tmp_path / "probe"))
    variants = {"probe": {"env.id": "tests.sweep_envs:ThreadProbe-v0"}, "crash": {"env.id": "tests.sweep_envs:CrashAfter-v0"}}
    path = write_sweep(tmp_path / "fail.yaml", seeds=[0], variants=variants, threads_per_run=2)
    out = tmp_path / "out"
    assert sweep(str(path), "--out", str(out), "--workers", "2") == 1
    entries = {e["arm"]: e for e in manifest(out)["runs"]}
    assert (entries["probe"]["status"], entries["crash"]["status"], entries["crash"]["exit_code"]) == ("finished", "failed", 1)
    assert "CrashAfter-v0: deliberate failure" in (out / "runs" / "crash" / "seed_0.log").read_text()
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "probe").iterdir()]
    assert record == {"torch_threads": 2, "omp": "2"}

    assert sweep(str(path), "--out", str(out)) == 1  # a failed run is not retried by default
    assert (starts(out, "probe", 0), starts(out, "crash", 0)) == (1, 1)
    assert sweep(str(path), "--out", str(out), "--retry-failed") == 1
    assert (starts(out, "probe", 0), starts(out, "crash", 0)) == (1, 2)


# ---------------------------------------------------------------------------------------------
# The command line: `rlopt sweep` and `rlopt report` as registered in rlopt.cli
# ---------------------------------------------------------------------------------------------


def test_cli_sweep_checks_env_ids_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI injects the agents' check and an env probe: a bad env id in one arm is exit 2, nothing written."""
    path = write_sweep(tmp_path / "envs.yaml", variants={"good": {"gamma": 0.9}, "bad": {"env.id": "NoSuchEnv-v0"}})
    out = tmp_path / "out"
    assert cli_main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arm bad: env.id" in err, err
    assert not out.exists()


def test_a_dry_run_read_by_head_stops_quietly(tmp_path: Path) -> None:
    """``rlopt sweep F --dry-run | head -1``: the reader leaves after one line; no traceback, status 141."""
    path = write_sweep(tmp_path / "pair.yaml", seeds=list(range(1000)), variants=PAIR)  # 2,000 lines: more than a pipe holds
    command = [sys.executable, "-m", "rlopt", "sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline().startswith(b"sweep ")
    process.stdout.close()  # what head does after its line
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and err == b""


def test_cli_sweep_dry_run_and_report_of_a_missing_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path / "pair.yaml", seeds=[0, 1], variants=PAIR)
    assert cli_main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    table = capsys.readouterr().out
    assert table.count("pending") == 4 and not (tmp_path / "out").exists()
    assert cli_main(["report", str(tmp_path / "out")]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
