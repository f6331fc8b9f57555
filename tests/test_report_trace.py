"""Traceability: a tiny real sweep writes one compact curve file per finished run, and ``rlopt report``
regenerates report.json byte-for-byte from the sweep folder after every event file is deleted; the
scores.csv / curves.csv exports follow report.json."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from rlopt.curves import event_files, read_scalar
from rlopt.report.build import REPORT_DIR, build_report
from rlopt.report.curve_file import curve_file, read_curve_csv
from tests.test_sweep import PAIR, sweep, write_sweep

TAG = "rollout/episode_return"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two arms x two seeds of 512 steps, with a threshold and metric_mode in the sweep file."""
    folder = tmp_path_factory.mktemp("trace")
    path = write_sweep(folder / "trace.yaml", seeds=[0, 1], variants=PAIR, baseline="adam", threshold=15,
                       metric_mode="max")
    assert sweep(str(path), "--out", str(folder / "out"), "--workers", "2") == 0
    return folder / "out"


def test_sweep_writes_a_curve_file_per_run_and_records_mode_and_threshold(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["metric_mode"], manifest["threshold"]) == ("max", 15.0)
    for run in manifest["runs"]:
        stored = read_curve_csv(out / curve_file(run["arm"], run["seed"]), TAG)
        logged = read_scalar(out / run["run_dir"], TAG)
        assert stored is not None and len(stored) > 2
        assert stored.steps.tolist() == logged.steps.tolist() and stored.values.tolist() == logged.values.tolist()
    assert read_curve_csv(out / curve_file("adam", 0), "time/sps") is None  # another tag: not this file


def test_report_regenerates_byte_for_byte_without_event_files(out: Path) -> None:
    first = build_report(out, reps=300, curve_reps=100, seed=2)
    before = {name: (out / REPORT_DIR / name).read_bytes() for name in ("report.json", "scores.csv", "curves.csv")}
    assert first["threshold"] == 15.0 and first["arms"]["sgd"]["auc"]["iqm"] is not None
    deleted = [path for run_dir in (out / "runs").glob("*/seed_*") if run_dir.is_dir() for path in event_files(run_dir)]
    assert deleted
    for path in deleted:
        path.unlink()
    build_report(out, reps=300, curve_reps=100, seed=2)
    for name, data in before.items():
        assert (out / REPORT_DIR / name).read_bytes() == data, name
    # Without curve files either, the curves are gone: the same report could not be regenerated.
    for path in (out / "curves").rglob("*.csv"):
        path.rename(path.with_suffix(".bak"))
    try:
        assert build_report(out, reps=300, curve_reps=100, seed=2)["arms"]["adam"]["curve"]["steps"] == []
    finally:
        for path in (out / "curves").rglob("*.bak"):
            path.rename(path.with_suffix(".csv"))


def test_scores_csv_lists_every_run_of_report_json(out: Path) -> None:
    report = build_report(out, reps=200, curve_reps=50, seed=0)
    rows = list(csv.DictReader(io.StringIO((out / REPORT_DIR / "scores.csv").read_text())))
    expected = [(arm, str(r["seed"]), r["run_dir"], repr(r["score"]), r["status"])
                for arm, entry in report["arms"].items() for r in entry["runs"]]
    assert [(r["arm"], r["seed"], r["run_dir"], r["score"], r["status"]) for r in rows] == expected
    assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
    curves = list(csv.DictReader(io.StringIO((out / REPORT_DIR / "curves.csv").read_text())))
    assert [float(r["iqm"]) for r in curves if r["arm"] == "adam"] == pytest.approx(report["arms"]["adam"]["curve"]["iqm"])
