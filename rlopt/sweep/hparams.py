"""TensorBoard HParams for each finished run, written by the driver into the run directory itself.

One row per run directory (no timestamped sub-runs, unlike ``SummaryWriter.add_hparams``), and
every run of a sweep has the same keys with the same types: TensorBoard's HParams table drops
or splits columns whose types differ between runs. Written once (an event file ending in
``.hparams`` marks it), after the run's ``summary.json`` exists.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

from rlopt.sweep.rendering import config_trees
from rlopt.sweep.spec import Sweep, get_dotted

HPARAMS_SUFFIX = ".hparams"
"""Suffix of the event file holding a run's HParams (its presence means: written)."""


def _column(values: list[Any]) -> list[Any]:
    """One type per column: all bools, all floats, all strings, or else JSON strings."""
    if all(isinstance(v, bool) for v in values):
        return values
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    if all(isinstance(v, str) for v in values):
        return values
    return [json.dumps(v, sort_keys=True) for v in values]


def hparam_table(sweep: Sweep) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(arm, seed): {"arm": ..., "seed": ..., <swept key>: value}}`` read from each resolved config."""
    keys: list[str] = []
    for arm in sweep.arms:
        keys.extend(key for key in arm.overrides if key not in keys)
    configs = config_trees(sweep.runs)
    columns = {
        "arm": [run.arm for run in sweep.runs],
        "seed": [float(run.seed) for run in sweep.runs],
        **{key: _column([get_dotted(cfg, key) for cfg in configs]) for key in keys},
    }
    return {
        (run.arm, run.seed): {key: column[i] for key, column in columns.items()}
        for i, run in enumerate(sweep.runs)
    }


def hparams_written(run_dir: Path) -> bool:
    return any(run_dir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"))


def write_hparams(run_dir: Path, hparams: dict[str, Any], metric: str, value: Any, step: int) -> None:
    """HParams plus the scalar ``hparam/<metric>`` in ``run_dir`` (once)."""
    if hparams_written(run_dir):
        return
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    tag = f"hparam/{metric}"
    number = float(value) if isinstance(value, numbers.Real) else math.nan
    experiment, session_start, session_end = hparams_summary(hparams, {tag: number})
    writer = SummaryWriter(str(run_dir), filename_suffix=HPARAMS_SUFFIX)
    try:
        for summary in (experiment, session_start, session_end):
            writer.file_writer.add_summary(summary)
        writer.add_scalar(tag, number, step)
    finally:
        writer.close()
