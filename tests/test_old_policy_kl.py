"""The old policy π_old of an update is a copy: the KL an agent reports (and TRPO's line search
checks) is KL(π_old‖π_θ) against the parameters from before the update, log-std included."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.test_agents import make_agent, one_update


@pytest.mark.parametrize("name", ["trpo", "ppo"])
def test_reported_kl_is_against_the_actor_from_before_the_update(name: str) -> None:
    agent = make_agent(name, "Pendulum-v1")
    snapshot = {k: v.detach().clone() for k, v in agent.actor.state_dict().items()}
    batch, stats = one_update(agent)
    assert not stats.skipped
    old_actor = copy.deepcopy(agent.actor)
    old_actor.load_state_dict(snapshot)
    assert not torch.equal(old_actor.log_std, agent.actor.log_std)  # the update moved the log-std
    with torch.no_grad():
        expected = old_actor(batch.obs).kl(agent.actor(batch.obs)).mean().item()
    assert expected > 0
    assert stats.actor_kl == pytest.approx(expected, rel=1e-5, abs=1e-9)
    if name == "trpo":  # the accepted step satisfies the constraint on the true KL
        assert stats.extra["actor/step_accepted"] == 1.0
        assert expected <= agent.actor_optimizer.param_groups[0]["max_kl"]
