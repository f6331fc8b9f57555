"""Issue 21, the sweep and report half of the bad-input campaign: what a user types into ``rlopt sweep``
and ``rlopt report`` exits 2 with one line and writes nothing, at once; counts have documented bounds.

The table runs in-process through ``rlopt.cli.main`` (the contract of tests/test_bad_input.py: exit 2,
one ``rlopt: error:`` line, nothing on stdout, the directory tree unchanged). The Ray address cases
capture file descriptors (Ray's own log goes to fd 2); two cases run as real processes with a timeout,
where a hang or a library warning would show.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rlopt.config import config_to_dict, config_to_yaml, load_config
from rlopt.report import MAX_REPS
from rlopt.sweep.command import MAX_WORKERS
from rlopt.sweep.rendering import config_hash, config_texts, config_trees
from rlopt.sweep.spec import MAX_ARM_NAME, MAX_ARMS, MAX_RUNS, MAX_SEEDS, load_sweep, set_dotted
from tests.test_bad_input import BadInput, _run_bad, _tree
from tests.test_sweep import ROOT, keep, sweep, write_sweep

PROCESS_TIMEOUT_SECONDS = 180
"""A real ``rlopt`` process (importing torch on a loaded machine takes seconds): past this it hangs."""


def _yaml(**fields: Any) -> bytes:
    return yaml.safe_dump({"base": "a2c_cartpole", **fields}, sort_keys=False).encode()


def _grid(keys: int, values: int) -> dict[str, list[float]]:
    """``keys`` grid keys with ``values`` values each: ``values ** keys`` arms."""
    names = ["gamma", "gae_lambda", "actor.optim.lr", "critic.optim.lr", "actor.max_grad_norm", "critic.max_grad_norm"]
    return {name: [0.5 + i / 10**6 for i in range(values)] for name in names[:keys]}


def _manifest(name: str) -> bytes:
    """A sweep directory's manifest.json, as ``rlopt sweep`` writes it (no runs yet)."""
    return json.dumps({"format_version": 1, "name": name, "rlopt_version": "0.1.0", "metric": "eval_return_mean",
                       "curve": "rollout/episode_return", "baseline": None, "arms": {"base": {"overrides": {}}},
                       "runs": []}).encode()  # fmt: skip


def _sweep(name: str, *flags: str) -> tuple[str, ...]:
    return ("sweep", f"{{tmp}}/{name}.yaml", "--out", "{tmp}/out", *flags)


