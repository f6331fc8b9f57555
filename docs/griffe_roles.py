"""Griffe extension for the API reference: the docstrings' Sphinx roles as plain code.

rlopt's docstrings cross-reference with Sphinx roles (``:class:`Metric```, ``:func:`~rlopt.x.f```,
``:mod:`.solvers```); Markdown has no such syntax, so the role would be printed as it is. This keeps the
name the role shows (the last part after ``~``, the target without a leading ``.``) in backticks.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`(~?)\.?([^`]+)`")


def _shown(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def strip_roles(text: str) -> str:
    """``text`` with every Sphinx cross-reference role replaced by the code span it displays."""
    return _ROLE.sub(_shown, text)


class SphinxRoles(griffe.Extension):
    """Rewrite each docstring once it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:  # type: ignore[override]
        if obj.docstring is not None:
            obj.docstring.value = strip_roles(obj.docstring.value)
