"""Advantage actor-critic (A2C; Mnih et al. 2016, synchronous variant).

Each rollout of ``n_steps`` × ``num_envs`` transitions gives GAE(γ, λ) advantages
(Schulman et al. 2016); the actor takes one step of its torch.optim optimizer on
L = −E[log π(a|s) Â] − c_H E[H], and the critic regresses V onto the λ-returns for
``critic.updates`` epochs. All of this is the base :class:`~agents.base.Agent`; A2C adds nothing.
"""

from __future__ import annotations

from agents.base import Agent


class A2C(Agent):
    """Advantage actor-critic: the base update, unchanged."""

    name = "a2c"
