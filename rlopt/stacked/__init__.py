"""Many seeds in one process (issue 17): K seeds of one config trained together on stacked tensors.

Entry point (top floor, it builds the agents): ``agents.stacked.train_stacked(cfg, seeds=range(10))``
→ one summary per seed, or ``agents.stacked.build_stacked`` + :class:`StackedTraining`. Exported
lazily, so that importing :mod:`rlopt.stacked.rollout` does not import the update code.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "StackedLearner": "rlopt.stacked.learner",
    "check_stackable": "rlopt.stacked.learner",
    "StackedTraining": "rlopt.stacked.training",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rlopt.stacked' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
