"""Resuming a stack (``rlopt train --resume DIR`` of ``rlopt train --seeds``): every seed from its own
checkpoint of the newest env step that all seeds completed, exactly where the stack stopped.

Per seed (``DIR/seed_<k>/checkpoints/step_<n>.pt`` + ``.env``, written by
:meth:`rlopt.stacked.training.StackedTraining.save_checkpoints`): its lone ``Agent.state_dict``
(weights -- views of the seed's flat leaf, so loading them fills the stack --, normaliser and
the schedules), the stacked optimizers' per-seed state (:func:`load_optimizer_state`, the inverse
of ``StackedLearner.sync_agents``; with the per-seed update, the agent's own optimizers hold it),
its action generator, its collector and its pickled envs (the lone envs hold the state between
rollouts). A seed whose newer checkpoint was written before a SIGKILL stopped the others
restarts from the common step like them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from rlopt.checkpoint import load_checkpoint, load_envs, set_rng_state
from rlopt.errors import ConfigError
from rlopt.optimizers.torch_optim import IMPLEMENTATION_OPTIONS
from rlopt.run_files import CHECKPOINT_FORMAT_VERSION, check_resume_config, list_checkpoints, saved_total_steps


def common_checkpoint_step(seed_dirs: list[Path]) -> int | None:
    """The newest env step every seed dir has a complete checkpoint of (None: none in common)."""
    steps = [{int(p.stem.removeprefix("step_")) for p in list_checkpoints(d)} for d in seed_dirs]
    common = set.intersection(*steps) if steps else set()
    return max(common) if common else None


def load_optimizer_state(network: Any, optimizer: torch.optim.Optimizer, k: int, saved: dict[str, Any]) -> None:
    """Seed ``k``'s lone optimizer ``state_dict`` ``saved`` (one param group, state per parameter in
    the network's order) into the stacked ``optimizer``'s state of seed ``k``'s flat leaf; the
    padding between segments is 0, as a never-stepped moment of a zero gradient is."""
    leaf = network.leaves()[k]
    per_param = [saved["state"].get(i) for i in range(len(network.flat.shapes))]
    if all(s is None for s in per_param):
        optimizer.state.pop(leaf, None)
        return
    flat_state: dict[str, Any] = {}
    for key, first in per_param[0].items():
        if isinstance(first, torch.Tensor) and first.shape == network.flat.shapes[0]:
            flat = torch.zeros_like(leaf.detach())
            for state, (start, end) in zip(per_param, network.flat.segments):
                flat[start:end] = state[key].reshape(-1)
            flat_state[key] = flat
        else:  # a count (Adam's step): the same for every parameter of the seed
            flat_state[key] = first.clone() if isinstance(first, torch.Tensor) else first
    optimizer.state[leaf] = flat_state


def restore_stack(training: Any, seed_dirs: list[Path], step: int) -> None:
    """Load every seed's ``step_<step>.pt`` into ``training`` (a ``StackedTraining`` not yet run);
    ConfigError naming the file for an unreadable checkpoint or an edited config."""
    learner, collector = training.learner, training.collector
    states = []
    for k, seed_dir in enumerate(seed_dirs):
        path = seed_dir / "checkpoints" / f"step_{step:012d}.pt"
        try:
            state = load_checkpoint(path)
        except Exception as err:
            raise ConfigError(f"--resume: {path} is not a readable rlopt checkpoint ({type(err).__name__})") from None
        if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_FORMAT_VERSION or "stacked" not in state:
            raise ConfigError(f"--resume: {path} is no checkpoint of a stacked run")
        check_resume_config(path, state.get("config"), learner.agents[k].cfg)
        states.append(state)
    pairs = []  # the stacked optimizers (per-seed updates: none, each agent's own are loaded with its state)
    if learner.per_seed is None:
        pairs.append(("actor", learner.actor, learner.actor_optimizer, learner.actor_scheduler))
        if learner.critic is not None:
            pairs.append(("critic", learner.critic, learner.critic_optimizer, learner.critic_scheduler))
    for k, state in enumerate(states):
        agent_state = state["agent"]
        learner.agents[k].load_state_dict(agent_state)  # the weights land in seed k's flat leaves (per-seed: all its state)
        for name, network, optimizer, _ in pairs:
            load_optimizer_state(network, optimizer, k, agent_state[f"{name}_optimizer"])
        learner.generators[k].set_state(state["stacked"]["generator"])
        envs = load_envs(path := seed_dirs[k] / "checkpoints" / f"step_{step:012d}.pt")
        if envs is None:
            raise ConfigError(f"--resume: {path.with_suffix('.env')} is missing; the stack cannot continue exactly")
        seed_collector = collector.collectors[k]
        seed_collector.envs.close()
        seed_collector.envs = envs
        training.skipped_updates[k] = int(state["skipped_updates"])
        training.consecutive_faults[k] = int(state["consecutive_faults"])
        training.recent_returns[k].clear()
        training.recent_returns[k].extend(state["recent_returns"])
        learner.frozen[k] = training.consecutive_faults[k] >= learner.cfg.health.max_consecutive_faults
        training.best_eval_return[k] = float(state.get("best_eval_return", -math.inf))
        training.best_eval_step[k] = None if state.get("best_eval_step") is None else int(state["best_eval_step"])
    collector.load_state_dict([s["collector"] for s in states])
    first = states[0]["agent"]
    for name, _, optimizer, scheduler in pairs:
        saved = first[f"{name}_optimizer"]["param_groups"][0]
        group = {key: value for key, value in saved.items() if key not in ("params", *IMPLEMENTATION_OPTIONS)}
        optimizer.param_groups[0].update(group)
        scheduler.load_state_dict(first[f"{name}_scheduler"])
    learner.updates_done = int(first["updates_done"])
    set_rng_state(states[0]["rng"])
    training.resumed_total_steps = saved_total_steps(states[0].get("config"))
    k_seeds = learner.num_seeds
    training.env_steps = step
    training.wall_seconds = float(states[0]["wall_seconds"]) * k_seeds
    training.learn_seconds = float(states[0]["learn_seconds"]) * k_seeds


def extend_stack(learner: Any, previous_total: int, step: int) -> str:
    """After a resume to another ``cfg.total_steps`` (``rlopt train --resume DIR --total-steps N``):
    re-fit every schedule -- the stack's lr schedulers and each seed's own, so its checkpoint is its
    lone run's -- to the new run length as a lone extension does
    (:func:`rlopt.coefficients.refit_run_length`); the line saying what changed ("" when unchanged)."""
    import dataclasses

    from rlopt.coefficients import refit_run_length, refit_schedules

    cfg = learner.cfg
    if previous_total == cfg.total_steps:
        return ""
    before = dataclasses.replace(cfg, total_steps=previous_total).num_updates
    for agent in learner.agents:
        agent.updates_done = learner.updates_done
        changed = refit_run_length(agent, cfg.num_updates, before)
    refit_schedules({"actor lr": learner.actor_scheduler, "critic lr": learner.critic_scheduler}, {},
                    learner.updates_done, cfg.num_updates, before)  # fmt: skip
    what = "; ".join([*changed, "every other schedule unchanged"]) if changed else "no schedule depends on the run length"
    return (f"rlopt: total_steps {previous_total:,} -> {cfg.total_steps:,} ({before:,} -> {cfg.num_updates:,} updates), "
            f"continuing from {step:,} env steps (update {learner.updates_done:,}): {what}")  # fmt: skip
