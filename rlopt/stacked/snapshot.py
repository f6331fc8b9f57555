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
        """Copy every seed's parameters and optimizer states: one ``_foreach_copy_`` into the
        copies of the previous take for every tensor whose state kept its keys and shapes."""
        flat = [p for seed_params in self.params for p in seed_params]
        targets: list[Tensor] = []
        sources: list[Tensor] = []
        if self._saved_params and len(self._saved_params) == len(self.params):
            targets += [t for saved in self._saved_params for t in saved]
            sources += flat
        else:
            self._saved_params = [[p.detach().clone() for p in seed_params] for seed_params in self.params]
        previous = self._saved_states
        self._saved_states = []
        for k, seed_params in enumerate(self.params):
            seed_states = []
            for o, optimizer in enumerate(self.optimizers):
                saved: dict[nn.Parameter, dict[str, Any] | None] = {}
                for p in seed_params:
                    state, old = optimizer.state.get(p), previous[k][o].get(p) if previous else None
                    if state and old and _same_layout(state, old):
                        for key, value in state.items():
                            if isinstance(value, Tensor):
                                targets.append(old[key])
                                sources.append(value.detach())
                            else:
                                old[key] = copy.deepcopy(value)
                        saved[p] = old
                    else:
                        saved[p] = _copy_state(state)
                seed_states.append(saved)
            self._saved_states.append(seed_states)
        if targets:
            with torch.no_grad():
                torch._foreach_copy_(targets, sources)

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


def _same_layout(state: dict[str, Any], saved: dict[str, Any]) -> bool:
    """Whether ``saved`` can take ``state``'s values in place: the same keys, tensors of one shape and dtype."""
    if state.keys() != saved.keys():
        return False
    for key, value in state.items():
        other = saved[key]
        if isinstance(value, Tensor) != isinstance(other, Tensor):
            return False
        if isinstance(value, Tensor) and (value.shape != other.shape or value.dtype != other.dtype):
            return False
    return True


def _copy_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy of one parameter's optimizer state (tensors cloned), or None."""
    if not state:
        return None
    return {k: v.detach().clone() if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in state.items()}
