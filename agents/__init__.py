"""The six agents of rlopt, each one file on the shared update layer (``agents.base``).

The top floor: agents import the library (``rlopt``), never the other way round. The registry
(:data:`AGENTS`), the agent-level validation of a config (:func:`check_config`, no env built),
:func:`build_agent` and :func:`load` live in :mod:`agents.registry`, which sits under the agent
classes; this package only fills the registry and re-exports.
"""

from agents.acktr import ACKTR
from agents.actor_critic import A2C
from agents.base import Agent
from agents.npg import NPG
from agents.ppo import PPO
from agents.registry import AGENTS, agent_class, build_agent, check_config, env_spaces, load
from agents.reinforce import REINFORCE
from agents.trpo import TRPO
from rlopt.learner import UpdateStats

AGENTS.update((cls.name, cls) for cls in (REINFORCE, A2C, NPG, TRPO, PPO, ACKTR))

__all__ = [
    "AGENTS", "agent_class", "build_agent", "check_config", "env_spaces", "load",
    "A2C", "ACKTR", "Agent", "NPG", "PPO", "REINFORCE", "TRPO", "UpdateStats",
]
