"""The run configuration's schema: typed dataclasses holding every hyper-parameter and its default.

Layer 0 of rlopt: plain data, no torch, no agent code. Every field has a one-line docstring under it.
The optimizer defaults live here too (``DEFAULT_ACTOR_OPTIM``, ``DEFAULT_CRITIC_OPTIM``; the
trust-region step's, ``DEFAULT_TRUST_REGION``, is derived from its hyper-parameter table:
:mod:`rlopt.config.defaults`); an empty ``actor.optim``/``critic.optim`` means "the agent's default",
which the agent class fills in before a run starts, so ``RUN_DIR/config.yaml`` always shows the
spec actually used. Reading YAML is :mod:`rlopt.config.loading`, checks are
:mod:`rlopt.config.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

DEFAULT_ACTOR_OPTIM: dict[str, Any] = {"name": "adam", "lr": 3e-4}
"""The actor's torch.optim spec when ``actor.optim`` is empty (every agent but the trust-region ones)."""
DEFAULT_CRITIC_OPTIM: dict[str, Any] = {"name": "adam", "lr": 1e-3}
"""The critic's spec when ``critic.optim`` is empty."""
@dataclass
class EnvConfig:
    id: str = "CartPole-v1"
    """Any registered gymnasium id, including ``module:Env-v0``."""
    num_envs: int = 8
    """Number of parallel environments in the vector env."""
    normalize_obs: bool = False
    """Normalise observations with a running mean/std (saved in checkpoints)."""
    obs_clip: float = 10.0
    """Clip normalised observations to [-obs_clip, obs_clip]."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (learning signal only)."""
    reward_clip: float = 10.0
    """Clip scaled rewards to [-reward_clip, reward_clip]."""


@dataclass
class RolloutConfig:
    n_steps: int = 128
    """Env steps per environment between two updates (batch = n_steps * num_envs)."""


@dataclass
class ActorConfig:
    hidden: List[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the policy MLP."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu, gelu, silu, leaky_relu."""
    ortho_init: bool = True
    """Orthogonal initialisation (Saxe et al. 2014), output gain 0.01."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian head (Box actions)."""
    squash_mean: bool = False
    """Bound the Gaussian mean inside the Box with tanh (samples are still clipped at the env)."""
    optim: Dict[str, Any] = field(default_factory=dict)
    """Optimizer spec {name, lr, **kwargs} or {name: trust_region, ...}; empty = the agent's default."""
    schedule: Dict[str, Any] = field(default_factory=dict)
    """Learning-rate schedule {name, **kwargs} over updates; empty = constant."""
    max_grad_norm: Optional[float] = 0.5
    """Clip the actor gradient to this global L2 norm; null = no clipping."""


@dataclass
class CriticConfig:
    hidden: List[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the value MLP."""
    activation: str = "tanh"
    """Hidden activation of the value MLP."""
    ortho_init: bool = True
    """Orthogonal initialisation, output gain 1."""
    optim: Dict[str, Any] = field(default_factory=dict)
    """Optimizer spec {name, lr, **kwargs}; empty = DEFAULT_CRITIC_OPTIM (adam, lr 1e-3)."""
    schedule: Dict[str, Any] = field(default_factory=dict)
    """Learning-rate schedule {name, **kwargs} over updates; empty = constant."""
    max_grad_norm: Optional[float] = 0.5
    """Clip the critic gradient to this global L2 norm; null = no clipping."""
    updates: int = 1
    """Epochs of critic regression per rollout (agent classes that fit the critic on the whole batch)."""
    minibatch_size: int = 0
    """Critic minibatch size; 0 = the whole batch."""


@dataclass
class PPOConfig:
    epochs: int = 10
    """Passes over the rollout batch per update."""
    minibatch_size: int = 64
    """Transitions per minibatch."""
    clip: Any = 0.2
    """Clip range ε of the ratio (number or schedule {value, name, ...})."""
    clip_value: Optional[float] = None
    """Clip the value change to ±clip_value around the old value; null = off."""
    target_kl: Optional[float] = None
    """Stop the epochs early once the exact mean KL(old‖new) exceeds this; null = off."""
    normalize_advantage: bool = True
    """Standardise advantages per minibatch."""


@dataclass
class ReinforceConfig:
    baseline: str = "value"
    """Baseline subtracted from the Monte-Carlo return: none | value (learned critic)."""
    normalize_advantage: bool = False
    """Standardise advantages over the batch."""


@dataclass
class PolicyGradientConfig:
    normalize_advantage: bool = False
    """Standardise advantages over the batch (policy-gradient agent classes without a section of their own)."""


# ``normalize_advantage`` is a key of each agent section (ppo, reinforce, pg); an agent reads it from
# its own section only (``Agent.config_section``). One field inherited from a shared base dataclass would
# come first in every section, which would reorder RUN_DIR/config.yaml and the "valid keys" lists.


@dataclass
class EvalConfig:
    episodes: int = 10
    """Episodes of the final deterministic evaluation on fresh env instances."""
    max_episode_steps: Optional[int] = None
    """Truncate evaluation episodes after this many steps; null = the env's own time limit, or
    10,000 steps for an env without one (``rlopt.evaluation.DEFAULT_MAX_EPISODE_STEPS``)."""
    every_steps: int = 0
    """Evaluate deterministically every this many env steps during training, keeping checkpoints/best.pt (0 = off)."""
    episodes_during: int = 5
    """Episodes of each evaluation during training (kept small: it runs every ``every_steps``)."""


@dataclass
class CheckpointConfig:
    every_steps: int = 0
    """Write a checkpoint every this many env steps (0 = only at the end)."""
    keep: int = 2
    """How many recent checkpoints to keep on disk."""


@dataclass
class HealthConfig:
    max_consecutive_faults: int = 5
    """Stop the run after this many consecutive updates skipped for non-finite values."""


@dataclass
class LogConfig:
    flush_seconds: float = 120.0
    """Write the TensorBoard scalars to disk at least this often, in seconds (SummaryWriter's ``flush_secs``;
    a sweep's pruned tuning trials use 0.5 s so that pruning reads their curves while they run)."""


@dataclass
class Config:
    agent: str = "ppo"
    """Which agent, by its registered name (an unknown name lists the valid ones)."""
    seed: int = 0
    """Seed of python, numpy, torch and the environments."""
    total_steps: int = 100_000
    """Environment steps to train for (summed over the vector env)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    threads: int = 1
    """torch.set_num_threads: small MLPs are fastest on one thread."""
    stack_exact: bool = False
    """Seeds trained together (``--seeds``): true = each seed's rollouts bit-identical to its lone run's, its updates within an ulp or two; false = faster kernels (tanh as 2σ(2x)−1, a tanh MLP as one autograd node, fused optimizer steps), equal up to float rounding; seeds that update alone (ACKTR, K-FAC, ...) are always exact."""
    gamma: float = 0.99
    """Discount factor γ ∈ [0, 1]."""
    gae_lambda: float = 0.95
    """GAE λ ∈ [0, 1] (Schulman et al. 2016)."""
    entropy_coef: Any = 0.0
    """Entropy bonus coefficient: number or schedule {value, name, ...}."""
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    pg: PolicyGradientConfig = field(default_factory=PolicyGradientConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def batch_size(self) -> int:
        """Transitions per rollout (n_steps · num_envs)."""
        return self.rollout.n_steps * self.env.num_envs

    @property
    def num_updates(self) -> int:
        """Number of rollouts/updates in the run: the schedules' horizon."""
        return max(1, -(-self.total_steps // self.batch_size))  # exact ceil: no float overflow
