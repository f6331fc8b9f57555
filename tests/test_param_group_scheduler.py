"""One mechanism for every scheduled hyper-parameter of a param group (issue 19): ``lr`` and
``max_kl`` follow the same rule ``base · schedule(t)`` through :class:`ParamGroupScheduler`, whose
state dict is torch's ``LambdaLR``'s (checkpoints keep their layout), and a run-length re-fit of a
shared value reaches the param group."""

from __future__ import annotations

import io

import pytest
import torch

from agents import TRPO
from rlopt.coefficients import refit_schedules
from rlopt.schedules import ParamGroupScheduler, ScheduledValue, build_lr_scheduler, build_schedule
from rlopt.trainer import Trainer
from rlopt.trust_region import TrustRegion

HORIZON = 10
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step:UserWarning")  # no optimizer steps here


def _trust_region(max_kl: ScheduledValue, lr_spec: dict | None = None) -> tuple[TrustRegion, ParamGroupScheduler]:
    layer = torch.nn.Linear(2, 2)
    optimizer = TrustRegion(layer.parameters(), max_kl=max_kl.base)
    return optimizer, build_lr_scheduler(optimizer, build_schedule(lr_spec, HORIZON), {"max_kl": max_kl})


def test_max_kl_and_lr_follow_the_same_rule() -> None:
    max_kl = ScheduledValue(0.02, build_schedule({"name": "linear", "end_factor": 0.5}, HORIZON))
    optimizer, scheduler = _trust_region(max_kl, {"name": "cosine"})
    lr_schedule = build_schedule({"name": "cosine"}, HORIZON)
    for update in range(HORIZON):
        group = optimizer.param_groups[0]
        assert group["max_kl"] == 0.02 * max_kl.schedule(update)  # bit for bit: base · schedule(t)
        assert group["lr"] == 1.0 * lr_schedule(update) and scheduler.get_last_lr() == [group["lr"]]
        scheduler.step()


def test_the_state_dict_is_lambda_lr_s_and_loading_it_re_applies_the_values() -> None:
    max_kl = ScheduledValue(0.02, build_schedule({"name": "linear"}, HORIZON))
    optimizer, scheduler = _trust_region(max_kl)
    for _ in range(3):
        scheduler.step()
    state = scheduler.state_dict()
    plain = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=build_schedule(None, HORIZON))
    assert set(state) == set(plain.state_dict())  # the checkpoint layout is torch's
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    fresh_optimizer, fresh = _trust_region(ScheduledValue(0.02, build_schedule({"name": "linear"}, HORIZON)))
    assert fresh_optimizer.param_groups[0]["max_kl"] == 0.02
    fresh.load_state_dict(loaded)
    assert fresh.last_epoch == 3 and fresh_optimizer.param_groups[0]["max_kl"] == max_kl.value(3)


def test_a_refit_of_the_shared_value_reaches_the_param_group() -> None:
    max_kl = ScheduledValue(0.02, build_schedule({"name": "linear"}, 4))
    optimizer, scheduler = _trust_region(max_kl)
    for _ in range(4):
        scheduler.step()
    assert optimizer.param_groups[0]["max_kl"] == 0.0  # the end of the 4-update schedule
    changed = refit_schedules({"actor lr": scheduler}, {"actor.optim.max_kl": max_kl}, 4, 8, 4)
    assert changed == ["actor.optim.max_kl linear re-fitted to 8 updates: 0.01 at update 4 (was 0)"]
    assert optimizer.param_groups[0]["max_kl"] == 0.02 * (1 - 4 / 8)


def test_a_scheduler_refuses_a_key_the_groups_do_not_have() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="has no 'max_kl' to schedule"):
        build_lr_scheduler(optimizer, build_schedule(None, HORIZON), {"max_kl": ScheduledValue(0.01)})


def test_a_loaded_trpo_agent_resumes_with_this_update_s_radius() -> None:
    tiny = {"env": {"num_envs": 2}, "rollout": {"n_steps": 32}, "eval": {"episodes": 1}, "total_steps": 256,
            "critic": {"minibatch_size": 64}, "actor": {"optim": {"max_kl": {"value": 0.02, "name": "linear"}}}}  # fmt: skip
    agent = TRPO.from_config(None, **tiny)
    Trainer(agent, run_dir=None, progress=False).train(128)  # half the run: 2 of 4 updates
    assert agent.updates_done == 2
    radius = agent.coefficients["actor.optim.max_kl"]
    assert agent.actor_optimizer.param_groups[0]["max_kl"] == radius.value(2) == pytest.approx(0.02 * (1 - 2 / 4))
    twin = TRPO.from_config(None, **tiny)
    assert twin.actor_optimizer.param_groups[0]["max_kl"] == radius.value(0)
    twin.load_state_dict(agent.state_dict())
    assert twin.actor_optimizer.param_groups[0]["max_kl"] == radius.value(2)
