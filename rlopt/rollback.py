"""All-or-nothing updates: snapshot the networks and optimizer states before an update and put
them back, bit-exactly, if the learner reports the update as skipped (a non-finite observation,
reward, loss or gradient) — whatever the learner had already stepped."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import Tensor, nn

@dataclass
class WeightsSnapshot:
    """Copies of module states and optimizer ``state`` entries taken before an update."""

    modules: list[tuple[nn.Module, dict[str, Tensor]]]
    optimizers: list[tuple[torch.optim.Optimizer, dict[Any, dict[str, Any]]]]


def _clone_value(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else copy.deepcopy(value)


def snapshot_weights(modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> WeightsSnapshot:
    """Clone every parameter/buffer and every optimizer state tensor (moments, step counts).

    ``param_groups`` (learning rates, trust radius) are not part of the snapshot: schedules own
    them and advance even over a skipped update.
    """
    return WeightsSnapshot(
        modules=[(m, {k: v.detach().clone() for k, v in m.state_dict().items()}) for m in modules],
        optimizers=[
            (o, {p: {k: _clone_value(v) for k, v in s.items()} for p, s in o.state.items()}) for o in optimizers
        ],
    )


def restore_weights(snapshot: WeightsSnapshot) -> None:
    """Put the snapshot back in place (bit-exact; parameter objects keep their identity)."""
    for module, saved in snapshot.modules:
        module.load_state_dict(saved)
    for optimizer, saved_state in snapshot.optimizers:
        optimizer.state.clear()
        optimizer.state.update(saved_state)
