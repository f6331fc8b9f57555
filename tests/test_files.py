"""Atomic writes (rlopt.files): the whole new file or the old one, never a torn one or a leftover;
and the torch-free modules that use them (files, report) import no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlopt import files
from rlopt.files import TEMP_SUFFIX, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "step_000000000128.pt"
    atomic_write_bytes(target, b"old checkpoint")
    atomic_write_bytes(target, b"new checkpoint")
    assert target.read_bytes() == b"new checkpoint"

    def crash(src: str, dst: str) -> None:
        raise OSError("disk pulled out before the rename")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk pulled"):
        atomic_write_bytes(target, b"never visible")
    assert target.read_bytes() == b"new checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left behind


def test_temporary_file_is_hidden_beside_the_target_with_the_temp_suffix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prune_checkpoints recognises interrupted writes by this name: ".<name>.<random>.tmp".
    renamed: list[tuple[str, str]] = []
    real_replace = files.os.replace

    def record(src: str, dst: str) -> None:
        renamed.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", record)
    target = tmp_path / "sub" / "summary.json"
    atomic_write_bytes(target, b"{}")
    [(src, dst)] = renamed
    assert Path(dst) == target and Path(src).parent == target.parent
    assert Path(src).name.startswith(".summary.json.") and src.endswith(TEMP_SUFFIX)


def test_atomic_write_text_is_utf8_and_matches_write_text(tmp_path: Path) -> None:
    text = "agent: ppo\nnote: «σ ≤ ε²»\n"
    atomic_write_text(tmp_path / "config.yaml", text)
    (tmp_path / "plain.yaml").write_text(text, encoding="utf-8")
    assert (tmp_path / "config.yaml").read_bytes() == (tmp_path / "plain.yaml").read_bytes()
    assert (tmp_path / "config.yaml").read_bytes() == text.encode("utf-8")


@pytest.mark.parametrize("module", ["rlopt.files", "rlopt.report.build"])
def test_module_imports_without_torch(module: str) -> None:
    # A fresh interpreter: this test process has torch loaded already.
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
