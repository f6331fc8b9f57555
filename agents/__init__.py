"""The five agents of rlopt, each one file on the shared update layer (``agents.base``)."""

from gymnasium import spaces

from agents.actor_critic import A2C
from agents.base import Agent, UpdateStats
from agents.npg import NPG
from agents.ppo import PPO
from agents.reinforce import REINFORCE
from agents.trpo import TRPO
from rlopt.config import Config, check_fits_in_memory
from rlopt.errors import ConfigError
from rlopt.rollout import make_vec_env

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (REINFORCE, A2C, NPG, TRPO, PPO)}


def build_agent(cfg: Config) -> Agent:
    """Build ``cfg``'s env once (to learn its spaces) and the agent: every check that needs the env
    or the networks. Anything the env id makes fail is a :class:`ConfigError`; nothing is written."""
    try:
        probe = make_vec_env(cfg.env.id, 1)
    except ConfigError:
        raise
    except Exception as err:  # gymnasium.error.DependencyNotInstalled, an env constructor that raises
        message = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"env.id: cannot build {cfg.env.id!r} ({type(err).__name__}: {message})") from None
    try:
        observation_space, action_space = probe.single_observation_space, probe.single_action_space
    finally:
        probe.close()
    # make_vec_env has checked: a 1-D Box of observations, Discrete or 1-D Box actions.
    head_dim = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(action_space.shape[0])
    check_fits_in_memory(cfg, obs_dim=int(observation_space.shape[0]), head_dim=head_dim)
    return AGENTS[cfg.agent](cfg, observation_space, action_space)


__all__ = ["AGENTS", "build_agent", "A2C", "Agent", "NPG", "PPO", "REINFORCE", "TRPO", "UpdateStats"]
