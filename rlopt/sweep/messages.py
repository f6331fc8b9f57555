"""Names and paths a user typed, as one-line messages show them: a long list of names cut to its
first few, each name and path cut to :data:`SHOWN_CHARS` (:func:`rlopt.errors.shorten`), a path the
OS cannot look up refused. A leaf: imports nothing of rlopt but its errors."""

from __future__ import annotations

import errno
import json
import os
from typing import Any

from rlopt.errors import ConfigError, shorten

SHOWN_CHARS = 60
"""A name or path longer than this is shown by its two ends and its length in a message."""
SHOWN_NAMES = 10
"""Arms a message lists before it says how many more there are."""


def listed(names: list[str], limit: int = SHOWN_NAMES) -> str:
    """The first ``limit`` of ``names``, comma-separated, then how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shorten(name, SHOWN_CHARS) for name in names[:limit]) + more


def check_path(path: str, what: str) -> None:
    """A path typed by the user that the OS cannot even look up (a name over 255 bytes, a symlink
    loop): a one-line ConfigError naming ``what``. A missing path passes (it is checked where used)."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR):
            reason = err.strerror or type(err).__name__
            raise ConfigError(f"{what}: {shorten(path, SHOWN_CHARS)} cannot be used ({reason})") from None


def format_value(value: Any) -> str:
    """A value as it reads in YAML (``null``, ``true``, ``0.5``, ``{"name":"sgd"}``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
