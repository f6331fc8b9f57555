"""Schedules: closed forms (docs/theory.md#schedules), torch's LR schedulers, warm-up, pickling, state dicts."""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch

from rlopt.errors import ConfigError
from rlopt.schedules import (
    SCHEDULE_NAMES,
    Constant,
    Cosine,
    CosineRestarts,
    InverseSqrt,
    Linear,
    Schedule,
    ScheduledValue,
    StepDecay,
    Warmup,
    build_lr_scheduler,
    build_schedule,
    parse_scheduled_value,
    schedule_from_state_dict,
)

STEPS = range(0, 250)
BASE_LR = 0.3


def lr_sequence(
    scheduler_factory: Callable[[torch.optim.Optimizer], Any], steps: int, base_lr: float = BASE_LR
) -> list[float]:
    """The lr a real optimizer uses at updates 0..steps-1 under a torch scheduler."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = scheduler_factory(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def ours(schedule: Schedule) -> Callable[[torch.optim.Optimizer], Any]:
    return lambda optimizer: build_lr_scheduler(optimizer, schedule)


# ---------------------------------------------------------------------------------------------
# Closed forms (docs/theory.md#schedules): η_k = η0 γ^⌊k/s⌋,  η0/√k,  η0 ½(1 + cos(πk/K)).
# ---------------------------------------------------------------------------------------------


def test_constant_is_one() -> None:
    assert all(Constant()(t) == 1.0 for t in STEPS)


def test_step_decay_matches_seed_formula() -> None:
    schedule = StepDecay(step_size=7, gamma=0.5)
    for t in STEPS:
        assert schedule(t) == pytest.approx(0.5 ** math.floor(t / 7), rel=1e-15)
    assert schedule(6) == 1.0 and schedule(7) == 0.5 and schedule(14) == 0.25


def test_inverse_sqrt_is_seed_one_over_sqrt_k_with_k_equal_t_plus_one() -> None:
    schedule = InverseSqrt()
    for t in STEPS:
        k = t + 1
        assert schedule(t) == pytest.approx(1.0 / math.sqrt(k), rel=1e-15)
    assert InverseSqrt(timescale=4.0)(12) == pytest.approx(0.5, rel=1e-15)  # 1/sqrt(1 + 12/4)


def test_cosine_matches_seed_formula_then_holds_min_factor() -> None:
    horizon = 100
    schedule = Cosine(horizon)
    for t in range(horizon + 1):
        assert schedule(t) == pytest.approx(0.5 * (1 + math.cos(math.pi * t / horizon)), abs=1e-15)
    assert schedule(0) == 1.0 and schedule(50) == pytest.approx(0.5)
    floor = Cosine(horizon, min_factor=0.1)
    assert floor(horizon) == pytest.approx(0.1) and floor(horizon + 37) == pytest.approx(0.1)
    assert floor(25) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_linear_decays_to_end_factor_then_holds() -> None:
    schedule = Linear(horizon=40, end_factor=0.25)
    for t in STEPS:
        assert schedule(t) == pytest.approx(1 + (0.25 - 1) * min(t / 40, 1), rel=1e-15)
    assert schedule(0) == 1.0 and schedule(20) == pytest.approx(0.625) and schedule(99) == 0.25


def test_cosine_restarts_cycle_lengths_follow_sgdr() -> None:
    schedule = CosineRestarts(period=5, period_mult=2, min_factor=0.0)
    # Cycles [0, 5), [5, 15), [15, 35), [35, 75): T_i = 5 * 2**i, factor 1 at every restart.
    for start, length in [(0, 5), (5, 10), (15, 20), (35, 40)]:
        assert schedule.cycle_position(start) == (0, length)
        assert schedule(start) == 1.0
        for elapsed in range(length):
            expected = 0.5 * (1 + math.cos(math.pi * elapsed / length))
            assert schedule(start + elapsed) == pytest.approx(expected, abs=1e-15)
    periodic = CosineRestarts(period=8)
    assert [periodic(t) for t in range(8)] == [periodic(t) for t in range(16, 24)]


# ---------------------------------------------------------------------------------------------
# Against torch's schedulers on a real optimizer. torch's LinearLR and CosineAnnealingLR are
# recursive (each lr is computed from the previous one), so they drift by rounding only; StepLR
# and CosineAnnealingWarmRestarts are closed forms.
# ---------------------------------------------------------------------------------------------


def test_linear_matches_torch_linear_lr() -> None:
    horizon, end = 60, 0.1
    expected = lr_sequence(
        lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, end, total_iters=horizon), 100
    )
    got = lr_sequence(ours(Linear(horizon, end_factor=end)), 100)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_matches_torch_cosine_annealing_within_horizon() -> None:
    # torch's CosineAnnealingLR keeps following the cosine past T_max (it rises again); ours
    # holds min_factor, so compare over [0, T].
    horizon, min_factor = 50, 0.2
    expected = lr_sequence(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
            o, T_max=horizon, eta_min=min_factor * BASE_LR
        ),
        horizon + 1,
    )
    got = lr_sequence(ours(Cosine(horizon, min_factor=min_factor)), horizon + 1)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_step_decay_matches_torch_step_lr() -> None:
    expected = lr_sequence(lambda o: torch.optim.lr_scheduler.StepLR(o, 9, gamma=0.7), 100)
    got = lr_sequence(ours(StepDecay(9, gamma=0.7)), 100)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("period_mult", [1, 2, 3])
def test_cosine_restarts_match_torch_warm_restarts(period_mult: int) -> None:
    period, min_factor = 6, 0.05
    expected = lr_sequence(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            o, T_0=period, T_mult=period_mult, eta_min=min_factor * BASE_LR
        ),
        150,
    )
    got = lr_sequence(ours(CosineRestarts(period, period_mult, min_factor)), 150)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-14)


# ---------------------------------------------------------------------------------------------
# Warm-up
# ---------------------------------------------------------------------------------------------

INNER_SCHEDULES: list[Schedule] = [
    Constant(),
    Linear(30, end_factor=0.1),
    StepDecay(4, gamma=0.5),
    InverseSqrt(timescale=2.0),
    Cosine(30, min_factor=0.05),
    CosineRestarts(5, 2, 0.1),
]


@pytest.mark.parametrize("inner", INNER_SCHEDULES, ids=lambda s: type(s).__name__)
def test_warmup_ramps_linearly_then_runs_inner_shifted(inner: Schedule) -> None:
    warmup_steps, start = 8, 0.2
    schedule = Warmup(inner, warmup_steps, start_factor=start)
    for t in range(warmup_steps):
        assert schedule(t) == pytest.approx(start + (1 - start) * t / warmup_steps, rel=1e-15)
    for t in range(warmup_steps, 120):
        assert schedule(t) == inner(t - warmup_steps)
    assert schedule.inner == inner


def test_zero_warmup_steps_is_the_inner_schedule() -> None:
    inner = Cosine(10)
    assert [Warmup(inner, 0)(t) for t in range(15)] == [inner(t) for t in range(15)]


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_build_shortens_horizon_by_warmup(name: str) -> None:
    schedule = build_schedule({"name": name, "warmup_steps": 10}, horizon=100)
    assert isinstance(schedule, Warmup)
    assert schedule.inner.horizon == 90  # type: ignore[attr-defined]
    assert schedule(0) == 0.0 and schedule(10) == 1.0
    assert schedule(100) == pytest.approx(0.0, abs=1e-15)  # reaches the end at the horizon


# ---------------------------------------------------------------------------------------------
# build_schedule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, Constant()),
        ({"name": "constant"}, Constant()),
        ({"name": "linear", "end_factor": 0.5}, Linear(50, 0.5)),
        ({"name": "step", "step_size": 10}, StepDecay(10, 0.1)),
        ({"name": "inverse_sqrt", "timescale": 3}, InverseSqrt(3.0)),
        ({"name": "cosine", "min_factor": 0.1}, Cosine(50, 0.1)),
        ({"name": "cosine_restarts", "period": 10, "period_mult": 2}, CosineRestarts(10, 2)),
        (
            {"name": "step", "step_size": 10, "warmup_steps": 5, "warmup_start_factor": 0.1},
            Warmup(StepDecay(10), 5, 0.1),
        ),
    ],
)
def test_build_schedule_from_spec(spec: dict[str, Any] | None, expected: Schedule) -> None:
    assert build_schedule(spec, horizon=50) == expected


def test_schedule_names() -> None:
    expected = ["constant", "cosine", "cosine_restarts", "inverse_sqrt", "linear", "step"]
    assert SCHEDULE_NAMES == expected


def test_build_schedule_accepts_omegaconf_mappings() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    spec = omegaconf.OmegaConf.create({"name": "cosine", "min_factor": 0.1, "warmup_steps": 2})
    assert build_schedule(spec, horizon=12) == Warmup(Cosine(10, 0.1), 2)


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"name": "cosin"}, r"^actor\.schedule\.name: unknown schedule 'cosin'; valid: constant, "),
        ({}, r"^actor\.schedule\.name: unknown schedule None"),
        ({"name": "cosine", "horizon": 10}, r"^actor\.schedule\.horizon: unknown .*min_factor"),
        ({"name": "linear", "gamma": 0.1}, r"^actor\.schedule\.gamma: unknown option .*end_factor"),
        ({"name": "step"}, r"^actor\.schedule\.step_size: required"),
        ({"name": "step", "step_size": 0}, r"^actor\.schedule\.step_size: must be an int >= 1"),
        ({"name": "step", "step_size": 2.5}, r"^actor\.schedule\.step_size: must be an int"),
        ({"name": "step", "step_size": True}, r"^actor\.schedule\.step_size: must be an int"),
        ({"name": "step", "step_size": 3, "gamma": "x"}, r"^actor\.schedule\.gamma: must be a num"),
        ({"name": "cosine", "min_factor": 1.5}, r"^actor\.schedule\.min_factor: .*<= 1"),
        ({"name": "linear", "end_factor": -0.1}, r"^actor\.schedule\.end_factor: .*>= 0"),
        ({"name": "inverse_sqrt", "timescale": 0}, r"^actor\.schedule\.timescale: .*> 0"),
        ({"name": "constant", "warmup_steps": -1}, r"^actor\.schedule\.warmup_steps: .*>= 0"),
        ({"name": "linear", "warmup_steps": 20}, r"^actor\.schedule\.warmup_steps: must be <"),
        ({"name": "cosine_restarts", "period": 5, "period_mult": 1.5}, r"period_mult: must be an"),
        ("cosine", r"^actor\.schedule: must be a mapping"),
    ],
)
def test_build_schedule_errors_name_the_field(spec: Any, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        build_schedule(spec, horizon=20, key="actor.schedule")
    assert "\n" not in str(info.value)


def test_build_schedule_rejects_a_bad_horizon() -> None:
    with pytest.raises(ConfigError, match=r"^schedule horizon"):
        build_schedule({"name": "cosine"}, horizon=0)


# ---------------------------------------------------------------------------------------------
# Pickling and state dicts
# ---------------------------------------------------------------------------------------------

ALL_SCHEDULES: list[Schedule] = [*INNER_SCHEDULES, Warmup(Cosine(30, 0.1), 5, 0.1)]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_schedule_pickle_round_trip(schedule: Schedule) -> None:
    restored = pickle.loads(pickle.dumps(schedule))
    assert restored == schedule
    assert [restored(t) for t in STEPS] == [schedule(t) for t in STEPS]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_schedule_state_dict_is_plain_and_round_trips(schedule: Schedule) -> None:
    state = schedule.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # only plain python values load this way
    assert schedule_from_state_dict(loaded) == schedule
    fresh = schedule_from_state_dict(loaded)
    fresh.load_state_dict(state)
    assert fresh == schedule


def test_load_state_dict_rejects_other_schedule() -> None:
    with pytest.raises(ConfigError, match="expected 'cosine'"):
        Cosine(10).load_state_dict(Linear(10).state_dict())


def test_repr_shows_fields() -> None:
    assert repr(Cosine(10, 0.5)) == "Cosine(horizon=10, min_factor=0.5)"


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_lambda_lr_pickles_with_schedule(schedule: Schedule) -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([param], lr=BASE_LR)
    scheduler = build_lr_scheduler(optimizer, schedule)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    restored = pickle.loads(pickle.dumps(scheduler))
    assert restored.lr_lambdas[0] == schedule
    assert restored.get_last_lr() == scheduler.get_last_lr()


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_lambda_lr_state_dict_round_trip_restores_exact_lr_sequence(schedule: Schedule) -> None:
    def fresh() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        param = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.SGD([param], lr=BASE_LR, momentum=0.9)
        return optimizer, build_lr_scheduler(optimizer, schedule)

    def next_lrs(optimizer: torch.optim.Optimizer, scheduler: Any, count: int) -> list[float]:
        lrs = []
        for _ in range(count):
            optimizer.step()
            scheduler.step()
            lrs.append(optimizer.param_groups[0]["lr"])
        return lrs

    optimizer, scheduler = fresh()
    next_lrs(optimizer, scheduler, 10)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    expected = next_lrs(optimizer, scheduler, 10)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # the scheduler state is plain data
    optimizer2, scheduler2 = fresh()
    optimizer2.load_state_dict(saved["optimizer"])
    scheduler2.load_state_dict(saved["scheduler"])
    assert scheduler2.last_epoch == 10
    assert next_lrs(optimizer2, scheduler2, 10) == expected


def test_lambda_lr_state_dict_restores_schedule_hyper_parameters() -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=1.0)
    saved = build_lr_scheduler(optimizer, Cosine(40, min_factor=0.3)).state_dict()
    target = Cosine(10)
    build_lr_scheduler(torch.optim.SGD([param], lr=1.0), target).load_state_dict(saved)
    assert target == Cosine(40, min_factor=0.3)


def test_lr_scheduler_schedules_every_param_group() -> None:
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    scheduler = build_lr_scheduler(optimizer, StepDecay(1, gamma=0.5))
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.05]


def test_lr_scheduler_requires_lr_in_param_groups() -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=1.0)
    del optimizer.param_groups[0]["lr"]
    with pytest.raises(ValueError, match=r"param_groups\[0\] has no 'lr'"):
        build_lr_scheduler(optimizer, Constant())


# ---------------------------------------------------------------------------------------------
# ScheduledValue
# ---------------------------------------------------------------------------------------------


def test_scheduled_value_from_number_is_constant() -> None:
    value = parse_scheduled_value(0.01, horizon=100, key="entropy_coef")
    assert value == ScheduledValue(0.01, Constant())
    assert [value.value(t) for t in (0, 50, 1000)] == [0.01, 0.01, 0.01]
    assert parse_scheduled_value(1, horizon=100, key="k").value(3) == 1.0


def test_scheduled_value_from_mapping_multiplies_base() -> None:
    raw = {"value": 0.2, "name": "linear", "end_factor": 0.5}
    clip = parse_scheduled_value(raw, horizon=100, key="ppo.clip")
    assert clip.value(0) == pytest.approx(0.2)
    assert clip.value(50) == pytest.approx(0.15)
    assert clip.value(100) == pytest.approx(0.1) and clip.value(500) == pytest.approx(0.1)
    assert parse_scheduled_value({"value": 0.3}, horizon=10, key="k") == ScheduledValue(0.3)


def test_scheduled_value_pickles_and_state_dict_round_trips() -> None:
    value = parse_scheduled_value(
        {"value": 0.01, "name": "cosine", "warmup_steps": 3}, horizon=20, key="max_kl"
    )
    assert pickle.loads(pickle.dumps(value)) == value
    other = ScheduledValue(1.0)
    other.load_state_dict(value.state_dict())
    assert other == value and other.value(7) == value.value(7)


@pytest.mark.parametrize(
    "raw, pattern",
    [
        ("0.2", r"^ppo\.clip: must be a number or a mapping"),
        (True, r"^ppo\.clip: must be a number or a mapping"),
        (float("nan"), r"^ppo\.clip: must be finite"),
        ({"name": "linear"}, r"^ppo\.clip\.value: required"),
        ({"value": "x"}, r"^ppo\.clip\.value: must be a finite number"),
        ({"value": 0.2, "name": "linear", "bogus": 1}, r"^ppo\.clip\.bogus: unknown option"),
        ({"value": 0.2, "name": "nope"}, r"^ppo\.clip\.name: unknown schedule 'nope'"),
    ],
)
def test_parse_scheduled_value_errors_name_the_key(raw: Any, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_scheduled_value(raw, horizon=10, key="ppo.clip")
