"""All-or-nothing updates: snapshot the networks and optimizer states before an update and put
them back, bit-exactly, if the learner reports the update as skipped (a non-finite observation,
reward, loss or gradient) — whatever the learner had already stepped.

The snapshot is taken before every update, so it must be cheap: :class:`WeightsSnapshot` keeps
preallocated copies and refreshes them with one ``torch._foreach_copy_`` (one dispatch for all
parameters, buffers and optimizer moments) instead of cloning each tensor every update.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import Tensor, nn


class WeightsSnapshot:
    """Copies of module parameters/buffers and of optimizer ``state`` taken by :meth:`take`.

    ``param_groups`` (learning rates, trust radius) are not part of the snapshot: schedules own
    them and advance even over a skipped update.
    """

    def __init__(self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> None:
        self.modules = list(modules)
        self.optimizers = list(optimizers)
        self._live: list[Tensor] = []
        self._saved: list[Tensor] = []
        self._state_layout: list[tuple[torch.optim.Optimizer, dict[Any, dict[str, Any]]]] = []

    def take(self) -> "WeightsSnapshot":
        """Copy the current values (reusing the previous copies when the tensors are the same)."""
        live = [t for m in self.modules for t in (*m.parameters(), *m.buffers())]
        live += [value for optimizer in self.optimizers for state in optimizer.state.values()
                 for value in state.values() if isinstance(value, Tensor)]  # fmt: skip
        with torch.no_grad():
            if len(live) == len(self._live) and all(a is b for a, b in zip(live, self._live)):
                torch._foreach_copy_(self._saved, live)
            else:  # first update, or an optimizer created its state: allocate new copies
                self._live, self._saved = live, [t.detach().clone() for t in live]
        # Which keys each state held, and its non-tensor values (step counts of some optimizers).
        self._state_layout = [
            (optimizer, {param: {k: v if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in state.items()}
                         for param, state in optimizer.state.items()})
            for optimizer in self.optimizers
        ]  # fmt: skip
        return self

    def restore(self) -> None:
        """Put the values of :meth:`take` back in place (bit-exact; tensors keep their identity)."""
        with torch.no_grad():
            torch._foreach_copy_(self._live, self._saved)
        for optimizer, layout in self._state_layout:
            optimizer.state.clear()  # drops state an optimizer created during the update
            optimizer.state.update({param: dict(state) for param, state in layout.items()})

