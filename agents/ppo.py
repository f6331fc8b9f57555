"""Proximal policy optimization, clipped objective (Schulman et al. 2017).

Overrides one hook, :meth:`optimize`: ``ppo.epochs`` passes over the batch in random
minibatches of ``ppo.minibatch_size``; each minibatch takes one actor step on the clipped
surrogate (eq. 7) and one critic step on the (optionally clipped) value loss, each with its own
optimizer and gradient clipping (one backward pass serves both: their parameters are disjoint). With ``ppo.target_kl`` the epochs stop once the exact mean
KL(π_old‖π_θ) of a minibatch exceeds it (as in SB3/Spinning Up, but exact, not approximate).
"""

from __future__ import annotations

import torch
from torch import Tensor

from agents.base import Agent, Distribution
from rlopt.gradient_steps import minibatches
from rlopt.losses import normalize, ppo_clip_loss, value_loss
from rlopt.rollout import RolloutBatch
from rlopt.config import Config
from rlopt.errors import ConfigError


class PPO(Agent):
    """Clipped-surrogate actor and regression critic, updated together per minibatch."""

    name = "ppo"

    @classmethod
    def check_config(cls, cfg: Config) -> Config:
        """Base rules, plus: a minibatch fits in the rollout batch."""
        resolved = super().check_config(cfg)
        if cfg.ppo.minibatch_size > cfg.batch_size:
            raise ConfigError(
                f"ppo.minibatch_size ({cfg.ppo.minibatch_size}) is larger than the rollout batch "
                f"rollout.n_steps * env.num_envs = {cfg.batch_size}"
            )
        return resolved

    def optimize(self, batch: RolloutBatch, old_dist: Distribution) -> dict[str, Tensor | float]:
        cfg = self.cfg.ppo
        clip = self.coefficient("ppo.clip")
        entropy_coef = self.current_entropy_coef
        schedule = {"schedule/ppo_clip": clip, "schedule/entropy_coef": entropy_coef}  # the values this update used
        assert self.critic is not None and self.critic_optimizer is not None
        totals: dict[str, list[Tensor]] = {k: [] for k in ("loss", "entropy", "clip", "grad", "vloss", "vgrad", "kl")}
        for _ in range(cfg.epochs):
            for idx in minibatches(batch.returns.shape[0], cfg.minibatch_size):
                dist = self.actor(batch.obs[idx])
                advantages = normalize(batch.advantages[idx]) if cfg.normalize_advantage else batch.advantages[idx]
                loss, info = ppo_clip_loss(
                    dist.log_prob(batch.actions[idx]), batch.log_probs[idx], advantages, dist.entropy(), clip, entropy_coef
                )
                with torch.no_grad():
                    kl = old_dist[idx].kl(dist.detach()).mean()
                if cfg.target_kl is not None and bool(kl > cfg.target_kl):
                    totals["kl"].append(kl)
                    return {**self._summarise(totals), **schedule}
                vloss, _ = value_loss(self.critic(batch.obs[idx]), batch.returns[idx], batch.values[idx], cfg.clip_value)
                # One backward for both networks (disjoint parameters: each gets its own loss's gradient).
                (grad_norm, vgrad_norm), ok = self.gradient_steps(
                    loss + vloss,
                    (self.actor_optimizer, self.actor_parameters, self.cfg.actor.max_grad_norm),
                    (self.critic_optimizer, self.critic_parameters, self.cfg.critic.max_grad_norm),
                )
                if not ok:
                    return {**self._summarise(totals), **schedule, "skipped": True}
                for key, value in zip(
                    totals, (loss.detach(), info["entropy"], info["clip_fraction"], grad_norm, vloss.detach(), vgrad_norm, kl)
                ):
                    totals[key].append(value)
        return {**self._summarise(totals), **schedule}

    @staticmethod
    def _summarise(totals: dict[str, list[Tensor]]) -> dict[str, Tensor]:
        """Means over the minibatches that stepped; the max KL over all of them."""
        out: dict[str, Tensor] = {}
        names = {"loss": "actor_loss", "entropy": "actor_entropy", "clip": "actor/clip_fraction",
                 "grad": "actor_grad_norm", "vloss": "critic_loss", "vgrad": "critic_grad_norm"}
        for key, name in names.items():
            if totals[key]:
                out[name] = torch.stack(totals[key]).mean()
        if totals["kl"]:
            out["actor_kl_max"] = torch.stack(totals["kl"]).max()
        return out
