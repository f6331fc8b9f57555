"""``OUT/manifest.json``, the lock on OUT, and what each run needs next (skip, resume, start).

The manifest is written only by the sweep driver, atomically. Whether a run is finished is read
from its run directory (``summary.json``), so a driver killed at any moment loses nothing: the
next invocation skips finished runs, resumes interrupted ones from their last complete
checkpoint and restarts those killed before their first checkpoint.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import rlopt
from rlopt.checkpoint import list_checkpoints
from rlopt.config import config_to_dict, load_config
from rlopt.files import atomic_write_bytes
from rlopt.report.defaults import REPORT_KEYS, report_settings
from rlopt.errors import ConfigError, shorten
from rlopt.sweep.messages import SHOWN_CHARS
from rlopt.sweep.rendering import config_hash, config_texts
from rlopt.sweep.spec import RunSpec, Sweep, format_value
from rlopt.run_files import CONFIG_FILE, SUMMARY_FILE

MANIFEST_FILE = "manifest.json"
SWEEP_FILE = "sweep.yaml"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
STATUSES = ("pending", "running", "finished", "failed")

# What a run needs next.
FINISHED = "finished"
"""summary.json present: skipped."""
FAILED = "failed"
"""Failed before and not retried (``--retry-failed`` restarts it)."""
RESUME = "resume"
"""Interrupted with a complete checkpoint: ``rlopt train --resume``."""
START = "start"
"""Never run, killed before its first checkpoint, or retried: a fresh run directory."""


@dataclass(frozen=True)
class PlannedRun:
    """A run and the action it needs."""

    spec: RunSpec
    action: str


class SweepLock:
    """An exclusive, non-blocking ``flock`` on ``OUT/.lock`` holding the driver's pid."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> "SweepLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(
                    f"--out {self.path.parent} is in use by another rlopt sweep (pid {holder}); "
                    "wait for it or use another --out"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temp file + os.replace)."""
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of a sweep directory, or None if there is none yet."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and has no {MANIFEST_FILE}: not a sweep directory")
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not a readable sweep manifest ({type(err).__name__})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ConfigError(f"{path}: manifest format {version!r}; this rlopt reads format {FORMAT_VERSION}")
    return manifest


def manifest_entries(manifest: dict[str, Any] | None) -> dict[tuple[str, int], dict[str, Any]]:
    """Run entries of a manifest keyed by (arm, seed)."""
    if manifest is None:
        return {}
    return {(entry["arm"], int(entry["seed"])): entry for entry in manifest.get("runs", [])}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def first_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``key: old -> new`` for the first dotted key whose value differs."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    for key in [*new_flat, *(k for k in old_flat if k not in new_flat)]:
        if old_flat.get(key, "<unset>") != new_flat.get(key, "<unset>"):
            return f"{key}: {format_value(old_flat.get(key, '<unset>'))} -> {format_value(new_flat.get(key, '<unset>'))}"
    return "config differs"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def check_same_sweep(manifest: dict[str, Any] | None, sweep: Sweep, out: Path) -> None:
    """Refuse OUT when its manifest is another sweep's (its runs would be orphaned, its manifest replaced)."""
    previous = manifest.get("name") if manifest is not None else sweep.name
    if previous != sweep.name:
        raise ConfigError(
            f"--out {out} holds sweep {shorten(format_value(previous), SHOWN_CHARS)}, not sweep {sweep.name}: use another --out "
            f"(only a sweep named {shorten(format_value(previous), SHOWN_CHARS)} resumes or extends it)"
        )


