"""Picklable schedules: an update count t = 0, 1, 2, ... (one per policy update) -> a factor.

One family serves learning rates (through :class:`ParamGroupScheduler`, a ``LambdaLR``) and scalar
coefficients such as the entropy coefficient, the PPO clip range or the TRPO KL radius (through
:class:`ScheduledValue`). Every schedule is a closed form of t (docs/theory.md#schedules), is a plain class
(never a lambda or closure, which break pickling: SB3 #2115, Tianshou #992) and keeps only plain
python values in ``__dict__``. ``LambdaLR.state_dict()`` copies that ``__dict__``, so a scheduler
state dict stays plain data and loads with ``torch.load(..., weights_only=True)``.

This package's ``__init__`` is its public face (import from ``rlopt.schedules``); inside, the
layers read bottom-up: ``fields`` (validators) -> ``closed_forms`` (the schedule classes,
torch-free) -> ``build`` (config specs, ``ScheduledValue``) -> ``param_groups`` (the one scheduler of
every param-group hyper-parameter, ``lr`` and ``max_kl`` alike).
"""

from rlopt.schedules.build import (
    ScheduledValue,
    build_schedule,
    parse_scheduled_value,
    scheduled_values,
    value_at_start,
)
from rlopt.schedules.closed_forms import (
    SCHEDULE_NAMES,
    Constant,
    Cosine,
    CosineRestarts,
    InverseSqrt,
    Linear,
    Schedule,
    StepDecay,
    Warmup,
    schedule_from_state_dict,
)
from rlopt.schedules.param_groups import ParamGroupScheduler, build_lr_scheduler, refit_lr_scheduler

__all__ = [
    "SCHEDULE_NAMES",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "InverseSqrt",
    "Linear",
    "ParamGroupScheduler",
    "Schedule",
    "ScheduledValue",
    "StepDecay",
    "Warmup",
    "build_lr_scheduler",
    "build_schedule",
    "parse_scheduled_value",
    "refit_lr_scheduler",
    "schedule_from_state_dict",
    "scheduled_values",
    "value_at_start",
]
