"""Exceptions that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

import errno
import re
from typing import Any

LONG_WORD_CHARS = 200
"""A run of non-blank characters longer than this is cut in a message (a 100,000-character
optimizer name or a 400-digit integer would otherwise be echoed whole)."""
MESSAGE_CHARS = 2000
"""No message is longer than this, whatever it quotes."""
_LONG_WORD = re.compile(rf"\S{{{LONG_WORD_CHARS + 1},}}")


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long it was."""
    return shorten(repr(value), limit)


def shorten(text: str, limit: int = LONG_WORD_CHARS) -> str:
    """``text`` with every run of non-blank characters longer than ``limit`` cut to its head and
    tail and its length (``'xxxx…xx' (100002 characters)``), and the whole cut to :data:`MESSAGE_CHARS`."""

    def cut(match: re.Match[str]) -> str:
        word = match.group(0)
        if len(word) <= limit:
            return word
        keep = max(limit - 30, 8)
        return f"{word[: keep * 3 // 4]}…{word[-(keep // 4):]} ({len(word)} characters)"

    pattern = _LONG_WORD if limit == LONG_WORD_CHARS else re.compile(rf"\S{{{limit + 1},}}")
    out = pattern.sub(cut, text)
    return out if len(out) <= MESSAGE_CHARS else f"{out[: MESSAGE_CHARS - 30]}… ({len(out)} characters)"


class ConfigError(ValueError):
    """Bad user input: an unknown or ill-typed key, an out-of-range value, a missing file.

    The message is :func:`shorten`-ed: whatever value a message builder quotes, it stays readable."""

    def __init__(self, message: object = "") -> None:
        super().__init__(shorten(str(message)))


class NumericalFault(RuntimeError):
    """Too many consecutive non-finite losses, gradients or observations."""


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
"""What a full, read-only or failing file system reports (not a bad path: those are ConfigErrors)."""


def is_storage_error(err: OSError) -> bool:
    """Whether ``err`` says the file system cannot take the write (full disk, quota, read-only)."""
    return err.errno in _STORAGE_ERRNOS


class WriteFailed(Exception):
    """A run directory could not be written (e.g. a full disk) during training; every checkpoint
    is written atomically, so the ones written stay intact and the run can be resumed."""

    def __init__(self, err: OSError, run_dir: object) -> None:
        self.run_dir = run_dir
        where = err.filename or run_dir
        super().__init__(shorten(f"cannot write {where} ({err.strerror or err}); the checkpoints written so far "
                                 f"are intact: free space, then rlopt train --resume {run_dir}"))  # fmt: skip


class Interrupted(Exception):
    """SIGINT arrived during training; a checkpoint was written before this was raised."""

    def __init__(self, run_dir: object, env_steps: int) -> None:
        self.run_dir, self.env_steps = run_dir, env_steps
        where = f"; resume with: rlopt train --resume {run_dir}" if run_dir is not None else ""
        super().__init__(f"interrupted at {env_steps} env steps, checkpoint written{where}")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (messages stay one line)."""
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__