def plan_runs(sweep: Sweep, out: Path, manifest: dict[str, Any] | None, retry_failed: bool) -> list[PlannedRun]:
    """What each run needs; another sweep's OUT, or a run whose existing config differs from the sweep's, is refused."""
    check_same_sweep(manifest, sweep, out)
    entries = manifest_entries(manifest)
    planned = []
    texts: list[str] | None = None  # each run's config as YAML, made when a run directory exists
    for index, spec in enumerate(sweep.runs):
        entry = entries.get((spec.arm, spec.seed))
        run_dir = out / spec.run_dir
        if (run_dir / CONFIG_FILE).is_file():  # the config the existing run was trained with
            texts = texts if texts is not None else config_texts(sweep.runs)
            if _read_text(run_dir / CONFIG_FILE) != texts[index]:  # the same text is the same config; else load (~0.5 s)
                previous = load_config(run_dir / CONFIG_FILE)
                if config_hash(previous) != spec.config_hash:
                    changed = first_difference(config_to_dict(previous), config_to_dict(spec.config))
                    raise ConfigError(
                        f"sweep {sweep.name}: run {spec.label} already exists in {out} with another config "
                        f"({changed}); use another --out to sweep a changed config"
                    )
        summary = (run_dir / SUMMARY_FILE).is_file()
        failed = entry is not None and entry.get("status") == "failed" or summary and summary_error(run_dir) is not None
        if summary and not failed:
            action = FINISHED
        elif failed and not retry_failed:
            action = FAILED
        elif list_checkpoints(run_dir) and not failed:
            action = RESUME
        else:
            action = START
        planned.append(PlannedRun(spec, action))
    return planned


def summary_error(run_dir: Path) -> str | None:
    """The ``error`` of a run's ``summary.json`` (a seed its stack went on without; an unreadable
    summary is one too), else None."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable summary.json"
    return summary.get("error") if isinstance(summary, dict) else "unreadable summary.json"


def initial_status(action: str) -> str:
    """The manifest status of a planned run before the pool starts."""
    return {FINISHED: "finished", FAILED: "failed"}.get(action, "pending")


class Manifest:
    """The driver's copy of ``OUT/manifest.json``; every change is written atomically."""

    def __init__(self, sweep: Sweep, out: Path, planned: list[PlannedRun], previous: dict[str, Any] | None) -> None:
        self.out = out
        old = manifest_entries(previous)
        self.data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "name": sweep.name,
            "rlopt_version": rlopt.__version__,
            "metric": sweep.metric,
            "curve": sweep.curve,
            **dict(zip(REPORT_KEYS, report_settings(sweep.raw, ConfigError))),  # metric_mode, threshold
            "baseline": sweep.baseline,
            "arms": {arm.name: {"overrides": arm.overrides} for arm in sweep.arms},
            "runs": [],
        }
        self.index: dict[tuple[str, int], dict[str, Any]] = {}
        for run in planned:
            before = old.get((run.spec.arm, run.spec.seed), {})
            entry = {
                "arm": run.spec.arm,
                "seed": run.spec.seed,
                "run_dir": run.spec.run_dir.as_posix(),
                "overrides": run.spec.overrides,
                "config_hash": run.spec.config_hash,
                "status": initial_status(run.action),
                "exit_code": before.get("exit_code") if run.action in (FINISHED, FAILED) else None,
                "wall_seconds": before.get("wall_seconds") if run.action in (FINISHED, FAILED) else None,
                "stack": before.get("stack") if run.action != START else None,
            }
            self.data["runs"].append(entry)
            self.index[(run.spec.arm, run.spec.seed)] = entry

    def update(self, spec: RunSpec, status: str, exit_code: int | None = None, wall_seconds: float | None = None,
               write: bool = True) -> None:  # fmt: skip
        """Set a run's status (and result) and write the manifest (``write=False``: the caller will)."""
        entry = self.index[(spec.arm, spec.seed)]
        entry.update(status=status, exit_code=exit_code,
                     wall_seconds=None if wall_seconds is None else round(wall_seconds, 3))  # fmt: skip
        if write:
            self.write()

    def set_stack(self, spec: RunSpec, seeds: list[int] | None) -> None:
        """Record the seeds a run is trained with in one process (None: alone); a resume reads it."""
        self.index[(spec.arm, spec.seed)]["stack"] = seeds

    def write(self) -> None:
        write_json(self.out / MANIFEST_FILE, self.data)

    def statuses(self) -> list[str]:
        return [entry["status"] for entry in self.data["runs"]]


def write_sweep_file(sweep: Sweep, out: Path) -> None:
    """``OUT/sweep.yaml``: the sweep file as parsed, plus the rlopt version."""
    frozen = {**sweep.raw, "rlopt_version": rlopt.__version__}
    atomic_write_bytes(out / SWEEP_FILE, yaml.safe_dump(frozen, sort_keys=False).encode("utf-8"))
