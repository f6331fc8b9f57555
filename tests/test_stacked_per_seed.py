"""The per-seed update inside a stack (issue 17: ACKTR's K-FAC solver and critic per seed, and every
optimizer, metric or solver without a stacked step): the rollout stacked, each seed's update its
lone agent's own -- bit for bit its lone run, rolled back per seed."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from agents import build_agent
from agents.stacked import build_stacked
from rlopt.config import load_config
from rlopt.stacked import StackedTraining
from rlopt.stacked.per_seed import per_seed_reason
from rlopt.trainer import Trainer

ADAFACTOR = "{name: adafactor, lr: 0.01, eps: [null, 0.001]}"
PER_SEED = {  # preset, overrides: a few hundred env steps per update
    "acktr_cartpole": ("acktr_cartpole", ["rollout.n_steps=8"]),
    "acktr_pendulum": ("acktr_pendulum", ["rollout.n_steps=64"]),
    "ppo_adafactor": ("ppo_cartpole", ["rollout.n_steps=32", "ppo.epochs=2", f"actor.optim={ADAFACTOR}"]),
    "a2c_kfac_critic": ("a2c_cartpole", ["critic.optim={name: kfac, lr: 0.25}", "critic.max_grad_norm=null"]),
    "trpo_gauss_newton": ("trpo_cartpole", ["rollout.n_steps=32", "actor.optim.metric=gauss_newton"]),
    "npg_diagonal": ("npg_cartpole", ["rollout.n_steps=32", "actor.optim.solver=diagonal"]),
}


def _cfg(case: str, *extra: str):
    preset, overrides = PER_SEED[case]
    return load_config(preset, [*overrides, "eval.episodes=1", *extra])


_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


def _equal(a, b) -> bool:
    """Nested states (dicts, lists, tensors, numbers) equal bit for bit."""
    if isinstance(a, torch.Tensor):  # NaN where the other has NaN (a poisoned weight, kept) counts as equal
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        if same and a.dtype in _BITS:  # bit for bit (-0.0 is not 0.0)
            return bool(((a.view(_BITS[a.dtype]) == b.view(_BITS[a.dtype])) | (a.isnan() & b.isnan())).all())
        return same and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize(
    "preset,overrides,reason",
    [
        ("acktr_cartpole", [], "agent acktr"),
        ("ppo_cartpole", [f"actor.optim={ADAFACTOR}"], "actor.optim.name: adafactor"),
        ("a2c_cartpole", ["critic.optim={name: kfac, lr: 0.25}"], "critic.optim.name: kfac"),
        ("trpo_cartpole", ["actor.optim.metric=empirical_fisher"], "actor.optim.metric: 'empirical_fisher'"),
        ("npg_cartpole", ["actor.optim.solver=diagonal"], "actor.optim.solver: 'diagonal'"),
        ("ppo_cartpole", [], None),
        ("a2c_cartpole", ["actor.optim={name: rmsprop, lr: 0.001}"], None),
        ("trpo_cartpole", ["actor.optim.metric=hessian"], None),
    ],
)
def test_what_has_no_stacked_step_gets_the_per_seed_update(preset, overrides, reason):
    found = per_seed_reason(load_config(preset, overrides))
    assert found is None if reason is None else reason in found


def _lone_updates(cfg, seed: int, updates: int):
    seed_cfg = copy.deepcopy(cfg)
    seed_cfg.seed = seed
    lone = build_agent(seed_cfg)
    trainer = Trainer(lone, run_dir=None, progress=False)
    stats = []
    for _ in range(updates):
        trainer.collector.collect(lone.act, lone.value)
        stats.append(lone.update(lone.prepare_batch(trainer.collector.buffer)))
    trainer.close()
    return lone, stats, torch.get_rng_state()


@pytest.mark.parametrize("case", list(PER_SEED))
def test_each_seed_is_its_lone_run_bit_for_bit(case):
    """Three updates of a 2-seed stack in the default mode (seeds that update alone always act
    exactly): every seed's weights, optimizer and scheduler states, statistics and random stream
    are its lone run's."""
    cfg = _cfg(case)
    seeds, updates = (0, 3), 3
    stack = build_stacked(cfg, seeds)
    assert stack.per_seed is not None and stack.actor_optimizer is None
    training = StackedTraining(stack)
    stacked_stats = []
    for _ in range(updates):
        training.collector.collect(stack.act, stack.value)
        stacked_stats.append(stack.update(stack.prepare_batch(training.collector.buffer)))
    training.collector.close()
    states = stack.seed_state_dicts()
    assert stack.updates_done == updates
    for k, seed in enumerate(seeds):
        lone, lone_stats, lone_rng = _lone_updates(cfg, seed, updates)
        assert _equal(states[k], lone.state_dict())  # weights, optimizers (K-FAC factors), schedules, count
        for ours, theirs in zip(stacked_stats, lone_stats):
            assert _equal(ours[k].scalars(), theirs.scalars())
        assert torch.equal(stack.generators[k].get_state(), lone_rng)


