"""``rlopt sweep --backend ray`` on a local Ray (``num_cpus=2``): same layout, same results as local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_resume import scalars
from tests.test_sweep import PAIR, keep, manifest, sweep, write_sweep

pytest.importorskip("ray")

TIMING_KEYS = ("wall_seconds", "steps_per_second")


def layout(out: Path) -> set[str]:
    """Relative paths of OUT's files, with event-file names (host, pid, time) reduced to a kind."""
    names = set()
    for path in out.rglob("*"):
        if path.is_file() and path.name != ".lock":
            name = str(path.relative_to(out))
            names.add(name.split("events.out.tfevents.")[0] + ("events.hparams" if name.endswith(".hparams") else "events")
                      if "events.out.tfevents." in name else name)  # fmt: skip
    return names


def test_ray_backend_matches_the_local_backend(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "pair.yaml", seeds=[0], variants=PAIR, baseline="adam")
    assert sweep(str(path), "--out", str(tmp_path / "local"), "--workers", "2", validate=keep) == 0
    assert sweep(str(path), "--out", str(tmp_path / "ray"), "--backend", "ray", "--workers", "2", validate=keep) == 0
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
