"""K seeds of one config learning together (issue 17): REINFORCE, A2C, PPO, NPG and TRPO on stacked networks.

Built from K lone agents (``agents.stacked.build_stacked`` builds each with ``agents.build_agent``:
seed ``k``'s initial weights and random stream are exactly its lone run's), it runs their update on ``[K, ...]`` tensors with the pure
pieces the agents use -- the agent's own ``compute_targets`` hook, :mod:`rlopt.losses` (per-seed
``[K]`` losses; one backward of their sum gives each seed its own gradient), per-seed clipping
(:mod:`rlopt.stacked.clipping`) and one torch.optim optimizer and LR schedule per network over all
seeds' leaves (exactly per seed: :mod:`rlopt.stacked.networks`). Per seed: minibatch permutations
from its own generator, PPO's ``target_kl`` stop (the stopped seed's tensors stay untouched), and
a non-finite update rolls back that seed alone. Update steps: :mod:`rlopt.stacked.update`; NPG and
TRPO's actor step is the lone ``TrustRegion``'s per seed (:mod:`rlopt.stacked.trust_region`), its
hyper-parameters and per-seed counts kept in a ``TrustRegion`` over the K leaves that never steps itself.
What has no stacked update (ACKTR, optimizers that are not elementwise, the trust-region metrics
and solvers that need the lone policy) runs each seed's lone update inside the stack
(:mod:`rlopt.stacked.per_seed`; ``per_seed`` says why).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rlopt.config import Config
from rlopt.errors import ConfigError
from rlopt.coefficients import param_group_values
from rlopt.optim import build_optimizer
from rlopt.optimizers.torch_optim import IMPLEMENTATION_OPTIONS, fused_spec
from rlopt.schedules import build_lr_scheduler, build_schedule
from rlopt.stacked.batch import StackedBatch, compute_targets_stacked, stack_rollouts
from rlopt.stacked.networks import StackedActor, StackedCritic
from rlopt.stacked.per_seed import build_seed_snapshots, per_seed_reason, per_seed_update
from rlopt.stacked.random import sample_per_seed
from rlopt.stacked.snapshot import SeedSnapshots
from rlopt.stacked.trust_region import TRUST_REGION_AGENTS
from rlopt.trust_region import TrustRegion
from rlopt.trust_region.build import build_trust_region

SUPPORTED_AGENTS = ("reinforce", "a2c", "ppo", *TRUST_REGION_AGENTS, "acktr")
"""Agents a stack trains (ACKTR with the per-seed update: :mod:`rlopt.stacked.per_seed`)."""
MAX_SEEDS = 256
"""At most this many seeds in one stack (each seed builds its own env and networks)."""


def check_stackable(cfg: Config, seeds: Sequence[int]) -> None:
    """One-line ConfigError for what a stack does not run: an unknown agent, a bad seed list."""
    if cfg.agent not in SUPPORTED_AGENTS:
        raise ConfigError(f"agent: {cfg.agent} has no stacked update yet; stacked seeds support {', '.join(SUPPORTED_AGENTS)}")
    if not seeds:
        raise ConfigError("seeds: at least one seed is needed")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"seeds: {len(seeds)} seeds in one stack, at most {MAX_SEEDS}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: must be distinct, got {list(seeds)}")


class StackedLearner:
    """K lone agents (same config but the seed) updated together; ``agents[k]`` stays a usable lone
    agent (``predict``, evaluation, ``state_dict`` after :meth:`sync_agents`)."""

    def __init__(self, agents: Sequence[Any], generators: Sequence[torch.Generator]) -> None:
        """``agents[k]``: seed ``k``'s lone agent (an ``agents.base.Agent``; the library layer does not
        import the agents), ``generators[k]``: its random stream, where its lone run draws next."""
        if len(agents) != len(generators):
            raise ValueError(f"{len(agents)} agents for {len(generators)} generators")
        self.agents = list(agents)
        self.generators = list(generators)
        self.cfg = cfg = agents[0].cfg
        check_stackable(cfg, [a.cfg.seed for a in agents])
        self.device = agents[0].device
        self.per_seed = per_seed_reason(cfg)
        """Why each seed runs its lone update inside the stack (:mod:`rlopt.stacked.per_seed`), or None."""
        # Seeds that update alone also act exactly (whatever stack_exact says): each is then its lone run bit for bit,
        # and the fast kernels save little next to the lone updates (ACKTR CartPole K=10: 2.5 against 2.4 s per seed).
        exact = bool(cfg.stack_exact) or self.per_seed is not None
        # A trust-region actor's metric may differentiate twice (the Hessian): not through _TanhMLP's one node.
        self.actor = StackedActor([a.actor for a in agents], exact, one_node_backward=cfg.agent not in TRUST_REGION_AGENTS)
        self.critic = StackedCritic([a.critic for a in agents], exact) if agents[0].critic is not None else None
        self.actor_optimizer: torch.optim.Optimizer | None = None
        self.actor_scheduler = self.critic_optimizer = self.critic_scheduler = None
        if self.per_seed is None:
            self._build_optimizers(cfg, agents[0])
        networks = [n for n in (self.actor, self.critic) if n is not None]
        self.snapshots: SeedSnapshots | None = None
        """Each seed's tensors in the stacked optimizers, for a per-seed rollback (the stacked update's)."""
        self.seed_snapshots = []
        """Each seed's lone all-or-nothing snapshot (the per-seed update's)."""
        if self.per_seed is None:
            self.snapshots = SeedSnapshots(
                [[n.leaves()[k] for n in networks] for k in range(len(agents))],
                [o for o in (self.actor_optimizer, self.critic_optimizer) if o is not None],
            )
        else:
            self.seed_snapshots = build_seed_snapshots(self.agents)
        self.updates_done = 0
        self._rollout_stack: tuple[Any, Any] | None = None
        self.frozen = [False] * len(agents)
        """Seeds that stopped learning (too many faults in a row): they collect but never step."""

    def _build_optimizers(self, cfg: Config, agent: Any) -> None:
        """One optimizer and LR schedule per network over the K flat leaves (the stacked update's)."""
        horizon = cfg.num_updates
        if cfg.agent in TRUST_REGION_AGENTS:  # the lone TrustRegion over the K leaves: its param group and per-seed counts
            self.actor_optimizer = build_trust_region(self.actor.leaves(), dict(cfg.actor.optim), horizon)
        else:
            self.actor_optimizer = build_optimizer(self.actor.leaves(), self._optimizer_spec(cfg.actor.optim), key="actor.optim")
        self.actor_scheduler = build_lr_scheduler(
            self.actor_optimizer, build_schedule(cfg.actor.schedule or None, horizon, key="actor.schedule"),
            param_group_values(agent.coefficients, "actor"),  # max_kl, scheduled like lr
        )
        if self.critic is not None:
            self.critic_optimizer = build_optimizer(self.critic.leaves(), self._optimizer_spec(cfg.critic.optim), key="critic.optim")
            self.critic_scheduler = build_lr_scheduler(
                self.critic_optimizer, build_schedule(cfg.critic.schedule or None, horizon, key="critic.schedule")
            )

    @property
    def num_seeds(self) -> int:
        return len(self.agents)

    @property
    def seeds(self) -> list[int]:
        return [a.cfg.seed for a in self.agents]

    # ----------------------------------------------------------------- acting
    def _rollout_params(self) -> tuple[Any, Any]:
        """The layers the rollout acts with, stacked and bound once per rollout (dropped by :meth:`update`)."""
        if self._rollout_stack is None:
            with torch.no_grad():
                self._rollout_stack = (self.actor.bind(), None if self.critic is None else self.critic.bind())
        return self._rollout_stack

    @torch.inference_mode()
    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One rollout step of every seed: ``obs`` ``[K, N, obs_dim]`` → actions, log-probs, values."""
        actor_params, critic_params = self._rollout_params()
        dist = self.actor(obs, actor_params)
        actions = sample_per_seed(dist, self.generators)
        values = self.critic(obs, critic_params) if self.critic is not None else torch.zeros(obs.shape[:2], device=obs.device)
        return actions, dist.log_prob(actions), values

    @torch.inference_mode()
    def value(self, obs: Tensor) -> Tensor:
        """V(s) of every seed, ``[K, N]`` (zeros without a critic)."""
        if self.critic is None:
            return torch.zeros(obs.shape[:2], device=obs.device)
        return self.critic(obs, self._rollout_params()[1])

    # ----------------------------------------------------------------- the update
    def _optimizer_spec(self, spec: Any) -> dict[str, Any]:
        """A network's optimizer spec for the K flat leaves: fused where torch has the kernel, unless
        ``stack_exact`` (the lone runs' foreach path, bit for bit); the rule is the same either way."""
        return dict(spec) if self.cfg.stack_exact else fused_spec(spec, self.device)

    def prepare_batch(self, storage: Any) -> StackedBatch:
        """Advantages and returns of every seed from the agent's ``compute_targets`` hook (run once
        on the seeds' envs side by side), written into ``storage``; the padded batch."""
        advantages, returns = compute_targets_stacked(self.agents[0].compute_targets, storage)
        storage.advantages.copy_(advantages)
        storage.returns.copy_(returns)
        return stack_rollouts(storage)

    def coefficient(self, key: str) -> float:
        """The scheduled coefficient ``key`` at the current update (the same for every seed)."""
        return self.agents[0].coefficients[key].value(self.updates_done)

    def update(self, batch: StackedBatch) -> list[Any]:
        """One update of every seed; returns each seed's ``UpdateStats`` (see :mod:`rlopt.stacked.update`)."""
        from rlopt.stacked.update import stacked_update

        self._rollout_stack = None  # the weights move: the next rollout stacks them again
        return stacked_update(self, batch) if self.per_seed is None else per_seed_update(self, batch)

    def step_schedules(self) -> None:
        """Advance the shared LR schedules by one update (also over a skipped one, as alone)."""
        self.updates_done += 1
        self.actor_scheduler.step()
        if self.critic_scheduler is not None:
            self.critic_scheduler.step()

    # ----------------------------------------------------------------- per-seed state
    def sync_agents(self) -> None:
        """Copy the stacked optimizers' per-seed states, the schedules and the update count into
        each lone agent, so that ``agents[k].state_dict()`` is exactly its lone run's state (with the
        per-seed update the agents' own states already are)."""
        if self.per_seed is not None:
            return
        pairs = [(self.actor, self.actor_optimizer, self.actor_scheduler, "actor")]
        if self.critic is not None:
            pairs.append((self.critic, self.critic_optimizer, self.critic_scheduler, "critic"))
        for k, agent in enumerate(self.agents):
            agent.updates_done = self.updates_done
            for network, optimizer, scheduler, name in pairs:
                own = getattr(agent, f"{name}_optimizer")
                own.state.clear()
                state = optimizer.state.get(network.leaves()[k])
                params = getattr(agent, f"{name}_parameters")
                if isinstance(optimizer, TrustRegion):  # its counts live on the first parameter
                    params = params[:1]
                if state:  # the flat leaf's state, cut into its parameters' shapes (copies)
                    for i, param in enumerate(params):
                        own.state[param] = {
                            key: (network.flat.split(v)[i].clone() if v.shape == network.leaves()[k].shape else v.clone())
                            if isinstance(v, Tensor) else copy.deepcopy(v)
                            for key, v in state.items()
                        }  # fmt: skip
                own.param_groups[0].update(
                    {key: v for key, v in optimizer.param_groups[0].items() if key not in ("params", *IMPLEMENTATION_OPTIONS)}
                )
                getattr(agent, f"{name}_scheduler").load_state_dict(scheduler.state_dict())

    def seed_state_dicts(self) -> list[dict[str, Any]]:
        """Each seed's lone ``Agent.state_dict()`` (what its lone checkpoint holds; the weights are
        copies, not views of the flat leaves)."""
        self.sync_agents()
        states = []
        for agent in self.agents:
            state = agent.state_dict()
            for name in ("actor", "critic"):
                if name in state:
                    state[name] = {key: t.clone() for key, t in state[name].items()}
            states.append(state)
        return states

