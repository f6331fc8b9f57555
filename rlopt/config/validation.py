"""Schema-level validation of a run configuration: types, ranges, and every optimizer, schedule and
coefficient spec built exactly as the learners build them (on a stand-in layer), so a bad value is
rejected before any environment or network exists.

Nothing here knows an agent: which agent names exist, which actor step each needs and the defaults
that depend on the agent are the agent classes' ``check_config``. Nothing here knows an optimizer
either: every spec is checked by its family in the registry (:mod:`rlopt.optimizers`).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import fields, is_dataclass
from typing import Any, Mapping, Optional, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from rlopt import optimizers
from rlopt.coefficients import build_coefficients
from rlopt.config.schema import Config
from rlopt.errors import ConfigError, first_line, short_repr as _short
from rlopt.networks import activation_class
from rlopt.options import any_error_as_config_error
from rlopt.schedules import build_schedule

DEVICES = ("auto", "cpu", "cuda")


def _section_keys(dotted: str) -> list[str] | None:
    """Field names of the config section at ``dotted`` ("" = top level), or None if it is no section."""
    section: Any = Config
    for part in filter(None, dotted.split(".")):
        hint = get_type_hints(section).get(part)
        if not (isinstance(hint, type) and is_dataclass(hint)):
            return None
        section = hint
    return [f.name for f in fields(section)]


def omegaconf_message(err: OmegaConfBaseException) -> str:
    """``key: problem``; an unknown key also lists the valid keys of its section."""
    key = str(getattr(err, "full_key", None) or "")
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and key:
        parent = key.rpartition(".")[0]
        valid = _section_keys(parent)
        if valid is not None:
            return f"{key}: unknown key; valid keys{f' of {parent}' if parent else ''}: {', '.join(valid)}"
    return f"{key}: {first_line(err)}" if key else first_line(err)


SEED_MAX = 2**63 - 1
"""torch.manual_seed takes 64 bits; int64 leaves room for per-env and evaluation seed offsets."""
THREADS_MAX = 2**31 - 1
"""torch.set_num_threads takes a C int."""
TOTAL_STEPS_MAX = 10**11
"""Checkpoint names hold 12 digits of env steps (``step_<12 digits>.pt``); 10**11 leaves room for
the last rollout's overshoot, and is decades of compute at today's speeds."""
NUM_ENVS_MAX = 4096
"""Env copies of one run (``env.num_envs``): each is a python object stepped in turn; 10**6
CartPoles took minutes to build, and the rollout batch ``n_steps * num_envs`` is bounded by memory."""
HIDDEN_WIDTH_MAX = 65_536
"""Units of one hidden layer (``actor.hidden``, ``critic.hidden``): the activations of a batch grow with
the width, not only the weights the memory check counts (``hidden: [10**8]`` fits in 24 GiB as weights
and then needs 100 GiB per 256-row forward); 65,536 is 100x the widest MLPs of policy-gradient papers."""
HIDDEN_LAYERS_MAX = 100
"""Hidden layers of one network: deeper MLPs only cost build time (a million layers: minutes, no run)."""
PASSES_MAX = 10_000
"""Passes over one rollout batch (``ppo.epochs``, ``critic.updates``): more is a run that never ends."""
EVAL_EPISODES_MAX = 100_000
"""Final-evaluation episodes: more only spends hours (10**7 also ran out of memory, issue 12)."""
FLUSH_SECONDS_MAX = 86_400.0
"""``log.flush_seconds``: a day; a longer interval only risks losing a day of scalars to a crash."""
_FLOAT32_BYTES = 4
_SCALARS_PER_TRANSITION = 5
"""RolloutBuffer keeps log-prob, value, reward, advantage and return per transition."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


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
        raise ConfigError(omegaconf_message(err)) from None
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"invalid value: {first_line(err)}") from None


