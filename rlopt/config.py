"""Typed run configuration: dataclasses + YAML presets + dotted overrides (OmegaConf).

Every hyper-parameter of a run lives here with a one-line docstring. ``load_config`` is the only
entry point; it turns every kind of bad input into a :class:`~rlopt.errors.ConfigError` whose
message names the offending key and what is allowed, before any compute is spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlopt.errors import ConfigError

AGENT_NAMES = ("reinforce", "a2c", "npg", "trpo", "ppo")
BASELINES = ("none", "value")
DEVICES = ("auto", "cpu", "cuda")


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
    optim: Dict[str, Any] = field(default_factory=dict)
    """Optimizer spec {name, lr, **kwargs}; name trust_region for NPG/TRPO. Empty: adam, lr 3e-4."""
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
    """Optimizer spec {name, lr, **kwargs}. Empty: adam, lr 1e-3."""
    schedule: Dict[str, Any] = field(default_factory=dict)
    """Learning-rate schedule {name, **kwargs} over updates; empty = constant."""
    max_grad_norm: Optional[float] = 0.5
    """Clip the critic gradient to this global L2 norm; null = no clipping."""
    updates: int = 1
    """Epochs of critic regression per rollout (NPG/TRPO/A2C/REINFORCE)."""
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
    """A2C/NPG/TRPO: standardise advantages over the batch."""


@dataclass
class EvalConfig:
    episodes: int = 10
    """Episodes of the final deterministic evaluation on fresh env instances."""


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
class Config:
    agent: str = "ppo"
    """Which agent: reinforce | a2c | npg | trpo | ppo."""
    seed: int = 0
    """Seed of python, numpy, torch and the environments."""
    total_steps: int = 100_000
    """Environment steps to train for (summed over the vector env)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    threads: int = 1
    """torch.set_num_threads: small MLPs are fastest on one thread."""
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

    @property
    def batch_size(self) -> int:
        """Transitions per rollout (n_steps · num_envs)."""
        return self.rollout.n_steps * self.env.num_envs

    @property
    def num_updates(self) -> int:
        """Number of rollouts/updates in the run: the schedules' horizon."""
        return max(1, math.ceil(self.total_steps / self.batch_size))


def _read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file with ``yaml.safe_load`` (no arbitrary object construction)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"malformed YAML in {path}{line}: {getattr(err, 'problem', err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file is not UTF-8 text: {path}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def _omegaconf_message(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or ""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{key}: {first}" if key else first


def _parse_overrides(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' must look like key=value (e.g. actor.optim.lr=1e-3)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override: {_omegaconf_message(err)}") from None
    except Exception as err:  # the YAML grammar of a value, e.g. "a=[1,"
        raise ConfigError(f"bad override value: {str(err).splitlines()[0]}") from None


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> Config:
    """Build a validated :class:`Config`: defaults < YAML file < ``values`` mapping < dotted overrides."""
    layers: list[Any] = [OmegaConf.structured(Config)]
    try:
        if path is not None:
            layers.append(OmegaConf.create(_read_yaml(path)))
        if values is not None:
            layers.append(OmegaConf.create(dict(values)))
    except OmegaConfBaseException as err:
        raise ConfigError(_omegaconf_message(err)) from None
    layers.append(_parse_overrides(overrides))
    try:
        cfg: Config = OmegaConf.to_object(OmegaConf.merge(*layers))  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise ConfigError(_omegaconf_message(err)) from None
    validate(cfg)
    return cfg


def config_to_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML text (written to ``RUN_DIR/config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as plain python containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_grad_norm(value: Optional[float], key: str) -> None:
    _require(value is None or (math.isfinite(value) and value > 0), f"{key} must be > 0 or null, got {value}")


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express. Builders validate optimizer/schedule specs."""
    _require(cfg.agent in AGENT_NAMES, f"agent: unknown agent '{cfg.agent}'; valid: {', '.join(AGENT_NAMES)}")
    _require(cfg.total_steps >= 1, f"total_steps must be >= 1, got {cfg.total_steps}")
    _require(
        cfg.device in DEVICES or cfg.device.startswith("cuda:"),
        f"device: unknown device '{cfg.device}'; valid: auto, cpu, cuda, cuda:N",
    )
    _require(cfg.threads >= 1, f"threads must be >= 1, got {cfg.threads}")
    _require(0.0 <= cfg.gamma <= 1.0, f"gamma must be in [0, 1], got {cfg.gamma}")
    _require(0.0 <= cfg.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {cfg.gae_lambda}")
    _require(bool(cfg.env.id), "env.id must name a gymnasium environment")
    _require(cfg.env.num_envs >= 1, f"env.num_envs must be >= 1, got {cfg.env.num_envs}")
    _require(cfg.env.obs_clip > 0, f"env.obs_clip must be > 0, got {cfg.env.obs_clip}")
    _require(cfg.rollout.n_steps >= 1, f"rollout.n_steps must be >= 1, got {cfg.rollout.n_steps}")
    for name, net in (("actor", cfg.actor), ("critic", cfg.critic)):
        _require(
            len(net.hidden) >= 1 and all(h >= 1 for h in net.hidden),
            f"{name}.hidden must be a non-empty list of positive sizes, got {net.hidden}",
        )
        _check_grad_norm(net.max_grad_norm, f"{name}.max_grad_norm")
    _require(cfg.critic.updates >= 1, f"critic.updates must be >= 1, got {cfg.critic.updates}")
    _require(cfg.critic.minibatch_size >= 0, f"critic.minibatch_size must be >= 0, got {cfg.critic.minibatch_size}")
    _require(cfg.ppo.epochs >= 1, f"ppo.epochs must be >= 1, got {cfg.ppo.epochs}")
    _require(cfg.ppo.minibatch_size >= 1, f"ppo.minibatch_size must be >= 1, got {cfg.ppo.minibatch_size}")
    if cfg.agent == "ppo":
        _require(
            cfg.ppo.minibatch_size <= cfg.batch_size,
            f"ppo.minibatch_size ({cfg.ppo.minibatch_size}) is larger than the rollout batch "
            f"rollout.n_steps * env.num_envs = {cfg.batch_size}",
        )
    if cfg.critic.minibatch_size > cfg.batch_size:
        raise ConfigError(
            f"critic.minibatch_size ({cfg.critic.minibatch_size}) is larger than the rollout batch {cfg.batch_size}"
        )
    _require(
        cfg.ppo.clip_value is None or cfg.ppo.clip_value > 0,
        f"ppo.clip_value must be > 0 or null, got {cfg.ppo.clip_value}",
    )
    _require(
        cfg.ppo.target_kl is None or cfg.ppo.target_kl > 0,
        f"ppo.target_kl must be > 0 or null, got {cfg.ppo.target_kl}",
    )
    _require(
        cfg.reinforce.baseline in BASELINES,
        f"reinforce.baseline: unknown baseline '{cfg.reinforce.baseline}'; valid: {', '.join(BASELINES)}",
    )
    _require(cfg.eval.episodes >= 0, f"eval.episodes must be >= 0, got {cfg.eval.episodes}")
    _require(cfg.checkpoint.every_steps >= 0, f"checkpoint.every_steps must be >= 0, got {cfg.checkpoint.every_steps}")
    _require(cfg.checkpoint.keep >= 1, f"checkpoint.keep must be >= 1, got {cfg.checkpoint.keep}")
    _require(
        cfg.health.max_consecutive_faults >= 1,
        f"health.max_consecutive_faults must be >= 1, got {cfg.health.max_consecutive_faults}",
    )
