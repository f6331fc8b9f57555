"""Many seeds in one process (issue 17): K seeds of one config trained together on stacked tensors.

Entry point: :func:`train_stacked` (``train_stacked(cfg, seeds=range(10))`` → one summary per
seed), or :class:`StackedLearner` + :class:`StackedTraining`. Exported lazily: the learner imports
the agents (the top floor), which the library modules of this package must not.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "StackedLearner": "rlopt.stacked.learner",
    "check_stackable": "rlopt.stacked.learner",
    "StackedTraining": "rlopt.stacked.training",
    "train_stacked": "rlopt.stacked.training",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rlopt.stacked' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
