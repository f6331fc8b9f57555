"""One mechanism for every scheduled hyper-parameter of an optimizer's param groups (``lr``,
``max_kl``, ...): :class:`ParamGroupScheduler`, torch's ``LambdaLR`` extended to other keys.

Top of :mod:`rlopt.schedules`. At update t every scheduled key of every group is ``base ·
schedule(t)``: for ``lr`` the base is the group's own lr (``LambdaLR``'s rule, whose state dict is
kept as torch writes it), for any other key a :class:`~rlopt.schedules.build.ScheduledValue`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rlopt.schedules.build import ScheduledValue
from rlopt.schedules.closed_forms import Schedule


class ParamGroupScheduler(torch.optim.lr_scheduler.LambdaLR):
    """Sets ``group[key] = base · schedule(t)`` for ``lr`` and every key of ``values`` at update t.

    Call :meth:`step` once per update. ``values`` (e.g. ``{"max_kl": ScheduledValue}``) are shared
    with whoever declared them (an agent's ``coefficients``) and re-fitted there, in place
    (:meth:`ScheduledValue.refit_in_place`); :meth:`refit` re-fits the lr schedules and re-applies all.
    The state dict is ``LambdaLR``'s (the values are rebuilt from the config, not saved); loading it
    re-applies every value at the loaded update.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: Schedule, values: Mapping[str, ScheduledValue] | None = None
    ) -> None:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        self.values: dict[str, ScheduledValue] = dict(values or {})
        for index, group in enumerate(optimizer.param_groups):
            for key in ("lr", *self.values):
                if key not in group:
                    raise ValueError(f"{type(optimizer).__name__}.param_groups[{index}] has no {key!r} to schedule")
        super().__init__(optimizer, lr_lambda=schedule)

    def step(self) -> None:  # type: ignore[override]
        """Move to the next update: lr by ``LambdaLR``, the other keys by their values."""
        super().step()
        self._apply_values()

    def _apply_values(self) -> None:
        for group in self.optimizer.param_groups:
            for key, value in self.values.items():
                group[key] = value.value(self.last_epoch)

    def get_last_lr(self) -> list[Any]:
        """The lr of each group at the current update."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def refit(self, total_updates: int, update: int) -> None:
        """Put the scheduler at update ``update`` of its lr schedules re-fitted to ``total_updates``
        updates (:meth:`Schedule.refit`): every group gets ``base_lr · schedule(update)``, the
        expression ``LambdaLR`` evaluates, so from here on the lrs are bit for bit those of a run
        configured with ``total_updates`` from the start; the other keys are re-applied from their
        (already re-fitted) values. The next :meth:`step` moves to ``update + 1``."""
        self.lr_lambdas = [schedule.refit(total_updates) for schedule in self.lr_lambdas]
        self.last_epoch = update
        for group, base_lr, schedule in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas, strict=True):
            group["lr"] = base_lr * schedule(update)
        self._apply_values()

    def state_dict(self) -> dict[str, Any]:
        """``LambdaLR``'s state dict (plain data; the values are not saved)."""
        state = super().state_dict()
        state.pop("values", None)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``LambdaLR``'s load, then every value at the loaded update."""
        super().load_state_dict(state_dict)
        self._apply_values()


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, values: Mapping[str, ScheduledValue] | None = None
) -> ParamGroupScheduler:
    """A :class:`ParamGroupScheduler`: lr at update t is ``base_lr * schedule(t)`` in every param
    group, and each key of ``values`` is its value at t. The schedule is a callable object, so the
    state dict records its ``__dict__`` and a round-trip restores it."""
    return ParamGroupScheduler(optimizer, schedule, values)


def refit_lr_scheduler(scheduler: ParamGroupScheduler, total_updates: int, update: int) -> None:
    """:meth:`ParamGroupScheduler.refit` (kept as a function for existing callers)."""
    scheduler.refit(total_updates, update)
