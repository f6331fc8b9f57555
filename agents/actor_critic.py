"""Advantage actor-critic (A2C; Mnih et al. 2016, synchronous variant).

Each rollout of ``n_steps`` × ``num_envs`` transitions gives GAE(γ, λ) advantages
(Schulman et al. 2016, the base class's targets); :meth:`A2C.optimize` takes one actor step,
then regresses the critic onto the λ-returns for ``critic.updates`` epochs. The actor step is
the hook the trust-region agents replace (:class:`agents.npg.NPG`), the targets the one
REINFORCE replaces (:class:`agents.reinforce.REINFORCE`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from agents.base import Agent, Distribution
from rlopt.gradient_steps import minibatches
from rlopt.losses import policy_gradient_loss, value_loss
from rlopt.rollout import RolloutBatch


class A2C(Agent):
    """One actor step on the whole batch, then the critic regression."""

    name = "a2c"

    def optimize(self, batch: RolloutBatch, old_dist: Distribution) -> dict[str, Tensor | float]:
        """The actor step, then (unless it was skipped) the critic regression."""
        info = self.actor_step(batch, old_dist)
        if self.critic is not None and not info.get("skipped", False):
            info.update(self.fit_critic(batch))
        return info

    def actor_step(self, batch: RolloutBatch, old_dist: Distribution) -> dict[str, Tensor | float]:
        """Hook: one gradient step on L = −E[log π Â] − c_H E[H] with the actor's torch.optim optimizer."""
        entropy_coef = self.current_entropy_coef
        dist = self.actor(batch.obs)
        loss, info = policy_gradient_loss(
            dist.log_prob(batch.actions), self.advantages(batch), dist.entropy(), entropy_coef
        )
        grad_norm, ok = self.gradient_step(self.actor_optimizer, loss, self.actor_parameters, self.cfg.actor.max_grad_norm)
        return {"actor_loss": loss.detach(), "actor_entropy": info["entropy"], "actor_grad_norm": grad_norm,
                "schedule/entropy_coef": entropy_coef, "skipped": not ok}  # fmt: skip

    def fit_critic(self, batch: RolloutBatch) -> dict[str, Tensor]:
        """``critic.updates`` epochs of ½(V − R)² regression in minibatches of ``critic.minibatch_size``."""
        assert self.critic is not None and self.critic_optimizer is not None
        losses, norms = [], []
        for _ in range(self.cfg.critic.updates):
            for idx in minibatches(batch.returns.shape[0], self.cfg.critic.minibatch_size):
                loss, _ = value_loss(self.critic(batch.obs[idx]), batch.returns[idx])
                grad_norm, ok = self.gradient_step(
                    self.critic_optimizer, loss, self.critic_parameters, self.cfg.critic.max_grad_norm
                )
                if not ok:
                    return {"skipped": True}
                losses.append(loss.detach())
                norms.append(grad_norm)
        return {"critic_loss": torch.stack(losses).mean(), "critic_grad_norm": torch.stack(norms).mean()}
