"""Atomic file writes, torch-free: a reader sees the old file or the whole new one, never a torn one.

Bottom layer (standard library only), shared by checkpoints, the trainer's ``config.yaml`` and
``summary.json``, the report and the sweep files. The data goes to a hidden temporary file in the
same directory (``.<name>.<random>.tmp``), which is fsync'ed and renamed over its final name
(``os.replace`` is atomic on POSIX); then the directory is fsync'ed so the rename survives a
crash. If anything fails the temporary file is removed and the old file is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["TEMP_SUFFIX", "atomic_write_bytes", "atomic_write_text"]

TEMP_SUFFIX = ".tmp"
"""Suffix of the temporary file of a write in progress (a leftover marks an interrupted write)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


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
