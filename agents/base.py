"""The shared shape of every rlopt agent: an actor, an optional critic, one optimizer (and one
LR schedule) for each, and an ``update(batch) -> UpdateStats`` that never touches a logger.

The agents are the top floor over the library (``rlopt``): an agent implements the
:class:`rlopt.learner.Learner` protocol the trainer is typed against, and owns its agent-level
config rules (``check_config``: which actor step, its own config section, the defaults that
depend on the agent). Construction has no process-wide side effects: ``agents.build_agent``
seeds and sets threads.

:class:`Agent` is abstract; ``update`` is the same for every agent and calls the hooks:

* ``compute_targets`` — advantages and critic targets from a rollout (default GAE;
  REINFORCE: Monte-Carlo);
* ``optimize``        — how the networks move on the batch (abstract: A2C's actor step then
  critic regression, whose ``actor_step`` NPG/TRPO replace; PPO's epochs × minibatches).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from agents.registry import agent_from_config, load_agent
from rlopt.checkpoint import atomic_torch_save
from rlopt.gradient_steps import gradient_steps
from rlopt import optimizers
from rlopt.coefficients import build_coefficients, param_group_values
from rlopt.config import (
    DEFAULT_ACTOR_OPTIM,
    DEFAULT_CRITIC_OPTIM,
    Config,
    check_optimizer_spec,
)
from rlopt.distributions import ActionDistribution
from rlopt.envs import is_single_observation
from rlopt.errors import ConfigError
from rlopt.learning import Learning
from rlopt.losses import explained_variance, normalize
from rlopt.networks import Actor, Critic, clip_action_to_space
from rlopt.normalization import RunningMeanStd
from rlopt.returns import compute_gae
from rlopt.rollout import RolloutBatch, RolloutBuffer
from rlopt.learner import UpdateStats
from rlopt.saved_agent import saved_agent
from rlopt.runtime import resolve_device
from rlopt.schedules import ScheduledValue, build_lr_scheduler, build_schedule
from rlopt.optimizers.trust_region import TRUST_REGION_FAMILY

Distribution = ActionDistribution


class Agent(ABC):
    """The update layer every agent shares; a concrete agent implements :meth:`optimize`."""

    name: ClassVar[str]
    """The agent's config name (``agent: ppo``), set by each concrete class."""
    config_section: ClassVar[str] = "pg"
    """The config section of this agent's own options (``ppo``, ``reinforce``; ``pg`` for the
    agents without a section of their own)."""

    def __init__(self, cfg: Config, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Networks, optimizers and schedules for ``cfg`` (resolved with this agent's defaults).

        The initial weights are drawn from torch's global RNG; seeding it is the caller's job
        (``agents.build_agent`` seeds with ``cfg.seed`` right before it constructs the agent).
        """
        self.cfg = cfg = type(self).resolve_config(cfg)
        self.device = resolve_device(cfg.device)
        self.observation_space = observation_space
        self.action_space = action_space
        obs_dim = int(np.prod(observation_space.shape))
        horizon = cfg.num_updates
        self.actor = Actor(
            obs_dim,
            action_space,
            hidden=cfg.actor.hidden,
            activation=cfg.actor.activation,
            ortho_init=cfg.actor.ortho_init,
            log_std_init=cfg.actor.log_std_init,
            squash_mean=cfg.actor.squash_mean,
        ).to(self.device)
        self.critic: Critic | None = None
        if self.uses_critic:
            self.critic = Critic(
                obs_dim, hidden=cfg.critic.hidden, activation=cfg.critic.activation, ortho_init=cfg.critic.ortho_init
            ).to(self.device)
        self.coefficients: dict[str, ScheduledValue] = build_coefficients(cfg)
        """Scheduled values by config key (entropy_coef, ppo.clip, actor.optim.max_kl)."""
        self.actor_optimizer = self.build_actor_optimizer(dict(cfg.actor.optim))
        self.actor_scheduler = build_lr_scheduler(
            self.actor_optimizer, build_schedule(cfg.actor.schedule or None, horizon, key="actor.schedule"),
            param_group_values(self.coefficients, "actor"),
        )
        self.critic_optimizer: torch.optim.Optimizer | None = None
        self.critic_scheduler = None
        if self.critic is not None:
            self.critic_optimizer = optimizers.build(self.critic, dict(cfg.critic.optim), "critic.optim", horizon)
            self.critic_scheduler = build_lr_scheduler(
                self.critic_optimizer, build_schedule(cfg.critic.schedule or None, horizon, key="critic.schedule"),
                param_group_values(self.coefficients, "critic"),
            )
        self.obs_normalizer = (
            RunningMeanStd(observation_space.shape) if cfg.env.normalize_obs else None
        )
        self.updates_done = 0
        self.actor_parameters: list[nn.Parameter] = list(self.actor.parameters())
        """The actor's parameters, listed once (what every actor gradient step clips)."""
        self.critic_parameters: list[nn.Parameter] = [] if self.critic is None else list(self.critic.parameters())
        """The critic's parameters, listed once."""
        self._learning = Learning(self)
        """What :meth:`learn` keeps between calls (the trainer, its envs open; the run-dir lock)."""

    # ----------------------------------------------------------------- config
    @classmethod
    def resolve_actor_optim(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """The actor's optimizer spec with this agent's defaults filled in: a spec without ``name``
        (e.g. only ``actor.optim.lr=1e-3``, or empty) tweaks the default, adam with lr 3e-4."""
        return spec if "name" in spec else {**DEFAULT_ACTOR_OPTIM, **spec}

    @classmethod
    def resolve_config(cls, cfg: Config) -> Config:
        """A copy of ``cfg`` with the agent-dependent defaults filled in: the optimizer specs this
        agent actually uses (what ``RUN_DIR/config.yaml`` shows). Idempotent; checks nothing."""
        resolved = copy.deepcopy(cfg)
        resolved.actor.optim = cls.resolve_actor_optim(dict(cfg.actor.optim))
        resolved.critic.optim = dict(cfg.critic.optim) or dict(DEFAULT_CRITIC_OPTIM)
        return resolved

    @classmethod
    def check_config(cls, cfg: Config) -> Config:
        """Agent-level rules for a schema-valid ``cfg``; returns it resolved. Raises ConfigError.

        The actor step's name first (a torch.optim optimizer here), then its spec, built on a
        stand-in layer. Builds no env and no network (``agents.check_config`` runs it for every
        run of a sweep).
        """
        if optimizers.family_of(cfg.actor.optim.get("name")) is TRUST_REGION_FAMILY:
            raise ConfigError(
                f"actor.optim.name: trust_region is the actor step of the trust-region agents, not of "
                f"{cls.name}; use a torch.optim name such as adam"
            )
        resolved = cls.resolve_config(cfg)
        check_optimizer_spec(resolved.actor.optim, "actor.optim", resolved.num_updates)
        return resolved

    # ----------------------------------------------------------------- construction
    @property
    def uses_critic(self) -> bool:
        """Whether this agent learns a value function (all but REINFORCE without baseline)."""
        return True

    def build_actor_optimizer(self, spec: dict[str, Any]) -> torch.optim.Optimizer:
        """Hook: the actor's optimizer from its resolved spec, by its family (:mod:`rlopt.optimizers`)."""
        return optimizers.build(self.actor, spec, "actor.optim", self.cfg.num_updates)

    def trainables(self) -> tuple[list[nn.Module], list[torch.optim.Optimizer]]:
        """The networks and optimizers an update may change (the trainer snapshots them)."""
        modules = [m for m in (self.actor, self.critic) if m is not None]
        optimizers = [o for o in (self.actor_optimizer, self.critic_optimizer) if o is not None]
        return modules, optimizers

    @classmethod
    def from_config(
        cls, config: Config | str | Path | None = None, overrides: Sequence[str] = (), **values: Any
    ) -> "Agent":
        """Build from a Config, a YAML path, and/or keyword values (``seed=1, env={"id": ...}``);
        ``agents.build_agent`` checks, seeds and builds (:func:`agents.registry.agent_from_config`)."""
        return agent_from_config(cls, config, overrides, values)

    # ----------------------------------------------------------------- acting
    def preprocess(self, obs: np.ndarray | Tensor) -> Tensor:
        """Observation array → float32 tensor on the device, normalised with frozen statistics."""
        tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self.obs_normalizer is not None:
            tensor = self.obs_normalizer.normalize(tensor, clip=self.cfg.env.obs_clip)
        return tensor

    @torch.inference_mode()
    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One rollout step: sampled action, its log-probability and V(s) (inference mode, no hooks)."""
        action, log_prob = self.actor.sample(obs)
        value = self.critic.value(obs) if self.critic is not None else torch.zeros(obs.shape[0], device=obs.device)
        return action, log_prob, value

    @torch.inference_mode()
    def value(self, obs: Tensor) -> Tensor:
        """V(s), or zeros for an agent without critic."""
        if self.critic is None:
            return torch.zeros(obs.shape[0], device=obs.device)
        return self.critic.value(obs)

    @torch.no_grad()
    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """``(actions, None)`` for a batch or a single raw observation, SB3's convention
        (``actions, state = agent.predict(obs)``). Box actions are clipped to the bounds.

        ``state`` and ``episode_start`` exist for SB3 call sites; the policies are feed-forward,
        so both are ignored and the returned state is always None.
        """
        single = is_single_observation(obs := np.asarray(obs), self.observation_space.shape, self.cfg.env.id)
        tensor = self.preprocess(obs[None] if single else obs)
        dist = self.actor(tensor)
        actions = (dist.mode() if deterministic else dist.sample()).cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Box):
            actions = clip_action_to_space(actions, self.action_space)
        return (actions[0] if single else actions), None

    def learn(
        self,
        total_steps: int | None = None,
        run_dir: str | Path | None = None,
        progress: bool = True,
        reset_num_timesteps: bool = False,
    ) -> dict:
        """Train ``total_steps`` more env steps (default: the config's); returns the summary. Calls
        continue counting (SB3's ``reset_num_timesteps=False``) and re-fit the schedules to the new
        total; ``reset_num_timesteps=True`` restarts the count. Details: :class:`rlopt.learning.Learning`.
        """
        return self._learning.learn(total_steps, run_dir, progress, reset_num_timesteps)

    # ----------------------------------------------------------------- the update
    def compute_targets(self, buffer: RolloutBuffer) -> tuple[Tensor, Tensor]:
        """Hook: advantages and critic targets, [n_steps, num_envs]. Default: GAE(γ, λ)."""
        return compute_gae(
            buffer.rewards,
            buffer.values,
            buffer.terminated,
            buffer.truncated,
            buffer.last_values,
            self.cfg.gamma,
            self.cfg.gae_lambda,
        )

    def prepare_batch(self, buffer: RolloutBuffer) -> RolloutBatch:
        """Fill advantages/returns and flatten the valid transitions."""
        advantages, returns = self.compute_targets(buffer)
        buffer.advantages.copy_(advantages)
        buffer.returns.copy_(returns)
        return buffer.flatten(valid_only=True)

    @property
    def normalize_advantage(self) -> bool:
        """``<config_section>.normalize_advantage``: standardise the advantages (a key of every agent section)."""
        return getattr(self.cfg, self.config_section).normalize_advantage

    def update(self, batch: RolloutBatch) -> UpdateStats:
        """One policy update on a rollout batch; returns what it measured, writes no log."""
        stats = UpdateStats()
        if not bool(torch.isfinite(batch.obs).all() & torch.isfinite(batch.advantages).all()):
            stats.skipped = True  # a non-finite observation/reward never reaches the weights
        else:
            with torch.no_grad():
                old_dist = self.actor(batch.obs).detach()
            info = self.optimize(batch, old_dist)
            stats.skipped = bool(info.pop("skipped", False))
            with torch.no_grad():
                kl = old_dist.kl(self.actor(batch.obs)).mean()
                if self.critic is not None:
                    info["critic_explained_variance"] = explained_variance(self.critic(batch.obs), batch.returns)
            info["actor_kl"] = kl
            info["actor_kl_max"] = torch.maximum(info["actor_kl_max"], kl) if "actor_kl_max" in info else kl
            names = list(info)
            values = torch.stack([torch.as_tensor(info[n], dtype=torch.float32).cpu() for n in names]).tolist()
            stats.record(dict(zip(names, values)))  # one host sync for all statistics
        stats.actor_lr = self.actor_optimizer.param_groups[0]["lr"]
        if self.critic_optimizer is not None:
            stats.critic_lr = self.critic_optimizer.param_groups[0]["lr"]
        self.step_schedules()
        return stats

    def step_schedules(self) -> None:
        """Advance LR schedules and coefficient schedules by one update."""
        self.updates_done += 1
        self.actor_scheduler.step()
        if self.critic_scheduler is not None:
            self.critic_scheduler.step()

    @abstractmethod
    def optimize(self, batch: RolloutBatch, old_dist: Distribution) -> dict[str, Tensor | float]:
        """Hook: move the networks on the batch; returns the statistics (``UpdateStats`` names or
        ``group/name`` tags) and ``"skipped": True`` if a non-finite gradient stopped it."""

    def advantages(self, batch: RolloutBatch) -> Tensor:
        return normalize(batch.advantages) if self.normalize_advantage else batch.advantages

    def coefficient(self, key: str) -> float:
        """The scheduled coefficient ``key`` (e.g. ``"ppo.clip"``) at the current update."""
        return self.coefficients[key].value(self.updates_done)

    @property
    def current_entropy_coef(self) -> float:
        return self.coefficient("entropy_coef")

    gradient_steps = staticmethod(gradient_steps)
    """:func:`rlopt.gradient_steps.gradient_steps`: one backward, clip each network, step all or none."""

    @staticmethod
    def gradient_step(
        optimizer: torch.optim.Optimizer, loss: Tensor, params: Iterable[nn.Parameter], max_grad_norm: float | None
    ) -> tuple[Tensor, bool]:
        """backward → clip → step of one network; a non-finite gradient is caught before the weights move."""
        norms, ok = gradient_steps(loss, (optimizer, params, max_grad_norm))
        return norms[0], ok

    # ----------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything the agent needs to continue exactly: tensors and plain containers only."""
        state: dict[str, Any] = {
            "actor": self.actor.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "actor_scheduler": self.actor_scheduler.state_dict(),
            "updates_done": self.updates_done,
        }
        if self.critic is not None:
            assert self.critic_optimizer is not None
            state["critic"] = self.critic.state_dict()
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
            state["critic_scheduler"] = self.critic_scheduler.state_dict()
        if self.obs_normalizer is not None:
            state["obs_normalizer"] = self.obs_normalizer.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.actor_scheduler.load_state_dict(state["actor_scheduler"])
        self.updates_done = int(state["updates_done"])
        if self.critic is not None:
            assert self.critic_optimizer is not None and self.critic_scheduler is not None
            self.critic.load_state_dict(state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
            self.critic_scheduler.load_state_dict(state["critic_scheduler"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])

    def save(self, path: str | Path) -> Path:
        """Write one file, atomically: the resolved config and :meth:`state_dict` (read back with
        ``torch.load(weights_only=True)`` by :meth:`load` or ``agents.load``). Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(saved_agent(self.cfg, self.state_dict()), path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "Agent":
        """The agent saved in ``path`` (a file of :meth:`save`, a run directory, or one of its
        checkpoints); ``device`` overrides the saved one. Called on a concrete class, a file of
        another agent is a one-line ConfigError naming both; ``Agent.load`` (and ``agents.load``)
        builds whichever class the config names (:func:`agents.registry.load_agent`)."""
        return load_agent(None if cls is Agent else cls, path, device)
