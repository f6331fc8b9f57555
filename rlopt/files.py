"""Atomic file writes, torch-free: a reader sees the old file or the whole new one, never a torn one.

Bottom layer (standard library only), shared by checkpoints, the trainer's ``config.yaml`` and
``summary.json``, the report and the sweep files. The data goes to a hidden temporary file in the
same directory (``.<name>.<random>.tmp``), which is fsync'ed and renamed over its final name
(``os.replace`` is atomic on POSIX); then the directory is fsync'ed so the rename survives a
crash. If anything fails the temporary file is removed and the old file is left as it was.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

from rlopt.errors import ConfigError

__all__ = ["LOCK_FILE", "TEMP_SUFFIX", "RunDirLocked", "atomic_write_bytes", "atomic_write_text",
           "check_new_run_dir", "check_run_dir_unlocked", "lock_run_dir"]

LOCK_FILE = ".lock"
"""``RUN_DIR/.lock``: flock'ed by the process using the run directory; holds its pid."""

TEMP_SUFFIX = ".tmp"
"""Suffix of the temporary file of a write in progress (a leftover marks an interrupted write)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a shared run dir needs the usual 0644
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk: name the file (a write error names none)
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only a mode is at stake)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_new_run_dir(run_dir: Path, what: str, hint: str = "") -> None:
    """Refuse (one-line ConfigError starting with ``what``) a ``run_dir`` that holds anything but a
    lock file (a lock alone is what a process killed before its first write leaves), that is a
    file, or that cannot be created where it is asked for. Reads only; ``hint`` ends the
    message about a non-empty directory (what to do instead)."""
    run_dir = Path(run_dir)
    try:
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"{what}: {run_dir} is a file; give a new or empty directory")
        if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
            raise ConfigError(f"{what}: {run_dir} exists and is not empty; refusing to overwrite a run{hint}")
        ancestor = run_dir.absolute()
        while not ancestor.exists():
            ancestor = ancestor.parent
    except OSError as err:  # a name longer than the file system allows, a directory we may not list
        raise ConfigError(f"{what}: cannot use {run_dir} ({err.strerror or err})") from None
    if not ancestor.is_dir():
        raise ConfigError(f"{what}: {ancestor} is a file, so {run_dir} cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: {ancestor} is not writable, so {run_dir} cannot be created")


class RunDirLocked(Exception):
    """Another live process holds the run directory's lock (``pid``: what its lock file says)."""

    def __init__(self, run_dir: Path, pid: str) -> None:
        super().__init__(f"{run_dir} is in use by another process (pid {pid or 'unknown'})")
        self.run_dir, self.pid = run_dir, pid


def check_run_dir_unlocked(run_dir: Path) -> None:
    """Raise :class:`RunDirLocked` if a live process holds ``RUN_DIR/.lock``; writes nothing."""
    try:
        handle = open(Path(run_dir) / LOCK_FILE, encoding="utf-8")  # noqa: SIM115
    except OSError:  # no lock file (or none we can read): nobody to wait for
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirLocked(Path(run_dir), handle.read().strip()) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def lock_run_dir(run_dir: Path) -> IO[str]:
    """Take the exclusive, non-blocking ``flock`` on ``RUN_DIR/.lock`` and write our pid into it.

    The lock lives as long as the returned file stays open (close it to release); the kernel drops
    it when the process dies, so the file a killed process leaves behind never blocks anyone.
    Raises :class:`RunDirLocked` at once if another process holds it (two trainers in one run
    directory prune each other's checkpoint files and erase each other's TensorBoard points).
    """
    handle = open(Path(run_dir) / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (kept open: the lock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip()
        handle.close()
        raise RunDirLocked(Path(run_dir), pid) from None
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
