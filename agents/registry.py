"""Where agents come from: the registry (:data:`AGENTS`), the agent-level check of a config, and
the two ways to get an agent, from a config (:func:`build_agent`, :func:`agent_from_config`) or
from a file (:func:`load`, :func:`load_agent`).

Below the agent classes: this module imports only the library, and the package
(``agents/__init__.py``) fills :data:`AGENTS` once every class is defined. So ``agents.base``
imports it for ``Agent.from_config``/``Agent.load`` without importing its own subclasses: the
import graph has no cycle. A run's process-wide setup (threads, seeding) happens in
:func:`build_agent`, right before the networks are built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from gymnasium import spaces

from rlopt.config import Config, check_fits_in_memory, config_to_dict, load_config, validate
from rlopt.envs import make_vec_env
from rlopt.errors import ConfigError
from rlopt.runtime import start_run
from rlopt.saved_agent import read_saved_agent

AGENTS: dict[str, Any] = {}
"""Every agent class by its config name (``agent: ppo``), in the order error messages list them;
filled by ``agents/__init__.py``."""


def agent_class(name: str) -> Any:
    """The agent class registered as ``name``; an unknown name is a ConfigError listing the valid ones."""
    try:
        return AGENTS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"agent: unknown agent {name!r}; valid: {', '.join(AGENTS)}") from None


def check_config(cfg: Config) -> Config:
    """Every check of ``cfg`` that needs no env: the schema's (``rlopt.config.validate``) and its
    agent class's (``check_config``). Returns the resolved config (the agent's defaults filled in,
    what ``RUN_DIR/config.yaml`` will show); raises a one-line ConfigError naming the key."""
    validate(cfg)
    return agent_class(cfg.agent).check_config(cfg)


def env_spaces(env_id: str) -> tuple[spaces.Space, spaces.Space]:
    """Build ``env_id`` once as a one-env vector env and return its single observation and action
    spaces (checked by ``make_vec_env``: a 1-D Box of observations, Discrete or 1-D Box actions).
    Anything the env id makes fail is a one-line :class:`ConfigError`."""
    try:
        probe = make_vec_env(env_id, 1)
    except ConfigError:
        raise
    except Exception as err:  # gymnasium.error.DependencyNotInstalled, an env constructor that raises
        message = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"env.id: cannot build {env_id!r} ({type(err).__name__}: {message})") from None
    try:
        return probe.single_observation_space, probe.single_action_space
    finally:
        probe.close()


def build_agent(cfg: Config) -> Any:
    """Check ``cfg``, build its env once (to learn its spaces), then seed the process, set torch's
    threads and build the agent. Anything the config or the env id makes fail is a
    :class:`ConfigError`; nothing is written."""
    cfg = check_config(cfg)
    observation_space, action_space = env_spaces(cfg.env.id)
    head_dim = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(action_space.shape[0])
    check_fits_in_memory(cfg, obs_dim=int(observation_space.shape[0]), head_dim=head_dim)
    start_run(cfg.seed, cfg.threads)  # the seed fixes the initial weights and every later draw
    return AGENTS[cfg.agent](cfg, observation_space, action_space)


def agent_from_config(
    cls: Any, config: Config | str | Path | None, overrides: Sequence[str], values: dict[str, Any]
) -> Any:
    """``cls.from_config``: the config from a Config, a YAML path and/or keyword values, its
    ``agent`` set to ``cls.name`` (the abstract ``Agent`` has none: then the config decides), built
    by :func:`build_agent`."""
    forced = {"agent": cls.name} if hasattr(cls, "name") else {}
    if isinstance(config, Config):
        cfg = load_config(None, overrides, values={**config_to_dict(config), **values, **forced})
    else:
        cfg = load_config(config, overrides, values={**values, **forced})
    return build_agent(cfg)


def load(path: str | Path, device: str | None = None) -> Any:
    """The agent saved in ``path`` (a file of ``agent.save``, a run directory, or one of its
    checkpoints), of the class its config names; see :func:`load_agent`."""
    return load_agent(None, path, device)


def load_agent(cls: Any, path: str | Path, device: str | None = None) -> Any:
    """The agent saved in ``path``: a file written by ``agent.save``, a run directory written by
    ``learn(run_dir=...)``/``rlopt train`` (its ``config.yaml`` and newest checkpoint), or one
    checkpoint of a run directory. ``device`` overrides the saved one.

    With a class ``cls`` (``PPO.load``), a file of another agent is a one-line ConfigError naming
    both; with None (``agents.load``, ``Agent.load``) it builds whichever class the config names.
    The env is built once to learn its spaces; torch's global RNG is left as it was.
    """
    caller = "Agent" if cls is None else cls.__name__
    cfg, state, source = read_saved_agent(Path(path), [] if device is None else [f"device={device}"])
    saved_cls = AGENTS.get(cfg.agent)
    if saved_cls is None or (cls is not None and saved_cls is not cls):
        shown = saved_cls.__name__ if saved_cls is not None else repr(cfg.agent)
        raise ConfigError(
            f"{caller}.load: {source} holds a {shown} agent (agent: {cfg.agent}), not {caller}; "
            f"use {shown}.load or agents.load"
        )
    cfg = check_config(cfg)
    observation_space, action_space = env_spaces(cfg.env.id)
    with torch.random.fork_rng(devices=[]):  # the throw-away initial weights draw no user randomness
        agent = saved_cls(cfg, observation_space, action_space)
    try:
        agent.load_state_dict(state)
    except Exception as err:  # weights of another env/network shape
        raise ConfigError(
            f"{caller}.load: {source} does not fit a {cfg.agent} agent on {cfg.env.id} ({type(err).__name__})"
        ) from None
    return agent
