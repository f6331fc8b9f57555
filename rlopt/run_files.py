"""The files of a run directory that the trainer, the CLI and the sweep driver agree on.

``RUN_DIR/config.yaml`` (the resolved config), ``summary.json`` (strict JSON), the config a
checkpoint records (to refuse a resume after ``config.yaml`` was edited) and the order of
TensorBoard event files across resumes. Torch-free, so the sweep driver can name these files
without importing the trainer, and the CLI can refuse a run directory before importing torch.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

from rlopt.config.schema import Config
from rlopt.errors import ConfigError

SUMMARY_FILE = "summary.json"
SUMMARY_KEYS = (
    "agent", "env_id", "seed", "total_steps", "wall_seconds", "learn_seconds", "steps_per_second",
    "eval_return_mean", "eval_return_std", "eval_episodes", "skipped_updates", "eval_truncated_episodes",
    "eval_max_episode_steps", "eval_return_finite",
)  # fmt: skip
"""The keys of ``summary.json`` as :class:`~rlopt.trainer.Trainer` writes it (a sweep's ``metric`` is one of them)."""
SUMMARY_TEXT_KEYS = ("agent", "env_id", "eval_return_finite")
"""The keys of ``summary.json`` that hold no number to compare runs by."""
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
"""``RUN_DIR/checkpoints/``: ``step_<12 digits>.pt`` (+ ``.env``) and ``best.pt`` (see :mod:`rlopt.checkpoint`)."""
_CHECKPOINT_NAME = re.compile(r"^step_(\d{12})\.pt$")
CHECKPOINT_FORMAT_VERSION = 1
"""Format 1 checkpoints written before issue 12 lack ``"config"``; they resume unchecked."""
RESUME_MUTABLE_KEYS = ("device", "threads")
"""Config keys a resume may change (the hardware); any other edit of config.yaml is refused, but
for :data:`RESUME_LENGTH_KEY`."""
RESUME_LENGTH_KEY = "total_steps"
"""The run's length may change on resume (``--total-steps``: extending a finished run); the
schedules are then re-fitted (:func:`rlopt.coefficients.refit_schedules`). The CLI refuses a
length below the env steps already done."""


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (torch-free: the CLI lists them before importing torch)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _CHECKPOINT_NAME.match(p.name))


def stored_config(cfg: Config) -> str:
    """The resolved config a checkpoint records, as canonical JSON, without ``RESUME_MUTABLE_KEYS``."""
    from rlopt.config import config_to_dict  # imports torch (the validation); this module does not

    tree = config_to_dict(cfg)
    for key in RESUME_MUTABLE_KEYS:
        tree.pop(key, None)
    return json.dumps(tree, sort_keys=True)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value differs between two config trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for name in sorted(set(old) | set(new), key=str)
                for k in changed_keys(old.get(name), new.get(name), f"{prefix}{name}.")]  # fmt: skip
    return [] if old == new else [prefix.rstrip(".")]


_ABSENT = object()
"""What :func:`_lookup` returns for a key a config tree does not hold."""


def _lookup(tree: Any, dotted: str) -> Any:
    """The value at ``dotted`` in a nested dict, or :data:`_ABSENT`."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def config_changes(saved: str, cfg: Config) -> list[str]:
    """Dotted keys where ``cfg`` differs from a checkpoint's :func:`stored_config` ``saved``.

    A key the schema gained since the checkpoint (e.g. ``eval.every_steps``) is no change while it
    keeps its default: a run written by an older rlopt still resumes.
    """
    old, new = json.loads(saved), json.loads(stored_config(cfg))
    defaults = json.loads(stored_config(Config()))
    return [key for key in changed_keys(old, new)
            if _lookup(old, key) is not _ABSENT or _lookup(new, key) != _lookup(defaults, key)]  # fmt: skip


def check_resume_config(checkpoint: Path, saved: Any, cfg: Config) -> None:
    """Refuse to continue ``checkpoint`` (its :func:`stored_config` ``saved``) under another config,
    e.g. PPO weights into A2C: a one-line ConfigError naming the changed keys. ``saved`` None
    (written before checkpoints recorded their config) passes."""
    if saved is None:
        return
    changed = [key for key in config_changes(saved, cfg) if key != RESUME_LENGTH_KEY]
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise ConfigError(
            f"--resume: config.yaml differs from the config {checkpoint.name} was trained with ({shown}); "
            f"only {', '.join(RESUME_MUTABLE_KEYS)} and {RESUME_LENGTH_KEY} (to extend the run) may change on resume"
        )


def saved_total_steps(saved: Any) -> int | None:
    """The ``total_steps`` a checkpoint's :func:`stored_config` records (None without a config)."""
    return int(json.loads(saved)[RESUME_LENGTH_KEY]) if isinstance(saved, str) else None


def strict_json_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with a non-finite evaluation return written as ``null`` (strict JSON has no NaN)
    and ``eval_return_finite`` saying whether it was finite."""
    out = dict(summary)
    finite = True
    for key in ("eval_return_mean", "eval_return_std"):
        value = out.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
            finite = False
    out["eval_return_finite"] = finite
    return out


_EVENT_SECONDS = re.compile(r"^events\.out\.tfevents\.(\d+)\.")
"""The creation second at the start of a TensorBoard event file name."""


def wait_for_later_event_file_name(run_dir: Path) -> None:
    """Sleep (< 1 s) until a new TensorBoard event file would sort after every existing one.

    TensorBoard reads a run's event files in name order, and a name starts with the second the
    writer was created (``events.out.tfevents.<seconds>.<host>.<pid>...``). A resumed writer's
    purge marker only removes the steps it must remove if its file is read last; in the same
    second as the crashed writer, the pid would decide the order instead.
    """
    created = [int(m.group(1)) for f in Path(run_dir).iterdir() if (m := _EVENT_SECONDS.match(f.name))]
    if created:
        time.sleep(max(0.0, max(created) + 1 - time.time()))
