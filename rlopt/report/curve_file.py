"""A finished run's compact curve file, ``OUT/curves/<arm>/seed_<k>.csv``: the scalar tag the report
plots, every point, so that ``rlopt report`` needs neither the run's event files nor TensorBoard's
reader. The sweep writes it when a run finishes (:func:`write_run_curve`); the report reads it when
present (:func:`load_curve`) and falls back to the event files otherwise. A run that logged
evaluations during training (``eval.every_steps``, tag :data:`EVAL_TAG`) also gets
``OUT/curves/<arm>/seed_<k>.eval.csv`` with that tag.

Format: header ``step,<tag>``, then ``step,value`` rows, values as Python's shortest round-trip
``repr`` so that reading gives back the identical floats (and a byte-identical report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlopt.curves import Curve, event_files, read_scalar
from rlopt.files import atomic_write_text

CURVES_DIR = "curves"
"""Sub-directory of a sweep's OUT with one curve file per finished run."""
EVAL_TAG = "eval/return_mean"
"""The tag of the evaluations during training (rlopt.run_logger), the report's evaluation curves."""
EVAL_SUFFIX = ".eval"
"""Inserted before ``.csv`` in the name of a run's evaluation curve file."""


def curve_file(arm: str, seed: Any, suffix: str = "") -> Path:
    """A run's curve file relative to OUT (``suffix`` :data:`EVAL_SUFFIX` for its evaluation curve)."""
    return Path(CURVES_DIR) / arm / f"seed_{seed}{suffix}.csv"


def curve_csv_text(curve: Curve, tag: str) -> str:
    """``curve`` as the CSV text of a curve file."""
    rows = [f"step,{tag}"] + [f"{s},{v!r}" for s, v in zip(curve.steps.tolist(), curve.values.tolist())]
    return "\n".join(rows) + "\n"


def read_curve_csv(path: str | Path, tag: str) -> Curve | None:
    """The curve in a curve file, or None when it is missing, unreadable or holds another tag."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] != f"step,{tag}":
        return None
    try:
        pairs = [line.split(",") for line in lines[1:] if line]
        steps = np.asarray([int(p[0]) for p in pairs], dtype=np.int64)
        values = np.asarray([float(p[1]) for p in pairs], dtype=np.float64)
    except (ValueError, IndexError):
        return None
    return Curve(steps, values)


def write_run_curve(out: Path, arm: str, seed: int, run_dir: Path, tag: str) -> None:
    """Read ``tag`` from the finished run's event files and write its curve file (atomically); when the
    run logged :data:`EVAL_TAG` (and ``tag`` is another tag), its evaluation curve file too."""
    path = out / curve_file(arm, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, curve_csv_text(read_scalar(out / run_dir, tag), tag))
    evaluations = read_scalar(out / run_dir, EVAL_TAG)
    if tag != EVAL_TAG and len(evaluations):
        atomic_write_text(out / curve_file(arm, seed, EVAL_SUFFIX), curve_csv_text(evaluations, EVAL_TAG))


def _empty() -> Curve:
    return Curve(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


def load_curve(out: Path, run: dict[str, Any], tag: str, suffix: str = "") -> Curve:
    """A finished manifest run's ``tag`` curve: its curve file (``suffix`` :data:`EVAL_SUFFIX` for the
    evaluation curve) when it holds ``tag``, else its event files (an empty curve when neither has it).

    For the evaluation curve, which most runs do not log, the event files are first searched for the
    tag's bytes (a plain substring search, ~10x faster than the full scan of a file without the tag)."""
    curve = read_curve_csv(out / curve_file(str(run.get("arm")), run.get("seed"), suffix), tag)
    if curve is not None:
        return curve
    run_dir = out / str(run["run_dir"])
    if suffix == EVAL_SUFFIX and not any(tag.encode() in path.read_bytes() for path in event_files(run_dir)):
        return _empty()
    return read_scalar(run_dir, tag)
