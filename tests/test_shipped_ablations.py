"""Every shipped ablation regenerates its report byte for byte from its own folder (issue 18).

A shipped ablation (``scripts/ship_ablation.py``) holds the sweep file, the manifest, each run's
``summary.json`` and curve files and ``report/``. The test copies the inputs (not ``report/``) into a
fresh directory, runs ``rlopt report`` with the shipped report's bootstrap seed and compares the text
outputs. (The PNGs are left out: their bytes depend on the installed matplotlib and fonts.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlopt.cli import main

ABLATIONS = Path(__file__).resolve().parents[1] / "benchmarks" / "ablations"
COMPARED = ("report.json", "report.md", "scores.csv", "curves.csv")
"""The report's text outputs, compared byte for byte."""


def _folders() -> list[Path]:
    return sorted(p for p in ABLATIONS.iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: p.name)
def test_shipped_report_regenerates_byte_for_byte(folder: Path, tmp_path: Path, capsys) -> None:
    if not (folder / "manifest.json").is_file() or not (folder / "report" / "report.json").is_file():
        pytest.skip(f"{folder.name}: shipped before issue 18 without its runs and report/ folder; re-run it (scripts/ship_ablation.py)")
    copy = tmp_path / folder.name
    copy.mkdir()
    for name in ("sweep.yaml", "manifest.json", "tuning.json"):
        if (folder / name).is_file():
            shutil.copy2(folder / name, copy / name)
    for name in ("curves", "runs"):
        if (folder / name).is_dir():
            shutil.copytree(folder / name, copy / name)
    shipped = json.loads((folder / "report" / "report.json").read_text())
    assert main(["report", str(copy), "--seed", str(shipped["bootstrap"]["seed"])]) == 0
    for name in COMPARED:
        assert (copy / "report" / name).read_bytes() == (folder / "report" / name).read_bytes(), name
