"""Values a user typed, as one-line messages show them: a long one cut to its two ends, a long list of
names to its first few, a path the OS cannot look up refused (a leaf: imports nothing of rlopt but
its errors)."""

from __future__ import annotations

import errno
import os
from typing import Any

from rlopt.errors import ConfigError

SHOWN_ENDS = 24
"""A value typed longer than twice this is shown by its two ends in messages (a 400-digit count or a
300-character path stays one short line)."""
SHOWN_NAMES = 10
"""Arms a message lists before it says how many more there are."""


def shown(value: Any) -> str:
    """``value`` for a one-line message: a long number or string is cut (``999…999 (400 digits)``)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= SHOWN_ENDS * 2:
        return text
    what = "digits" if text.lstrip("-").isdigit() else "characters"
    return f"{text[:SHOWN_ENDS]}…{text[-SHOWN_ENDS:]} ({len(text)} {what})"


def listed(names: list[str], limit: int = SHOWN_NAMES) -> str:
    """The first ``limit`` of ``names``, comma-separated, then how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown(name) for name in names[:limit]) + more


def check_path(path: str, what: str) -> None:
    """A path typed by the user that the OS cannot even look up (a name over 255 bytes, a symlink
    loop): a one-line ConfigError naming ``what``. A missing path passes (it is checked where used)."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise ConfigError(f"{what}: {shown(path)} cannot be used ({err.strerror or type(err).__name__})") from None
