"""Table exports of a report dict: ``scores.csv`` (one row per planned run) and ``curves.csv`` (each
arm's IQM learning curve with its band), for spreadsheets and scripts. Pure text, no files."""

from __future__ import annotations

import csv
import io
from typing import Any

SCORE_COLUMNS = ("arm", "seed", "run_dir", "score", "status", "steps_to_threshold", "auc", "eval_steps_to_threshold",
                 "eval_auc")
"""``scores.csv``'s header: the keys of report.json's ``arms.<arm>.runs`` entries, with the arm first."""

CURVE_COLUMNS = ("arm", "tag", "step", "iqm", "ci_low", "ci_high")
"""``curves.csv``'s header: report.json's ``arms.<arm>.curve`` (tag: the sweep's ``curve``) and ``eval_curve``
(tag: ``eval_tag``), one row per grid point."""


def _cell(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _table(header: tuple[str, ...], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def scores_csv(report: dict[str, Any]) -> str:
    """One row per planned run: arm, seed, run_dir, score (empty unless finished), status, and the
    run's steps to the threshold and normalised AUC, of its training and evaluation curves (empty when not computed)."""
    rows = [[arm] + [run.get(key) for key in SCORE_COLUMNS[1:]]
            for arm, entry in report["arms"].items() for run in entry["runs"]]
    return _table(SCORE_COLUMNS, rows)


def curves_csv(report: dict[str, Any], tag: str | None = None) -> str:
    """One row per arm, curve and grid step: the IQM learning curve (``tag``) and the IQM evaluation curve
    (report.json's ``eval_tag``), each with its bootstrap band."""
    rows = []
    for arm, entry in report["arms"].items():
        for name, curve in ((tag, entry["curve"]), (report.get("eval_tag"), entry.get("eval_curve"))):
            if curve:
                rows += [[arm, name, *point] for point in zip(curve["steps"], curve["iqm"], curve["ci_low"], curve["ci_high"])]
    return _table(CURVE_COLUMNS, rows)