def _check_ranges(cfg: Config) -> None:
    """Range checks that types alone cannot express (all comparisons reject nan). The agent
    sections (``ppo``, ``reinforce``) are their agent classes' (``check_config``)."""
    _require(bool(cfg.agent.strip()), "agent must name an agent, e.g. ppo")
    _require(0 <= cfg.seed <= SEED_MAX, f"seed must be an integer in [0, 2**63 - 1], got {cfg.seed}")
    _require(
        1 <= cfg.total_steps <= TOTAL_STEPS_MAX,
        f"total_steps must be in [1, {TOTAL_STEPS_MAX:.0e}], got {_short(cfg.total_steps)}",
    )
    _require(
        cfg.device in DEVICES or re.fullmatch(r"cuda:\d+", cfg.device) is not None,
        f"device: unknown device '{cfg.device}'; valid: auto, cpu, cuda, cuda:N",
    )
    _require(1 <= cfg.threads <= THREADS_MAX, f"threads must be in [1, 2**31 - 1], got {cfg.threads}")
    _require(0.0 <= cfg.gamma <= 1.0, f"gamma must be in [0, 1], got {cfg.gamma}")
    _require(0.0 <= cfg.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {cfg.gae_lambda}")
    _require(bool(cfg.env.id.strip()), "env.id must name a gymnasium environment, e.g. CartPole-v1")
    _require(
        1 <= cfg.env.num_envs <= NUM_ENVS_MAX,
        f"env.num_envs must be in [1, {NUM_ENVS_MAX}], got {_short(cfg.env.num_envs)}",
    )
    _require(cfg.env.obs_clip > 0, f"env.obs_clip must be > 0, got {cfg.env.obs_clip}")
    _require(cfg.env.reward_clip > 0, f"env.reward_clip must be > 0, got {cfg.env.reward_clip}")
    _require(
        1 <= cfg.rollout.n_steps <= TOTAL_STEPS_MAX,
        f"rollout.n_steps must be in [1, {TOTAL_STEPS_MAX:.0e}], got {_short(cfg.rollout.n_steps)}",
    )
    _require(
        _is_finite_real(cfg.actor.log_std_init), f"actor.log_std_init must be finite, got {cfg.actor.log_std_init}"
    )
    for name, net in (("actor", cfg.actor), ("critic", cfg.critic)):
        _require(
            len(net.hidden) >= 1 and all(h >= 1 for h in net.hidden),
            f"{name}.hidden must be a non-empty list of positive sizes, got {_short(list(net.hidden))}",
        )
        _require(
            len(net.hidden) <= HIDDEN_LAYERS_MAX,
            f"{name}.hidden: at most {HIDDEN_LAYERS_MAX} layers, got {_short(len(net.hidden))}",
        )
        _require(
            max(net.hidden) <= HIDDEN_WIDTH_MAX,
            f"{name}.hidden: each layer in [1, {HIDDEN_WIDTH_MAX}] units, got {_short(max(net.hidden))}",
        )
        activation_class(net.activation, key=f"{name}.activation")
        _check_grad_norm(net.max_grad_norm, f"{name}.max_grad_norm")
    _require(
        1 <= cfg.critic.updates <= PASSES_MAX,
        f"critic.updates must be in [1, {PASSES_MAX}], got {_short(cfg.critic.updates)}",
    )
    _require(cfg.critic.minibatch_size >= 0, f"critic.minibatch_size must be >= 0, got {cfg.critic.minibatch_size}")
    _require(
        cfg.critic.minibatch_size <= cfg.batch_size,
        f"critic.minibatch_size ({cfg.critic.minibatch_size}) is larger than the rollout batch "
        f"rollout.n_steps * env.num_envs = {cfg.batch_size}",
    )
    _require(
        0 <= cfg.eval.episodes <= EVAL_EPISODES_MAX,
        f"eval.episodes must be in [0, {EVAL_EPISODES_MAX}], got {_short(cfg.eval.episodes)}",
    )
    _require(
        cfg.eval.max_episode_steps is None or 1 <= cfg.eval.max_episode_steps <= TOTAL_STEPS_MAX,
        f"eval.max_episode_steps must be in [1, {TOTAL_STEPS_MAX:.0e}] or null, "
        f"got {_short(cfg.eval.max_episode_steps)}",
    )
    _require(cfg.eval.every_steps >= 0, f"eval.every_steps must be >= 0, got {_short(cfg.eval.every_steps)}")
    _require(
        1 <= cfg.eval.episodes_during <= EVAL_EPISODES_MAX,
        f"eval.episodes_during must be in [1, {EVAL_EPISODES_MAX}], got {_short(cfg.eval.episodes_during)}",
    )
    _require(cfg.checkpoint.every_steps >= 0, f"checkpoint.every_steps must be >= 0, got {cfg.checkpoint.every_steps}")
    _require(cfg.checkpoint.keep >= 1, f"checkpoint.keep must be >= 1, got {cfg.checkpoint.keep}")
    _require(
        cfg.health.max_consecutive_faults >= 1,
        f"health.max_consecutive_faults must be >= 1, got {cfg.health.max_consecutive_faults}",
    )
    _require(
        0 < cfg.log.flush_seconds <= FLUSH_SECONDS_MAX,
        f"log.flush_seconds must be in (0, {FLUSH_SECONDS_MAX:g}], got {_short(cfg.log.flush_seconds)}",
    )


def check_optimizer_spec(spec: Mapping[str, Any], key: str, horizon: int) -> None:
    """Check ``spec`` as its optimizer family does (:func:`rlopt.optimizers.check`: built as a
    learner would, on a stand-in layer, with test steps where the family takes them). Agent classes
    call it for ``actor.optim`` once they accept its name."""
    optimizers.check(spec, key, horizon)


def _check_update_rules(cfg: Config) -> None:
    """Critic optimizer, schedule and coefficient specs, built exactly as the learners build them.

    ``actor.optim`` is the agent's: which step it may name (and its defaults) depends on the agent,
    so its class checks it first and then builds it with :func:`check_optimizer_spec`.
    """
    horizon = cfg.num_updates
    if cfg.critic.optim:
        check_optimizer_spec(dict(cfg.critic.optim), "critic.optim", horizon)
    for key, schedule in (("actor.schedule", cfg.actor.schedule), ("critic.schedule", cfg.critic.schedule)):
        with any_error_as_config_error(key):
            build_schedule(dict(schedule) or None, horizon, key=key)
    build_coefficients(cfg)  # the loss coefficients' ranges are checked there


def physical_memory_bytes() -> int | None:
    """Total RAM of this machine, or None where POSIX sysconf cannot tell."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _gib(size: int) -> str:
    """``size`` bytes in GiB, 3 digits; a size beyond the float range (``hidden: [10**400]``) as >1e+300."""
    return f"{size / 2**30:.3g}" if size < 10**300 else ">1e+300"


def check_fits_in_memory(cfg: Config, obs_dim: int = 1, head_dim: int = 1) -> None:
    """Reject networks and rollout buffers larger than this machine's memory, before allocating.

    Counts the float32 parameters of the MLPs ``[obs_dim, *hidden, head_dim]`` (actor) and
    ``[obs_dim, *hidden, 1]`` (critic) twice, as weights and gradients are both allocated by every
    agent, and per rollout transition the observation plus an action and five scalars (log-prob,
    value, reward, advantage, return). With obs_dim = head_dim = 1 these are lower bounds valid
    for any environment; building the learner repeats the check with the env's sizes.
    """
    memory = physical_memory_bytes()
    if memory is None:
        return
    for name, net, out_dim in (("actor", cfg.actor, head_dim), ("critic", cfg.critic, 1)):
        widths = [obs_dim, *net.hidden, out_dim]
        parameters = sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:]))
        needed = 2 * parameters * _FLOAT32_BYTES
        _require(
            needed <= memory,
            f"{name}.hidden: {net.hidden} needs at least {_gib(needed)} GiB (weights and gradients), "
            f"more than this machine's {_gib(memory)} GiB",
        )
    needed = cfg.batch_size * (obs_dim + 1 + _SCALARS_PER_TRANSITION) * _FLOAT32_BYTES
    _require(
        needed <= memory,
        f"rollout.n_steps * env.num_envs = {cfg.batch_size} transitions need at least {_gib(needed)} GiB, "
        f"more than this machine's {_gib(memory)} GiB",
    )


def validate(cfg: Config) -> None:
    """Reject every value no learner can run with, naming the key and what is allowed.

    Beyond types and ranges, the critic's optimizer, the schedules and the coefficients are built
    as the learners build them (torch optimizers on a stand-in layer, with test steps), so
    ``load_config`` alone rejects them before any environment or network exists; ``actor.optim``
    is left to the agent class (:func:`check_optimizer_spec`). The env id is checked when the
    learner is built (it needs the env), the agent-level rules by the agent class.
    """
    _check_types(cfg)
    _check_ranges(cfg)
    check_fits_in_memory(cfg)
    _check_update_rules(cfg)
