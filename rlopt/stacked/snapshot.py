"""Per-seed all-or-nothing updates: a non-finite update rolls back only its own seed.

:class:`rlopt.rollback.WeightsSnapshot` restores whole optimizers; here the optimizers hold every
seed's tensors, so a seed is restored tensor by tensor: its parameters and, in each optimizer,
the state of its parameters only (bit-exact; the other seeds keep what they stepped).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn


class SeedSnapshots:
    """Copies of each seed's parameters and optimizer states taken by :meth:`take`."""

    def __init__(self, params: Sequence[Sequence[nn.Parameter]], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.params = [list(seed_params) for seed_params in params]
        self.optimizers = list(optimizers)
        self._saved_params: list[list[Tensor]] = []
        self._saved_states: list[list[dict[nn.Parameter, dict[str, Any] | None]]] = []

    def take(self) -> None:
        """Copy every seed's parameters and optimizer states (one ``_foreach_copy_`` when the
        tensors are those of the previous take)."""
        flat = [p for seed_params in self.params for p in seed_params]
        with torch.no_grad():
            if self._saved_params and len(self._saved_params) == len(self.params):
                torch._foreach_copy_([t for saved in self._saved_params for t in saved], flat)
            else:
                self._saved_params = [[p.detach().clone() for p in seed_params] for seed_params in self.params]
        self._saved_states = [
            [{p: _copy_state(optimizer.state.get(p)) for p in seed_params} for optimizer in self.optimizers]
            for seed_params in self.params
        ]

    def restore(self, seed: int) -> None:
        """Put seed ``seed``'s values of :meth:`take` back (parameters in place, states replaced)."""
        with torch.no_grad():
            torch._foreach_copy_(self.params[seed], self._saved_params[seed])
        for optimizer, states in zip(self.optimizers, self._saved_states[seed]):
            for param, state in states.items():
                if state is None:
                    optimizer.state.pop(param, None)
                else:
                    optimizer.state[param] = _copy_state(state)


def _copy_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy of one parameter's optimizer state (tensors cloned), or None."""
    if not state:
        return None
    return {k: v.detach().clone() if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in state.items()}
