"""The six agents of rlopt, each one file on the shared update layer (``agents.base``).

The top floor: agents import the library (``rlopt``), never the other way round. This package
holds the registry (:data:`AGENTS`), the agent-level validation of a config
(:func:`check_config`, no env built) and :func:`build_agent`, where a run's process-wide setup
(threads, seeding) happens right before the networks are built.
"""

from pathlib import Path

from gymnasium import spaces

from agents.acktr import ACKTR
from agents.actor_critic import A2C
from agents.base import Agent
from agents.npg import NPG
from agents.ppo import PPO
from agents.reinforce import REINFORCE
from agents.trpo import TRPO
from rlopt.config import Config, check_fits_in_memory, validate
from rlopt.envs import make_vec_env
from rlopt.errors import ConfigError
from rlopt.learner import UpdateStats
from rlopt.runtime import start_run

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (REINFORCE, A2C, NPG, TRPO, PPO, ACKTR)}
"""Every agent by its config name (``agent: ppo``)."""


def agent_class(name: str) -> type[Agent]:
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


def build_agent(cfg: Config) -> Agent:
    """Check ``cfg``, build its env once (to learn its spaces), then seed the process, set torch's
    threads and build the agent. Anything the config or the env id makes fail is a
    :class:`ConfigError`; nothing is written."""
    cfg = check_config(cfg)
    observation_space, action_space = env_spaces(cfg.env.id)
    head_dim = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(action_space.shape[0])
    check_fits_in_memory(cfg, obs_dim=int(observation_space.shape[0]), head_dim=head_dim)
    start_run(cfg.seed, cfg.threads)  # the seed fixes the initial weights and every later draw
    return AGENTS[cfg.agent](cfg, observation_space, action_space)


def load(path: str | Path, device: str | None = None) -> Agent:
    """The agent saved in ``path`` (a file of ``agent.save``, a run directory, or one of its
    checkpoints), of the class its config names; see :meth:`Agent.load`."""
    return Agent.load(path, device=device)


__all__ = [
    "AGENTS", "agent_class", "build_agent", "check_config", "env_spaces", "load",
    "A2C", "ACKTR", "Agent", "NPG", "PPO", "REINFORCE", "TRPO", "UpdateStats",
]
