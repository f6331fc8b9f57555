"""Which arms share a panel of ``curves.png`` and ``profile.png`` (report.json ``panels``).

A sweep file's ``panels:`` maps a panel name to a prefix (every arm whose name starts with it) or to
an explicit list of arms; arms in no panel go to a last panel ``other``. Without ``panels:``, a sweep
of more than :data:`AUTO_PANEL_ARMS` arms gets one panel per variant (the part of the arm name before
``__``) or else one per first ``_``-separated word of the names (``trpo_*`` / ``npg_*``), whichever
first splits the arms into 2 to n/2 groups; otherwise one panel (``panels`` null). The baseline is drawn
in every panel.
"""

from __future__ import annotations

from typing import Any, Callable

from rlopt.errors import ConfigError, short_repr
from rlopt.report.defaults import check_panels
from rlopt.sweep.messages import listed

AUTO_PANEL_ARMS = 10
"""Above this many arms and without ``panels:``, the arms are split into panels automatically."""
OTHER_PANEL = "other"
"""The panel of the arms that ``panels:`` does not name."""
AUTO_SEPARATORS = ("__", "_")
"""Tried in order to split arm names into automatic panels: the variant, then the first word."""


def _automatic(arms: list[str]) -> dict[str, list[str]] | None:
    for separator in AUTO_SEPARATORS:
        groups: dict[str, list[str]] = {}
        for arm in arms:
            groups.setdefault(arm.split(separator)[0], []).append(arm)
        if 2 <= len(groups) <= len(arms) // 2:
            return groups
    return None


def resolve_panels(value: Any, arms: list[str], baseline: str) -> dict[str, list[str]] | None:
    """Panel name -> its arms in report order (without the baseline, which every panel draws), or None for
    a single panel; an unknown arm or a prefix matching none is a ConfigError."""
    if value is None:
        if len(arms) <= AUTO_PANEL_ARMS:
            return None
        groups = _automatic(arms)
        return None if groups is None else {k: [a for a in v if a != baseline] or v for k, v in groups.items()}
    check_panels(value, lambda message: ConfigError(f"report: {message}"))
    panels: dict[str, list[str]] = {}
    for name, spec in value.items():
        if isinstance(spec, str):
            members = [a for a in arms if a.startswith(spec)]
            if not members:
                raise ConfigError(f"report: panels.{name}: prefix {short_repr(spec)} matches no arm; arms: {listed(arms)}")
        else:
            unknown = [a for a in spec if a not in arms]
            if unknown:
                raise ConfigError(f"report: panels.{name}: unknown arm {short_repr(unknown[0])}; arms: {listed(arms)}")
            members = [a for a in arms if a in spec]
        panels[str(name)] = [a for a in members if a != baseline] or members
    named = {a for members in panels.values() for a in members} | {baseline}
    rest = [a for a in arms if a not in named]
    if rest:
        panels[OTHER_PANEL] = rest
    return panels
