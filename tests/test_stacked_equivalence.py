"""Seed k of a stack is its lone run (issue 17): same initial weights and random stream, the same
first rollout, the first update's statistics within 1e-5 relative; no seed influences another."""

from __future__ import annotations

import math

import pytest
import torch

from agents import build_agent
from rlopt.config import load_config
from rlopt.errors import ConfigError
from agents.stacked import build_stacked, train_stacked
from rlopt.stacked import StackedTraining
from rlopt.trainer import Trainer

SMALL = {  # a few hundred env steps per update at most
    "ppo_cartpole": ["rollout.n_steps=32"],
    "a2c_cartpole": [],
    "reinforce_cartpole": ["rollout.n_steps=32"],
    "ppo_pendulum": ["rollout.n_steps=64", "ppo.epochs=2"],
    "reinforce_pendulum": ["rollout.n_steps=32", "critic.updates=2", "critic.minibatch_size=64"],
}


def _cfg(preset: str, *overrides: str):
    return load_config(preset, [*SMALL[preset], "eval.episodes=1", *overrides])


def _states_equal(a: torch.nn.Module | None, b: torch.nn.Module | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("preset", ["ppo_cartpole", "reinforce_pendulum"])
def test_initial_weights_and_random_stream_are_the_lone_runs(preset):
    stack = build_stacked(_cfg(preset), [3, 7])
    for k, seed in enumerate((3, 7)):
        lone = build_agent(_cfg(preset, f"seed={seed}"))
        assert _states_equal(stack.agents[k].actor, lone.actor) and _states_equal(stack.agents[k].critic, lone.critic)
        assert torch.equal(stack.generators[k].get_state(), torch.get_rng_state())


def _first_update(preset: str, seeds=(0, 1), overrides=()):
    """The stack's and each lone run's first rollout and update."""
    stack = build_stacked(_cfg(preset, *overrides), seeds)
    training = StackedTraining(stack)
    training.collector.collect(stack.act, stack.value)
    batch = stack.prepare_batch(training.collector.buffer)
    stacked_stats = stack.update(batch)
    lone_runs = []
    for seed in seeds:
        lone = build_agent(_cfg(preset, *overrides, f"seed={seed}"))
        trainer = Trainer(lone, run_dir=None, progress=False)
        trainer.collector.collect(lone.act, lone.value)
        lone_buffer = trainer.collector.buffer
        lone_batch = lone.prepare_batch(lone_buffer)
        lone_runs.append((lone, lone_buffer, lone_batch, lone.update(lone_batch)))
        trainer.close()
    training.collector.close()
    return stack, training, batch, stacked_stats, lone_runs


FAST = ("ppo_cartpole", "a2c_cartpole", "ppo_pendulum")
"""Presets whose first update is also checked in the default (fast, ``stack_exact: false``) mode."""


@pytest.mark.parametrize(
    "preset,overrides",
    [(p, ("stack_exact=true",)) for p in SMALL]
    + [(p, ()) for p in FAST]
    + [("ppo_pendulum", ("env.normalize_obs=true", "stack_exact=true")),
       ("ppo_cartpole", ("ppo.minibatch_size=62", "stack_exact=true"))],  # ragged
    ids=str,
)  # fmt: skip
def test_first_rollout_and_update_match_the_lone_runs(preset, overrides):
    """``stack_exact``: the first rollout is the lone one bit for bit. By default (tanh as 2σ(2x)−1)
    the discrete actions are the same, every float within 1e-5 relative (a Gaussian's actions, and
    so the states, move by the rounding too) and the statistics within 1e-5 relative or 1e-6
    absolute (a loss near 0 is a difference of O(1) terms; measured: at most 2e-7 absolute)."""
    exact = "stack_exact=true" in overrides
    stack, training, batch, stacked_stats, lone_runs = _first_update(preset, overrides=overrides)

    def same(a, b, name):
        if exact or not a.is_floating_point():
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

    for k, (lone, lone_buffer, lone_batch, lone_stats) in enumerate(lone_runs):
        buffer = training.collector.buffer.seeds[k]
        for name in ("obs", "actions", "log_probs", "values", "rewards", "valid", "last_values"):
            same(getattr(buffer, name), getattr(lone_buffer, name), name)  # identical actions
        size = batch.sizes[k]
        assert size == len(lone_batch)
        for name in ("obs", "actions", "advantages", "returns"):
            same(getattr(batch, name)[k, :size], getattr(lone_batch, name), name)
        ours, theirs = stacked_stats[k].scalars(), lone_stats.scalars()
        assert set(ours) == set(theirs)
        for tag in theirs:  # the KLs too: both detach a copy of π_old, log-std included
            abs_tol = 1e-7 if exact else 1e-6
            assert math.isclose(ours[tag], theirs[tag], rel_tol=1e-5, abs_tol=abs_tol), (tag, ours[tag], theirs[tag])
        for ours_p, lone_p in zip(stack.agents[k].actor.parameters(), lone.actor.parameters()):
            # By default a one-minibatch epoch sums its rows in place, the lone run in its permutation's
            # order: Adam's g/(|g|+eps) turns that rounding of a near-zero coordinate into up to ~1e-3
            # of a step (lr 1e-3) per epoch; measured after 20 epochs: 2.0e-6. A wrong gradient moves
            # a weight by steps (~1e-3).
            torch.testing.assert_close(ours_p, lone_p, rtol=1e-5, atol=1e-6 if exact else 1e-5)


@pytest.mark.parametrize("preset", ["ppo_cartpole", "a2c_cartpole"])
@pytest.mark.parametrize("exact", [False, True])
def test_one_minibatch_epochs_draw_each_seeds_permutation_as_alone(preset, exact):
    """PPO's 256-of-256 epochs and A2C's critic step are one minibatch of the whole batch: by default
    summed in place, yet every epoch's permutation is drawn, so after the first update each seed's
    random stream is exactly where its lone run's (torch's global generator) is."""
    cfg = _cfg(preset, f"stack_exact={str(exact).lower()}")
    stack = build_stacked(cfg, (0, 1))
    training = StackedTraining(stack)
    training.collector.collect(stack.act, stack.value)
    batch = stack.prepare_batch(training.collector.buffer)
    assert cfg.agent != "ppo" or cfg.ppo.minibatch_size >= batch.rows
    stack.update(batch)
    training.collector.close()
    for k, seed in enumerate((0, 1)):
        lone = build_agent(_cfg(preset, f"seed={seed}"))
        trainer = Trainer(lone, run_dir=None, progress=False)
        trainer.collector.collect(lone.act, lone.value)
        before = torch.get_rng_state()
        lone.update(lone.prepare_batch(trainer.collector.buffer))
        trainer.close()
        assert not torch.equal(before, torch.get_rng_state())  # the lone update draws
        assert torch.equal(stack.generators[k].get_state(), torch.get_rng_state())


@pytest.mark.parametrize(
    "preset,overrides", [("ppo_cartpole", ()), ("ppo_cartpole", ("ppo.minibatch_size=62",)), ("ppo_pendulum", ())], ids=str
)
def test_no_seed_influences_another(preset, overrides):
    """Seeds whose batches differ in length (CartPole's reset steps) and so in their number of
    minibatches (``ppo.minibatch_size=62``: 4 for 248 rows or fewer, 5 above) included."""
    runs = []
    for seeds in ((0, 1), (0, 5)):
        stack = build_stacked(_cfg(preset, "total_steps=768", *overrides), seeds)
        StackedTraining(stack).train(evaluate=False)
        runs.append(stack)
    (a, b) = runs
    assert _states_equal(a.agents[0].actor, b.agents[0].actor) and _states_equal(a.agents[0].critic, b.agents[0].critic)
    assert torch.equal(a.generators[0].get_state(), b.generators[0].get_state())
    assert not _states_equal(a.agents[1].actor, b.agents[1].actor)
    if overrides:  # seeds 0 and 1 took different numbers of Adam steps, each its own count
        steps = [int(a.actor_optimizer.state[leaf]["step"]) for leaf in a.actor.leaves()]
        assert steps[0] != steps[1]


def test_target_kl_stops_a_seed_with_its_tensors_untouched():
    # target_kl 1e-12: every seed steps on its first minibatch (KL 0) and stops at its second.
    # The lone run stops there too: its weights and Adam state are the stack's seed's.
    stack, _, _, stats, lone_runs = _first_update("ppo_cartpole", overrides=["ppo.target_kl=1e-12"])
    for k, (lone, _, _, lone_stats) in enumerate(lone_runs):
        steps = {int(stack.actor_optimizer.state[stack.actor.leaves()[k]]["step"])}
        lone_steps = {int(lone.actor_optimizer.state[p]["step"]) for p in lone.actor_parameters}
        assert steps == lone_steps == {1}
        assert stats[k].actor_kl_max > 1e-12 and lone_stats.actor_kl_max > 1e-12
        for ours, theirs in zip(stack.agents[k].actor.parameters(), lone.actor.parameters()):
            # one Adam step of lr 1e-3, the batch summed in place (above): measured 1.8e-7
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_non_finite_update_rolls_back_only_its_seed():
    runs = []
    for poison in (False, True):
        stack = build_stacked(_cfg("ppo_cartpole"), (0, 1))
        training = StackedTraining(stack)
        before = [p.detach().clone() for p in stack.agents[1].actor.parameters()]
        training.collector.collect(stack.act, stack.value)
        batch = stack.prepare_batch(training.collector.buffer)
        if poison:
            batch.advantages[1, 3] = math.nan
        stats = stack.update(batch)
        training.collector.close()
        runs.append((stack, stats, before))
    (clean, clean_stats, _), (poisoned, stats, before) = runs
    assert not stats[0].skipped and stats[1].skipped and not clean_stats[1].skipped
    assert all(torch.equal(p, q) for p, q in zip(poisoned.agents[1].actor.parameters(), before))
    assert poisoned.actor.leaves()[1] not in poisoned.actor_optimizer.state
    assert _states_equal(clean.agents[0].actor, poisoned.agents[0].actor)


def test_seed_state_dicts_load_into_lone_agents():
    stack = build_stacked(_cfg("a2c_cartpole", "total_steps=256"), (2, 4))
    StackedTraining(stack).train(evaluate=False)
    for k, state in enumerate(stack.seed_state_dicts()):
        lone = build_agent(_cfg("a2c_cartpole", "seed=9"))
        lone.load_state_dict(state)
        assert _states_equal(lone.actor, stack.agents[k].actor)
        assert lone.updates_done == stack.updates_done == 2
        flat_state = stack.actor_optimizer.state[stack.actor.leaves()[k]]
        for i, p in enumerate(lone.actor_parameters):
            assert torch.equal(lone.actor_optimizer.state[p]["exp_avg"], stack.actor.flat.split(flat_state["exp_avg"])[i])
            assert int(lone.actor_optimizer.state[p]["step"]) == int(flat_state["step"]) == 2


def test_train_stacked_returns_one_evaluated_summary_per_seed():
    summaries = train_stacked(_cfg("ppo_cartpole"), [0, 1], total_steps=256)
    assert [s["seed"] for s in summaries] == [0, 1]
    assert all(s["total_steps"] == 256 and s["eval_episodes"] == 1 and s["eval_return_mean"] > 0 for s in summaries)


@pytest.mark.parametrize(
    "preset,overrides,message",
    [
        ("a2c_cartpole", ["actor.optim={name: lbfgs, lr: 1.0}"], "actor.optim: invalid value .*closure"),  # as alone
        ("ppo_cartpole", ["rollout.n_steps=0"], "rollout.n_steps"),
    ],
)
def test_unsupported_configs_are_refused_with_one_line(preset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_stacked(load_config(preset, overrides), [0, 1])


def test_seed_lists_are_checked():
    with pytest.raises(ConfigError, match="distinct"):
        build_stacked(_cfg("ppo_cartpole"), [1, 1])


@pytest.mark.parametrize("preset", ["ppo_cartpole", "a2c_cartpole"])
def test_scheduled_entropy_coef_follows_the_lone_schedule(preset):
    """The stack reads its coefficients at its own update count (not a lone agent's, which only
    advances at checkpoints): on the 4th of 4 updates a linear entropy_coef 0.01 is at 0.0025, as alone."""
    first = _cfg(preset)
    overrides = ("entropy_coef={value: 0.01, name: linear}", f"total_steps={4 * first.env.num_envs * first.rollout.n_steps}")
    training = StackedTraining(build_stacked(_cfg(preset, *overrides), (0,)))
    training.train(evaluate=False)
    lone = build_agent(_cfg(preset, *overrides))
    trainer = Trainer(lone, run_dir=None, progress=False)
    for _ in range(4):
        trainer.collector.collect(lone.act, lone.value)
        lone_stats = lone.update(lone.prepare_batch(trainer.collector.buffer))
    trainer.close()
    assert training.learner.updates_done == 4
    ours, theirs = training.last_stats[0].scalars(), lone_stats.scalars()
    assert ours["schedule/entropy_coef"] == pytest.approx(theirs["schedule/entropy_coef"]) == pytest.approx(0.0025)


@pytest.mark.parametrize("poisoned", ["actor", "critic"])
def test_a2c_single_backward_fails_per_seed_as_the_two_lone_steps(poisoned):
    """A2C's actor step and one-step critic fit share one backward. A seed whose actor gradient is
    non-finite steps nothing and, as alone (its update ends before the critic's permutation),
    leaves its generator where it was; a non-finite critic gradient rolls the seed back after its
    permutation was drawn. The other seed is untouched."""
    stack = build_stacked(_cfg("a2c_cartpole"), (0, 1))
    training = StackedTraining(stack)
    training.collector.collect(stack.act, stack.value)
    batch = stack.prepare_batch(training.collector.buffer)
    network = stack.actor if poisoned == "actor" else stack.critic
    with torch.no_grad():
        network.leaves()[1][0] = math.nan  # seed 1's first weight: its forward, loss and gradient NaN
    before = [p.detach().clone() for p in (*stack.agents[1].actor.parameters(), *stack.agents[1].critic.parameters())]
    generator = stack.generators[1].get_state()
    expected = torch.Generator().manual_seed(0)
    expected.set_state(generator)
    torch.randperm(batch.sizes[1], generator=expected)  # the critic's permutation, drawn alone
    stats = stack.update(batch)
    training.collector.close()
    assert stats[1].skipped and not stats[0].skipped
    after = [p.detach() for p in (*stack.agents[1].actor.parameters(), *stack.agents[1].critic.parameters())]
    for p, q in zip(after, before):  # the poisoned weight included
        torch.testing.assert_close(p, q, rtol=0, atol=0, equal_nan=True)
    drawn = expected.get_state() if poisoned == "critic" else generator
    assert torch.equal(stack.generators[1].get_state(), drawn)