BIG = "9" * 400
ONE_SEED = {"one.yaml": _yaml(name="one")}
CASES = [
    # seeds, arms and runs: bounded before anything is expanded
    BadInput("seeds count 10**9", _sweep("s"), "seeds.count must be <= 1000",
             {"s.yaml": _yaml(seeds={"start": 0, "count": 10**9})}),
    BadInput("seeds count 10**9 dry run", _sweep("s", "--dry-run"), "seeds.count must be <= 1000",
             {"s.yaml": _yaml(seeds={"start": 0, "count": 10**9})}),
    BadInput("seeds count of 400 digits", _sweep("s"), "(400 characters)", {"s.yaml": _yaml(seeds={"start": 0, "count": int(BIG)})}),
    BadInput("seeds list too long", _sweep("s"), f"at most {MAX_SEEDS} (seeds per sweep)",
             {"s.yaml": _yaml(seeds=list(range(MAX_SEEDS + 1)))}),
    BadInput("seeds beyond the largest seed", _sweep("s"), "seeds.start + seeds.count - 1 must be <= 2**63 - 1",
             {"s.yaml": _yaml(seeds={"start": 2**63 - 1, "count": 2})}),
    BadInput("seed of 400 digits in a list", _sweep("s"), "is not an integer in [0, 2**63 - 1]",
             {"s.yaml": _yaml(seeds=[0, int(BIG)])}),
    BadInput("grid of 10**4 arms", _sweep("g"), f"make 10,000 arms; at most {MAX_ARMS:,} arms",
             {"g.yaml": _yaml(grid=_grid(4, 10))}),
    BadInput("grid of 10**6 arms dry run", _sweep("g", "--dry-run"), "make 1,000,000 arms",
             {"g.yaml": _yaml(grid=_grid(6, 10))}),
    BadInput("variants x grid", _sweep("g"), "make 1,010 arms",
             {"g.yaml": _yaml(variants={"a": {"critic.optim.lr": 0.01}, "b": {}}, grid=_grid(1, 505))}),
    BadInput("arms x seeds above the runs bound", _sweep("r", "--dry-run"), f"make 10,200 runs; at most {MAX_RUNS:,} runs",
             {"r.yaml": _yaml(grid=_grid(1, 200), seeds={"start": 0, "count": 51})}),
    BadInput("baseline of 100,000 characters among 20 arms", _sweep("b"), "(100002 characters) is not an arm; arms: "
             "gamma=0.5, gamma=0.500001, gamma=0.500002, gamma=0.500003, ", {"b.yaml": _yaml(grid=_grid(1, 20), baseline="b" * 10**5)}),
    # metric: a number a run's summary.json holds
    BadInput("metric no summary holds", _sweep("m"), "metric: 'eval_return' is not a number of a run's summary.json",
             {"m.yaml": _yaml(metric="eval_return")}),
    BadInput("metric a text key", _sweep("m", "--dry-run"), "metric: 'env_id' is not a number", {"m.yaml": _yaml(metric="env_id")}),
    # names and flags
    BadInput("sweep name too long", _sweep("n"), f"of at most {MAX_ARM_NAME} characters", {"n.yaml": _yaml(name="n" * 300)}),
    BadInput("empty --out", ("sweep", "{tmp}/one.yaml", "--out", ""), '--out: "" is no directory', ONE_SEED),
    BadInput("--workers 0", _sweep("one", "--workers", "0"), f"--workers must be in [1, {MAX_WORKERS}]", ONE_SEED),
    BadInput("--workers above the bound", _sweep("one", "--workers", str(MAX_WORKERS + 1)), "--workers must be in", ONE_SEED),
    BadInput("--workers of 400 digits", _sweep("one", "--workers", BIG), "(400 characters)", ONE_SEED),
    BadInput("--address without ray", _sweep("one", "--address", "auto"), "--address is for --backend ray", ONE_SEED),
    BadInput("empty --address", _sweep("one", "--backend", "ray", "--address", ""), '--address: "" is no address', ONE_SEED),
    BadInput("abbreviated flag", _sweep("one", "--work", "2"), "unrecognized arguments: --work", ONE_SEED),
    BadInput("--out of 300 characters", ("sweep", "{tmp}/one.yaml", "--out", "{tmp}/" + "x" * 300),
             "characters) cannot be used (File name too long)", ONE_SEED),
    BadInput("--out of 300 characters dry run", ("sweep", "{tmp}/one.yaml", "--dry-run", "--out", "x" * 300),
             "--out: xxxxxxxxxxxxxxxxxxxxxx…xxxxxxx (300 characters) cannot be used", ONE_SEED),
    # another sweep's directory: refused, naming both (the same sweep resumes: tests/test_sweep.py)
    BadInput("another sweep's OUT", _sweep("one"), "--out {tmp}/out holds sweep other, not sweep one",
             {**ONE_SEED, "out/manifest.json": _manifest("other")}),
    BadInput("another sweep's OUT dry run", _sweep("one", "--dry-run"), "holds sweep other, not sweep one",
             {**ONE_SEED, "out/manifest.json": _manifest("other")}),
    # rlopt report
    BadInput("report --seed -1", ("report", "{tmp}/out", "--seed", "-1"), "--seed must be in [0, 2**63 - 1], got -1",
             {"out/manifest.json": _manifest("one")}),
    BadInput("report --seed of 400 digits", ("report", "{tmp}/out", "--seed", BIG), "(400 characters)",
             {"out/manifest.json": _manifest("one")}),
    BadInput("report --reps 0", ("report", "{tmp}/out", "--reps", "0"), f"--reps must be in [1, {MAX_REPS}]",
             {"out/manifest.json": _manifest("one")}),
    BadInput("report --reps 10**9", ("report", "{tmp}/out", "--reps", "1000000000"), "--reps must be in",
             {"out/manifest.json": _manifest("one")}),
    BadInput("report dir is a file", ("report", "{tmp}/out"), "report: {tmp}/out/report is a file",
             {"out/manifest.json": _manifest("one"), "out/report": b"precious"}),
    BadInput("report OUT of 300 characters", ("report", "x" * 300), "report: OUT: xxxxxxxxxxxxxxxxxxxxxx…xxxxxxx (300 characters)"),
    BadInput("report --baseline of 100,000 characters", ("report", "{tmp}/out", "--baseline", "b" * 10**5),
             "(100002 characters); arms: base", {"out/manifest.json": _manifest("one")}),
    BadInput("report abbreviated flag", ("report", "{tmp}/out", "--rep", "3"), "unrecognized arguments: --rep",
             {"out/manifest.json": _manifest("one")}),
]  # fmt: skip