def test_no_seed_influences_another():
    runs = []
    for seeds in ((0, 1), (0, 5)):
        stack = build_stacked(_cfg("acktr_cartpole", "total_steps=384"), seeds)
        StackedTraining(stack).train(evaluate=False)
        runs.append(stack.seed_state_dicts())
    assert _equal(runs[0][0], runs[1][0])
    assert not _equal(runs[0][1]["actor"], runs[1][1]["actor"])


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step:UserWarning")  # seed 1's skipped first update, as alone
def test_a_non_finite_update_rolls_back_only_its_seed():
    """Seed 1's critic is poisoned after its rollout: its actor step is taken, then its critic fit
    is non-finite, so its update is skipped and its actor and optimizer states are put back, as the
    lone trainer does; seed 0 ends as in an unpoisoned stack."""
    runs = []
    for poison in (False, True):
        stack = build_stacked(_cfg("acktr_cartpole"), (0, 1))
        training = StackedTraining(stack)
        training.collector.collect(stack.act, stack.value)
        batch = stack.prepare_batch(training.collector.buffer)
        if poison:
            with torch.no_grad():
                next(stack.agents[1].critic.parameters()).view(-1)[0] = math.nan
        before = stack.seed_state_dicts()
        runs.append((stack.update(batch), before, stack.seed_state_dicts()))
        training.collector.close()
    (clean, _, clean_after), (stats, before, after) = runs
    assert stats[1].skipped and not stats[0].skipped and not clean[1].skipped
    for name in ("actor", "critic", "actor_optimizer", "critic_optimizer"):
        assert _equal(after[1][name], before[1][name]), name
    assert after[1]["updates_done"] == 1  # the schedules advance over a skipped update, as alone
    assert _equal(after[0], clean_after[0])


def test_the_global_random_stream_is_left_as_it_was():
    stack = build_stacked(_cfg("acktr_cartpole"), (0, 1))
    training = StackedTraining(stack)
    training.collector.collect(stack.act, stack.value)
    batch = stack.prepare_batch(training.collector.buffer)
    before = torch.get_rng_state()
    generators = [g.get_state() for g in stack.generators]
    stack.update(batch)
    training.collector.close()
    assert torch.equal(torch.get_rng_state(), before)
    assert all(not torch.equal(g.get_state(), s) for g, s in zip(stack.generators, generators))  # K-FAC's sampled Fisher


def test_the_cli_says_that_the_seeds_update_alone(tmp_path, capsys):
    from rlopt.cli import main

    argv = ["train", "acktr_cartpole", "rollout.n_steps=8", "total_steps=256", "eval.episodes=1"]
    assert main([*argv, "--seeds", "0,1", "--run-dir", str(tmp_path / "stack"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("each seed's update runs alone: agent acktr") == 1
    assert (tmp_path / "stack" / "seed_1" / "summary.json").is_file()
