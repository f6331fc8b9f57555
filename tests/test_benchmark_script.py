"""``scripts/benchmark_returns.py`` (issue 12, item 15): a run with overrides never overwrites the
committed ``benchmarks/returns.*`` (``--out`` is required, checked before any run starts), and the
table it writes records the overrides; the speed scripts' children (the SB3 comparison's floor, the lean stack) on tiny rows."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Iterator
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = [ROOT / "benchmarks" / "returns.json", ROOT / "benchmarks" / "returns.md"]


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    """The script as an importable module (its worker processes import ``run_one`` by name)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "scripts"))
        yield importlib.import_module("benchmark_returns")


def _one_line_exit_2(script: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize(
    "argv",
    [
        ["total_steps=512"],
        ["actor.optim.lr=1e-3", "--agents", "ppo", "--envs", "cartpole"],
        ["--out", "benchmarks/returns", "total_steps=512"],  # naming the committed table is no way around it
        ["--out", str(ROOT / "benchmarks" / "returns"), "total_steps=512"],
    ],
)
def test_overrides_without_out_exit_2_before_any_run(
    script: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    before = [p.read_bytes() for p in COMMITTED]
    monkeypatch.setattr(script, "run_one", lambda *args: pytest.fail("a run started"))
    message = _one_line_exit_2(script, argv, capsys)
    assert "--out" in message and "overrides" in message
    assert [p.read_bytes() for p in COMMITTED] == before


def test_without_overrides_the_committed_table_is_the_default_out(script: ModuleType) -> None:
    args = script.parse_args(["--agents", "ppo"])
    assert args.out == Path("benchmarks/returns") and args.overrides == []
    args = script.parse_args(["--out", "x/y", "actor.optim.lr=1e-3"])
    assert args.out == Path("x/y") and args.overrides == ["actor.optim.lr=1e-3"]


def test_a_bad_override_exits_2_before_any_run(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(script, "run_one", lambda *args: pytest.fail("a run started"))
    message = _one_line_exit_2(script, ["--agents", "ppo", "--out", str(tmp_path / "r"), "ppo.nope=1"], capsys)
    assert "ppo.nope" in message
    assert not list(tmp_path.iterdir())


def test_update_refuses_runs_made_with_other_overrides(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    out.with_suffix(".json").write_text(json.dumps([{"agent": "ppo", "env": "cartpole", "seed": 0, "overrides": []}]))
    message = _one_line_exit_2(script, ["--agents", "a2c", "--update", "--out", str(out), "seed=1", "gamma=0.9"], capsys)
    assert "--update" in message and "gamma=0.9" in message


def test_the_table_records_the_overrides(script: ModuleType) -> None:
    record = {"agent": "ppo", "env": "cartpole", "env_id": "CartPole-v1", "total_steps": 512, "eval_return_mean": 20.0,
              "wall_seconds": 1.0}  # fmt: skip
    plain = script.table([record], [])
    assert plain.splitlines()[0].startswith("| agent |")  # the committed table's form is unchanged
    lines = script.table([record], ["actor.optim.lr=1e-3", "total_steps=512"]).splitlines()
    assert lines[0] == "Overrides (every run): `actor.optim.lr=1e-3 total_steps=512`"
    assert lines[2].startswith("| agent |")


def test_a_tiny_run_with_overrides_writes_them_to_out(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny"
    overrides = ["total_steps=512", "eval.episodes=1"]
    script.main(["--agents", "ppo", "--envs", "cartpole", "--seeds", "0", "--workers", "1", "--out", str(out), *overrides])
    records = json.loads(out.with_suffix(".json").read_text())
    assert len(records) == 1 and records[0]["overrides"] == overrides and records[0]["total_steps"] == 512
    assert out.with_suffix(".md").read_text().splitlines()[0] == "Overrides (every run): `total_steps=512 eval.episodes=1`"


def test_seeds_per_process_stacks_a_presets_seeds_and_says_so(script: ModuleType, tmp_path: Path) -> None:
    """``--seeds-per-process 2`` on a tiny budget: both seeds trained in one stack, the records and
    the table say how they were run."""
    import subprocess
    import sys

    out = tmp_path / "stacked"
    argv = [sys.executable, str(ROOT / "scripts" / "benchmark_returns.py"), "--agents", "ppo", "--envs", "cartpole",
            "--seeds", "0", "1", "--seeds-per-process", "2", "--workers", "1", "--out", str(out),
            "total_steps=256", "eval.episodes=1", "rollout.n_steps=32"]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    records = json.loads(out.with_suffix(".json").read_text())
    assert [(r["seed"], r["seeds_per_process"], r["total_steps"]) for r in records] == [(0, 2, 256), (1, 2, 256)]
    markdown = out.with_suffix(".md").read_text()
    assert "Seeds stacked in one process" in markdown and "| seeds / process |" in markdown
    assert "| ppo | CartPole-v1 | 256 | 2 |" in markdown and markdown.rstrip().endswith("| 2 |")
    assert "seeds / process" not in script.table([{**records[0], "seeds_per_process": 1}])  # alone: the table as before
    subprocess.run([*argv, "--update"], check=True, capture_output=True, cwd=ROOT)  # the stacked runs replaced, not added
    assert [r["seed"] for r in json.loads(out.with_suffix(".json").read_text())] == [0, 1]


@pytest.mark.parametrize("value", ["0", "257"])
def test_a_bad_seeds_per_process_exits_2(script: ModuleType, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    message = _one_line_exit_2(script, ["--seeds-per-process", value], capsys)
    assert "--seeds-per-process must be in [1, 256]" in message


def test_the_sb3_comparisons_floor_child_runs_on_a_tiny_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """``scripts/bench_vs_sb3.py --child floor`` (its rows come from ``scripts/bench_rows.py``): the floor's
    work on a few updates, timed in two parts."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    bench = importlib.import_module("bench_vs_sb3")
    row = bench.Row(**{**bench.ROWS["a2c_cartpole"].__dict__, "total_steps": 80, "floor": {"grad_steps": 2, "grad_batch": 40}})
    out = bench.floor_child(row)
    assert out["floor_seconds"] == out["rollout_seconds"] + out["update_seconds"] > 0


@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("name", ["a2c_cartpole", "ppo_cartpole"])
def test_the_lean_stack_trains_and_logs_every_seed(name: str, level: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``scripts/bench_stacked_lean.py`` with logs (and per-seed streams) on a few updates: every seed's
    weights and its events, one per update, read back through TensorBoard's checksums."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    lean = importlib.import_module("bench_stacked_lean")
    row = lean.Row(**{**lean.ROWS[name].__dict__, "total_steps": 3 * lean.ROWS[name].num_envs * 32})
    lean.lean_child(row, 3, level, str(tmp_path))
    updates = lean.num_updates(row.total_steps, row.num_envs)
    steps_per_update = row.num_envs * int(row.rlopt["rollout"]["n_steps"])
    for seed in range(3):
        assert (tmp_path / f"seed_{seed}" / "final.pt").is_file()
        (events,) = (tmp_path / f"seed_{seed}").glob("events.out.tfevents.*")
        logged = [e.step for e in LegacyEventFileLoader(str(events)).Load() if e.summary.value]
        assert logged == [(u + 1) * steps_per_update for u in range(len(logged))] and 0 < len(logged) <= updates


@pytest.mark.parametrize("argv,message", [(["--ks", "1,65"], "--ks: every K must be in 1..64"),
                                          (["--reps", "21"], "--reps: must be in 1..20"),
                                          (["--rows", "ppo_pendulum"], "is not a CartPole row")])  # fmt: skip
def test_the_lean_stack_refuses_bad_counts(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    lean = importlib.import_module("bench_stacked_lean")
    with pytest.raises(SystemExit) as exit_info:
        lean.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