def _write(tmp_path: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    return _tree(tmp_path)


def test_the_case_names_are_distinct() -> None:
    assert len({case.name for case in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_sweep_and_report_bad_input_exits_2_in_one_line_and_writes_nothing(
    case: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the default OUT, sweeps/<name>, would appear
    before = _write(tmp_path, case.files)
    line = _run_bad(case.argv, tmp_path, capsys)
    assert case.expect.replace("{tmp}", str(tmp_path)) in line
    assert _tree(tmp_path) == before


# ------------------------------------------------------------------------------------- Ray addresses


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed once the with block ends


RAY_ADDRESSES = [
    ("closed port", lambda: f"127.0.0.1:{_closed_port()}", "cannot reach the Ray cluster at 127.0.0.1:"),
    ("closed port, ray:// client", lambda: f"ray://127.0.0.1:{_closed_port()}", "cannot reach the Ray cluster at ray://"),
    # TEST-NET-3: no route (the TCP probe times out), or a proxy that accepts it but is no Ray (ray.init gives up)
    ("unroutable", lambda: "203.0.113.1:6379", "reach the Ray cluster at 203.0.113.1:6379"),
    ("no port", lambda: "headnode", "--address headnode: give HOST:PORT, ray://HOST:PORT or auto"),
]


@pytest.mark.parametrize(("address", "expect"), [case[1:] for case in RAY_ADDRESSES], ids=[c[0] for c in RAY_ADDRESSES])
def test_an_unreachable_ray_address_is_one_line_before_anything_is_written(
    address: Any, expect: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A TCP probe (5 s at most) before ``ray.init``, which retries a dead address for minutes and logs
    to fd 2; Ray is contacted before OUT is created."""
    pytest.importorskip("ray", reason="the --backend ray refusals need ray: pip install -e '.[ray]'")
    before = _write(tmp_path, ONE_SEED)
    line = _run_bad(_sweep("one", "--backend", "ray", "--address", address()), tmp_path, capfd)
    assert expect in line
    assert _tree(tmp_path) == before


# ------------------------------------------------------------------------------------- real processes

PROCESS_CASES = [
    BadInput("grid of 10**6 arms dry run", _sweep("g", "--dry-run"), "make 1,000,000 arms", {"g.yaml": _yaml(grid=_grid(6, 10))}),
    BadInput("report --reps 10**9", ("report", "{tmp}/out", "--reps", "1000000000"), "--reps must be in",
             {"out/manifest.json": _manifest("one")}),
]  # fmt: skip


@pytest.mark.parametrize("case", PROCESS_CASES, ids=lambda case: case.name)
def test_a_real_process_refuses_at_once_in_one_line_without_warnings(case: BadInput, tmp_path: Path) -> None:
    before = _write(tmp_path, case.files)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    done = subprocess.run([sys.executable, "-m", "rlopt", *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=PROCESS_TIMEOUT_SECONDS)  # fmt: skip
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith("rlopt: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert case.expect in done.stderr and "Warning" not in done.stderr
    assert _tree(tmp_path) == before


# ------------------------------------------------------------------------------------- documented successes


def test_the_readme_states_each_bound_with_its_message() -> None:
    section = (ROOT / "README.md").read_text().split("### Sweep and report limits")[1].split("\n#")[0]
    for message in (f"seeds.count must be <= {MAX_SEEDS} (seeds per sweep)", f"at most {MAX_ARMS:,} arms per sweep",
                    f"at most {MAX_RUNS:,} runs per sweep", f"--workers must be in [1, {MAX_WORKERS}]",
                    f"--reps must be in [1, {MAX_REPS}]", "--seed must be in [0, 2**63 - 1]"):  # fmt: skip
        assert message in section, message


def test_each_arm_is_validated_once_whatever_its_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The runs of an arm differ only in ``seed``: one validation per arm, and the dry run lists every run."""
    validated: list[int] = []

    def counting(cfg: Any) -> Any:
        validated.append(cfg.seed)
        return cfg

    path = write_sweep(tmp_path / "many.yaml", seeds={"start": 0, "count": MAX_SEEDS}, grid={"gamma": [0.9, 0.99]})
    assert sweep(str(path), "--out", str(tmp_path / "out"), "--dry-run", validate=counting) == 0
    assert validated == [0, 0]
    assert capsys.readouterr().out.count("pending") == 2 * MAX_SEEDS
    assert not (tmp_path / "out").exists()


def test_validating_once_per_arm_builds_the_configs_of_validating_every_run(tmp_path: Path) -> None:
    """Each run's config, hash and YAML are what building and validating that run alone gives; an arm
    that interpolates (here ``${seed}``) is built at every seed."""
    variants = {"sgd": {"actor.optim": {"name": "sgd", "lr": 0.1}}, "follows_seed": {"env.num_envs": "${seed}"}}
    path = write_sweep(tmp_path / "s.yaml", seeds=[1, 2, 5], variants=variants, grid={"gamma": [0.9, 0.99]})
    loaded = load_sweep(path, keep)
    base = yaml.safe_load((ROOT / "configs" / "a2c_cartpole.yaml").read_text())
    for run in loaded.runs:
        tree = json.loads(json.dumps(base))
        for key, value in run.overrides.items():
            set_dotted(tree, key, value)
        alone = load_config(None, values={**tree, "threads": 1})
        assert run.config == alone and run.config_hash == config_hash(alone)
    assert config_texts(loaded.runs) == [config_to_yaml(run.config) for run in loaded.runs]  # rendered once per arm
    assert config_trees(loaded.runs) == [config_to_dict(run.config) for run in loaded.runs]
    assert [run.config.env.num_envs for run in loaded.runs if run.arm.startswith("follows_seed")] == [1, 2, 5] * 2
    assert config_to_dict(loaded.runs[0].config)["seed"] == 1
