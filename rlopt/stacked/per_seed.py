"""Per-seed updates inside a stack: the rollout stacked, each seed's update its lone agent's own.

What has no stacked update runs this way instead of being refused (issue 17: "refused with one line
or run per seed"): ACKTR (its K-FAC solver and critic keep Kronecker factors of each lone layer),
optimizers whose rule is not elementwise on a flat vector (LBFGS's line search over all tensors,
K-FAC, Adafactor's row and column factors, Muon's orthogonalised matrices, SparseAdam), and the
trust-region metrics and solvers that need the lone policy as a function (all but
:data:`rlopt.stacked.trust_region.STACKED_METRICS` with the ``cg`` solver).

Seed ``k``'s update is ``agents[k].update`` on its own rows of the padded batch, which is exactly
its lone run's update: its parameters are views of the seed's flat leaf (the step lands in the
stack), its optimizers, schedules and statistics are its own, and the random numbers the update
draws (K-FAC's sampled Fisher, minibatch permutations) come from its own generator, swapped in as
torch's global CPU generator for the call. All or nothing per seed, as the lone trainer does it
(:class:`rlopt.rollback.WeightsSnapshot` of the agent's networks and optimizers). The rollout, the
advantages and the evaluations stay stacked: the gain over lone runs is the rollout's.
"""

from __future__ import annotations

from typing import Any

import torch

from rlopt.config import Config
from rlopt.learner import UpdateStats
from rlopt.rollback import WeightsSnapshot
from rlopt.rollout import RolloutBatch
from rlopt.stacked.batch import FIELDS, StackedBatch
from rlopt.stacked.trust_region import TRUST_REGION_AGENTS, trust_region_unstackable

ELEMENTWISE_RULES = frozenset(
    {"sgd", "momentum", "nesterov", "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "rprop", "adagrad",
     "adadelta", "asgd"}
)  # fmt: skip
"""torch.optim names whose rule acts element by element with per-tensor counts, so one optimizer over
the K seeds' flat leaves is exactly K lone ones (:mod:`rlopt.stacked.networks`). Any other name
(including torch optimizers added later) gets the per-seed update."""


def per_seed_reason(cfg: Config) -> str | None:
    """Why ``cfg``'s update cannot run on the stacked parameters (then each seed runs its lone
    update inside the stack), or None when it has a stacked update."""
    if cfg.agent == "acktr":
        return "agent acktr (its K-FAC solver and critic keep factors of each lone layer)"
    for key, spec in (("actor.optim", cfg.actor.optim), ("critic.optim", cfg.critic.optim)):
        name = str(dict(spec).get("name", "")).lower()
        if key == "actor.optim" and cfg.agent in TRUST_REGION_AGENTS and name in ("", "trust_region"):
            reason = trust_region_unstackable(dict(spec))  # metric and solver
            if reason is not None:
                return reason
        elif name and name not in ELEMENTWISE_RULES:
            return f"{key}.name: {name} (not elementwise on a flat vector)"
    return None


def seed_batch(batch: StackedBatch, k: int) -> RolloutBatch:
    """Seed ``k``'s lone ``RolloutBatch``: its ``B_k`` real rows, in the lone batch's order."""
    size = batch.sizes[k]
    return RolloutBatch(**{name: getattr(batch, name)[k, :size] for name in FIELDS})


def build_seed_snapshots(agents: list[Any]) -> list[WeightsSnapshot]:
    """The lone trainer's all-or-nothing snapshot of each seed's networks and optimizers."""
    return [WeightsSnapshot(*agent.trainables()) for agent in agents]


def per_seed_update(learner: Any, batch: StackedBatch) -> list[UpdateStats]:
    """One update of every seed, each by its lone agent (``Agent.update``, which also steps the
    agent's own schedules); a seed that stopped learning (``frozen``) only advances its schedules."""
    stats = []
    global_state = torch.get_rng_state()
    try:
        for k, (agent, generator, snapshot) in enumerate(zip(learner.agents, learner.generators, learner.seed_snapshots)):
            if learner.frozen[k]:
                agent.step_schedules()
                stats.append(UpdateStats(skipped=True))
                continue
            torch.set_rng_state(generator.get_state())
            snapshot.take()
            seed_stats = agent.update(seed_batch(batch, k))
            if seed_stats.skipped:
                snapshot.restore()
            generator.set_state(torch.get_rng_state())
            stats.append(seed_stats)
    finally:
        torch.set_rng_state(global_state)
    learner.updates_done += 1
    return stats
