"""``rlopt sweep --backend ray`` on a local Ray (``num_cpus=2``): same layout, same results as local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlopt.errors import ConfigError
from rlopt.sweep.ray_backend import LOCAL_START_ATTEMPTS, start_ray
from tests.test_resume import scalars
from tests.test_sweep import PAIR, keep, manifest, sweep, write_sweep

pytest.importorskip("ray", reason="the Ray backend's tests need ray: pip install -e '.[ray]'")

TIMING_KEYS = ("wall_seconds", "learn_seconds", "steps_per_second")


def layout(out: Path) -> set[str]:
    """Relative paths of OUT's files, with event-file names (host, pid, time) reduced to a kind."""
    names = set()
    for path in out.rglob("*"):
        if path.is_file() and path.name != ".lock":
            name = str(path.relative_to(out))
            names.add(name.split("events.out.tfevents.")[0] + ("events.hparams" if name.endswith(".hparams") else "events")
                      if "events.out.tfevents." in name else name)  # fmt: skip
    return names


class FlakyRay:
    """Stands in for ``ray``: ``init`` raises Ray's bare startup-timeout ``Exception`` ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures, self.inits, self.shutdowns = failures, 0, 0

    def init(self, **kwargs: object) -> None:
        self.inits += 1
        if self.inits <= self.failures:
            raise Exception("The current node timed out during startup.")

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_local_ray_that_times_out_at_startup_is_retried_then_named_in_one_line() -> None:
    flaky = FlakyRay(failures=LOCAL_START_ATTEMPTS - 1)
    start_ray(flaky, None, num_cpus=2)
    assert (flaky.inits, flaky.shutdowns) == (LOCAL_START_ATTEMPTS, LOCAL_START_ATTEMPTS - 1)
    with pytest.raises(ConfigError, match=rf"cannot start or reach a local Ray \({LOCAL_START_ATTEMPTS} attempts\)"):
        start_ray(FlakyRay(failures=LOCAL_START_ATTEMPTS), None, num_cpus=2)
    cluster = FlakyRay(failures=1)  # a cluster address is not retried: the error is about the address
    with pytest.raises(ConfigError, match="the Ray cluster at ray://nowhere:1"):
        start_ray(cluster, "ray://nowhere:1", num_cpus=2)
    assert cluster.inits == 1


@pytest.mark.parametrize("seeds, per_process", [([0], 1), ([0, 1], 2)])  # one run per task; a stack of 2 seeds per task
def test_ray_backend_matches_the_local_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: list[int],
                                               per_process: int) -> None:  # fmt: skip
    path = write_sweep(tmp_path / "pair.yaml", seeds=seeds, variants=PAIR, baseline="adam", seeds_per_process=per_process)
    assert sweep(str(path), "--out", str(tmp_path / "local"), "--workers", "2", validate=keep) == 0
    code = sweep(str(path), "--out", str(tmp_path / "ray"), "--backend", "ray", "--workers", "2", validate=keep)
    if code == 2 and "cannot start or reach a local Ray" in capsys.readouterr().err:
        pytest.skip("this machine could not start a local Ray (raylet startup timed out on every attempt)")
    assert code == 0
    assert layout(tmp_path / "ray") == layout(tmp_path / "local")
    local, remote = manifest(tmp_path / "local"), manifest(tmp_path / "ray")
    strip = ("wall_seconds",)
    assert [{k: v for k, v in e.items() if k not in strip} for e in remote["runs"]] == [
        {k: v for k, v in e.items() if k not in strip} for e in local["runs"]
    ]
    for entry in local["runs"]:
        summaries = [json.loads((tmp_path / backend / entry["run_dir"] / "summary.json").read_text())
                     for backend in ("local", "ray")]  # fmt: skip
        assert [{k: v for k, v in s.items() if k not in TIMING_KEYS} for s in summaries[1:]] == [
            {k: v for k, v in summaries[0].items() if k not in TIMING_KEYS}
        ]
        assert scalars(tmp_path / "ray" / entry["run_dir"]) == scalars(tmp_path / "local" / entry["run_dir"])
