"""The five agents of rlopt, each one file on the shared update layer (``agents.base``)."""

from agents.actor_critic import A2C
from agents.base import Agent, UpdateStats
from agents.npg import NPG
from agents.ppo import PPO
from agents.reinforce import REINFORCE
from agents.trpo import TRPO

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (REINFORCE, A2C, NPG, TRPO, PPO)}

__all__ = ["AGENTS", "A2C", "Agent", "NPG", "PPO", "REINFORCE", "TRPO", "UpdateStats"]
