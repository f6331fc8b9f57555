"""Typed run configuration: dataclasses + YAML presets + dotted overrides (OmegaConf).

Every hyper-parameter of a run lives here with a one-line docstring. ``load_config`` is the only
entry point; it turns every kind of bad input into a :class:`~rlopt.errors.ConfigError` whose
message names the offending key and what is allowed, before any compute is spent.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, get_type_hints

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from rlopt.errors import ConfigError
from rlopt.networks import activation_class
from rlopt.optim import build_optimizer
from rlopt.schedules import build_schedule, parse_scheduled_value
from rlopt.trust_region import TrustRegion

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
    max_episode_steps: Optional[int] = None
    """Truncate evaluation episodes after this many steps; null = the env's own time limit."""


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


# ---------------------------------------------------------------------------------------------
# Reading YAML and overrides
# ---------------------------------------------------------------------------------------------

_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
"""``1e-3``, ``3E5``, ``1.0e5``: floats in YAML 1.2 that PyYAML's YAML 1.1 resolver reads as strings."""


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (no python tags, no code), plus YAML 1.2 exponent floats and a
    refusal of duplicate keys, which ``safe_load`` would silently resolve to the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key '{key_node.value}'", key_node.start_mark,
                )  # fmt: skip
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a UTF-8 YAML mapping with a safe loader (no arbitrary object construction)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (expected a YAML file such as configs/ppo_cartpole.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ConfigLoader)  # noqa: S506 (safe loader)
    except UnicodeDecodeError:
        raise ConfigError(f"config file is not UTF-8 text: {path}") from None
    except OSError as err:
        raise ConfigError(f"config file cannot be read: {path} ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or _first_line(err)
        raise ConfigError(f"malformed YAML in {path}{line}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"malformed YAML in {path}: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got a {type(data).__name__}")
    return data


def _section_keys(dotted: str) -> list[str] | None:
    """Field names of the config section at ``dotted`` ("" = top level), or None if it is no section."""
    section: Any = Config
    for part in filter(None, dotted.split(".")):
        hint = get_type_hints(section).get(part)
        if not (isinstance(hint, type) and is_dataclass(hint)):
            return None
        section = hint
    return [f.name for f in fields(section)]


def _omegaconf_message(err: OmegaConfBaseException) -> str:
    """``key: problem``; an unknown key also lists the valid keys of its section."""
    key = str(getattr(err, "full_key", None) or "")
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and key:
        parent = key.rpartition(".")[0]
        valid = _section_keys(parent)
        if valid is not None:
            return f"{key}: unknown key; valid keys{f' of {parent}' if parent else ''}: {', '.join(valid)}"
    return f"{key}: {_first_line(err)}" if key else _first_line(err)


def _parse_override(item: Any) -> DictConfig:
    """One ``key=value`` (value in YAML syntax) as a config layer."""
    if not isinstance(item, str) or "=" not in item or item.startswith("="):
        raise ConfigError(f"override {item!r} must look like key=value (e.g. actor.optim.lr=1e-3)")
    key = item.partition("=")[0].strip()
    try:
        return OmegaConf.from_dotlist([item])
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: bad override {item!r}: {_first_line(err)}") from None
    except Exception as err:  # the YAML grammar of the value, e.g. "a=[1," (yaml.ScannerError, ...)
        raise ConfigError(f"{key}: cannot parse the value of override {item!r} ({_first_line(err)})") from None


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is OmegaConf's missing marker ``???`` (interpolations unresolved)."""
    if isinstance(node, Mapping):
        return [key for name, value in node.items() for key in _missing_keys(value, f"{prefix}{name}.")]
    if isinstance(node, list):
        return [key for i, value in enumerate(node) for key in _missing_keys(value, f"{prefix.rstrip('.')}[{i}].")]
    return [prefix.rstrip(".")] if node == "???" else []


def _reject_missing(layer: DictConfig, where: str) -> None:
    """OmegaConf's ``???`` would silently keep the value below it; a run needs real values."""
    missing = _missing_keys(OmegaConf.to_container(layer, resolve=False))
    if missing:
        raise ConfigError(f"{missing[0]}: '???' (a missing value) in {where}; give a value")


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> Config:
    """Build a validated :class:`Config`: defaults < YAML file < ``values`` mapping < dotted overrides.

    Every kind of bad input (missing or malformed file, unknown key, wrong type, value out of
    range, unusable optimizer or schedule spec) raises :class:`ConfigError` with a one-line
    message naming the key and what is allowed.
    """
    if isinstance(overrides, str):  # a lone "k=v" would otherwise be split into characters
        overrides = [overrides]
    layers: list[tuple[str, Any]] = []
    try:
        if path is not None:
            layers.append((f"config file {path}", OmegaConf.create(read_yaml(path))))
        if values is not None:
            layers.append(("values", OmegaConf.create(dict(values))))
    except OmegaConfBaseException as err:
        raise ConfigError(_omegaconf_message(err)) from None
    layers.extend((f"override {item!r}", _parse_override(item)) for item in overrides)
    merged: Any = OmegaConf.structured(Config)
    for where, layer in layers:
        _reject_missing(layer, where)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            if getattr(err, "full_key", None):
                raise ConfigError(_omegaconf_message(err)) from None
            raise ConfigError(f"cannot apply {where}: {_first_line(err)}") from None  # e.g. "actor=5"
        except (TypeError, ValueError, OverflowError) as err:  # "actor.hidden[0]=5"; "gamma=1000…0" beyond float
            raise ConfigError(f"cannot apply {where}: {_first_line(err)}") from None
    try:
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:  # unresolvable ${interpolation}
        raise ConfigError(_omegaconf_message(err)) from None
    validate(cfg)
    return cfg


def config_to_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML text (written to ``RUN_DIR/config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as plain python containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

TRUST_REGION_AGENTS = ("npg", "trpo")
"""Agents whose actor step is the trust-region optimizer (``actor.optim.name: trust_region``)."""
SEED_MAX = 2**63 - 1
"""torch.manual_seed takes 64 bits; int64 leaves room for per-env and evaluation seed offsets."""
THREADS_MAX = 2**31 - 1
"""torch.set_num_threads takes a C int."""
_TRUST_REGION_OPTIONS = tuple(
    name for name in inspect.signature(TrustRegion.__init__).parameters if name not in ("self", "params")
)
_TEST_STEPS = 2
"""Steps of the stand-in optimizer: the second also uses the state of the first (momentum, moments)."""
_FLOAT32_BYTES = 4
_SCALARS_PER_TRANSITION = 5
"""RolloutBuffer keeps log-prob, value, reward, advantage and return per transition."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@contextmanager
def _as_config_error(key: str) -> Iterator[None]:
    """Turn whatever a builder raises on a malformed value into a ConfigError naming ``key``.

    The builders raise ConfigError for what they check; torch and float() add TypeError
    (``'<=' between float and str``), OverflowError (``float(10**400)``), AssertionError
    (``capturable=True`` on CPU) and RuntimeError (``differentiable=True``): equally bad input.
    """
    try:
        yield
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{key}: invalid value ({type(err).__name__}: {_first_line(err)})") from None


def _is_finite_real(value: Any) -> bool:
    try:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def _check_grad_norm(value: Optional[float], key: str) -> None:
    _require(value is None or (_is_finite_real(value) and value > 0), f"{key} must be > 0 or null, got {value}")


def _check_types(cfg: Config) -> None:
    """Every field holds its annotated type (a Config built in python skips OmegaConf's checks,
    and OmegaConf's merge lets ``actor.hidden=[[1]]`` into a List[int])."""
    try:
        OmegaConf.structured(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(_omegaconf_message(err)) from None
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"invalid value: {_first_line(err)}") from None


def _check_ranges(cfg: Config) -> None:
    """Range checks that types alone cannot express (all comparisons reject nan)."""
    _require(cfg.agent in AGENT_NAMES, f"agent: unknown agent '{cfg.agent}'; valid: {', '.join(AGENT_NAMES)}")
    _require(0 <= cfg.seed <= SEED_MAX, f"seed must be an integer in [0, 2**63 - 1], got {cfg.seed}")
    _require(cfg.total_steps >= 1, f"total_steps must be >= 1, got {cfg.total_steps}")
    _require(
        cfg.device in DEVICES or re.fullmatch(r"cuda:\d+", cfg.device) is not None,
        f"device: unknown device '{cfg.device}'; valid: auto, cpu, cuda, cuda:N",
    )
    _require(1 <= cfg.threads <= THREADS_MAX, f"threads must be in [1, 2**31 - 1], got {cfg.threads}")
    _require(0.0 <= cfg.gamma <= 1.0, f"gamma must be in [0, 1], got {cfg.gamma}")
    _require(0.0 <= cfg.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {cfg.gae_lambda}")
    _require(bool(cfg.env.id.strip()), "env.id must name a gymnasium environment, e.g. CartPole-v1")
    _require(cfg.env.num_envs >= 1, f"env.num_envs must be >= 1, got {cfg.env.num_envs}")
    _require(cfg.env.obs_clip > 0, f"env.obs_clip must be > 0, got {cfg.env.obs_clip}")
    _require(cfg.env.reward_clip > 0, f"env.reward_clip must be > 0, got {cfg.env.reward_clip}")
    _require(cfg.rollout.n_steps >= 1, f"rollout.n_steps must be >= 1, got {cfg.rollout.n_steps}")
    _require(
        _is_finite_real(cfg.actor.log_std_init), f"actor.log_std_init must be finite, got {cfg.actor.log_std_init}"
    )
    for name, net in (("actor", cfg.actor), ("critic", cfg.critic)):
        _require(
            len(net.hidden) >= 1 and all(h >= 1 for h in net.hidden),
            f"{name}.hidden must be a non-empty list of positive sizes, got {net.hidden}",
        )
        activation_class(net.activation, key=f"{name}.activation")
        _check_grad_norm(net.max_grad_norm, f"{name}.max_grad_norm")
    _require(cfg.critic.updates >= 1, f"critic.updates must be >= 1, got {cfg.critic.updates}")
    _require(cfg.critic.minibatch_size >= 0, f"critic.minibatch_size must be >= 0, got {cfg.critic.minibatch_size}")
    _require(
        cfg.critic.minibatch_size <= cfg.batch_size,
        f"critic.minibatch_size ({cfg.critic.minibatch_size}) is larger than the rollout batch "
        f"rollout.n_steps * env.num_envs = {cfg.batch_size}",
    )
    _require(cfg.ppo.epochs >= 1, f"ppo.epochs must be >= 1, got {cfg.ppo.epochs}")
    _require(cfg.ppo.minibatch_size >= 1, f"ppo.minibatch_size must be >= 1, got {cfg.ppo.minibatch_size}")
    if cfg.agent == "ppo":
        _require(
            cfg.ppo.minibatch_size <= cfg.batch_size,
            f"ppo.minibatch_size ({cfg.ppo.minibatch_size}) is larger than the rollout batch "
            f"rollout.n_steps * env.num_envs = {cfg.batch_size}",
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
    _require(
        cfg.eval.max_episode_steps is None or cfg.eval.max_episode_steps >= 1,
        f"eval.max_episode_steps must be >= 1 or null, got {cfg.eval.max_episode_steps}",
    )
    _require(cfg.checkpoint.every_steps >= 0, f"checkpoint.every_steps must be >= 0, got {cfg.checkpoint.every_steps}")
    _require(cfg.checkpoint.keep >= 1, f"checkpoint.keep must be >= 1, got {cfg.checkpoint.keep}")
    _require(
        cfg.health.max_consecutive_faults >= 1,
        f"health.max_consecutive_faults must be >= 1, got {cfg.health.max_consecutive_faults}",
    )


def _stand_in_layer() -> list[torch.Tensor]:
    """Zero weight [2, 2] and bias [2]: the parameter shapes of an MLP layer (no RNG is drawn)."""
    return [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]


def _check_torch_optimizer(spec: Mapping[str, Any], key: str) -> None:
    """Build ``spec`` as the agents do and take test steps with a unit gradient, as they do
    (``optimizer.step()`` without closure): rejects e.g. lbfgs, sparseadam, capturable on CPU."""
    params = _stand_in_layer()
    with _as_config_error(key):
        optimizer = build_optimizer(params, spec, key=key)
        for _ in range(_TEST_STEPS):
            for param in params:
                param.grad = torch.ones_like(param)
            optimizer.step()
    _require(
        all(bool(torch.isfinite(param).all()) for param in params),
        f"{key}: {spec.get('name')} turns a unit gradient into non-finite parameters; check its numeric options",
    )


def _check_trust_region(spec: Mapping[str, Any], key: str, horizon: int) -> None:
    """Build the TrustRegion optimizer as agents.npg does (``max_kl`` may be a schedule)."""
    kwargs = {option: value for option, value in spec.items() if option != "name"}
    for option in kwargs:
        _require(
            option in _TRUST_REGION_OPTIONS,
            f"{key}.{option}: unknown option for trust_region; accepted: name, {', '.join(_TRUST_REGION_OPTIONS)}",
        )
    if "max_kl" in kwargs:
        with _as_config_error(f"{key}.max_kl"):
            kwargs["max_kl"] = parse_scheduled_value(kwargs["max_kl"], horizon, key=f"{key}.max_kl").value(0)
    try:
        with _as_config_error(key):
            TrustRegion(_stand_in_layer(), **kwargs)
    except ConfigError as err:  # TrustRegion names the bare option ("cg_iters must be ..."): prefix the key
        message = str(err)
        raise ConfigError(f"{key}.{message}" if message.split(" ")[0] in _TRUST_REGION_OPTIONS else message) from None


def _check_update_rules(cfg: Config) -> None:
    """Optimizer, schedule and coefficient specs, built exactly as the agents build them."""
    horizon = cfg.num_updates
    actor_optim = dict(cfg.actor.optim)
    if cfg.agent in TRUST_REGION_AGENTS:
        # agents.base falls back to adam when actor.optim is empty, which npg/trpo refuse.
        _require(
            bool(actor_optim),
            f"actor.optim: {cfg.agent} needs a trust-region spec, e.g. {{name: trust_region, max_kl: 0.01}}",
        )
        name = actor_optim.get("name", "trust_region")
        _require(name == "trust_region", f"actor.optim.name: {cfg.agent} needs trust_region, got {name!r}")
        _check_trust_region(actor_optim, "actor.optim", horizon)
    elif actor_optim:
        _require(
            actor_optim.get("name") != "trust_region",
            f"actor.optim.name: trust_region is the actor step of {' and '.join(TRUST_REGION_AGENTS)}, "
            f"not of {cfg.agent}; use a torch.optim name such as adam",
        )
        _check_torch_optimizer(actor_optim, "actor.optim")
    if cfg.critic.optim:
        _check_torch_optimizer(dict(cfg.critic.optim), "critic.optim")
    for key, schedule in (("actor.schedule", cfg.actor.schedule), ("critic.schedule", cfg.critic.schedule)):
        with _as_config_error(key):
            build_schedule(dict(schedule) or None, horizon, key=key)
    with _as_config_error("entropy_coef"):
        parse_scheduled_value(cfg.entropy_coef, horizon, key="entropy_coef")
    with _as_config_error("ppo.clip"):
        clip = parse_scheduled_value(cfg.ppo.clip, horizon, key="ppo.clip")
    _require(clip.base > 0, f"ppo.clip must be > 0 (the clip range ε of the ratio), got {clip.base}")


def physical_memory_bytes() -> int | None:
    """Total RAM of this machine, or None where POSIX sysconf cannot tell."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(cfg: Config, obs_dim: int = 1, head_dim: int = 1) -> None:
    """Reject networks and rollout buffers larger than this machine's memory, before allocating.

    Counts the float32 parameters of the MLPs ``[obs_dim, *hidden, head_dim]`` (actor) and
    ``[obs_dim, *hidden, 1]`` (critic) twice, as weights and gradients are both allocated by every
    agent, and per rollout transition the observation plus an action and five scalars (log-prob,
    value, reward, advantage, return). With obs_dim = head_dim = 1 these are lower bounds valid
    for any environment; ``agents.build_agent`` repeats the check with the env's sizes.
    """
    memory = physical_memory_bytes()
    if memory is None:
        return
    gib = 2**30
    for name, net, out_dim in (("actor", cfg.actor, head_dim), ("critic", cfg.critic, 1)):
        widths = [obs_dim, *net.hidden, out_dim]
        parameters = sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:]))
        needed = 2 * parameters * _FLOAT32_BYTES
        _require(
            needed <= memory,
            f"{name}.hidden: {net.hidden} needs at least {needed / gib:.3g} GiB (weights and gradients), "
            f"more than this machine's {memory / gib:.3g} GiB",
        )
    needed = cfg.batch_size * (obs_dim + 1 + _SCALARS_PER_TRANSITION) * _FLOAT32_BYTES
    _require(
        needed <= memory,
        f"rollout.n_steps * env.num_envs = {cfg.batch_size} transitions need at least {needed / gib:.3g} GiB, "
        f"more than this machine's {memory / gib:.3g} GiB",
    )


def validate(cfg: Config) -> None:
    """Reject every value the agents cannot run with, naming the key and what is allowed.

    Beyond types and ranges, optimizer, schedule and coefficient specs are built as the agents
    build them (torch optimizers on a stand-in layer, with test steps), so ``load_config`` alone
    rejects them before any environment or network exists. The env id is checked by building
    the env (``agents.build_agent``).
    """
    _check_types(cfg)
    _check_ranges(cfg)
    check_fits_in_memory(cfg)
    _check_update_rules(cfg)
