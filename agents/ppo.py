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
from rlopt.config.validation import PASSES_MAX
from rlopt.errors import ConfigError, short_repr

MEANS = ("actor_loss", "actor_entropy", "actor/clip_fraction", "actor_grad_norm", "critic_loss", "critic_grad_norm")
"""The statistics PPO averages over the minibatches of an update (``UpdateStats`` names and tags)."""


class PPO(Agent):
    """Clipped-surrogate actor and regression critic, updated together per minibatch."""

    name = "ppo"
    config_section = "ppo"

    @classmethod
    def check_config(cls, cfg: Config) -> Config:
        """The ``ppo`` section's ranges, the base rules, then: a minibatch fits in the rollout batch."""
        ppo = cfg.ppo
        for ok, message in (
            (1 <= ppo.epochs <= PASSES_MAX, f"ppo.epochs must be in [1, {PASSES_MAX}], got {short_repr(ppo.epochs)}"),
            (ppo.minibatch_size >= 1, f"ppo.minibatch_size must be >= 1, got {ppo.minibatch_size}"),
            (ppo.clip_value is None or ppo.clip_value > 0, f"ppo.clip_value must be > 0 or null, got {ppo.clip_value}"),
            (ppo.target_kl is None or ppo.target_kl > 0, f"ppo.target_kl must be > 0 or null, got {ppo.target_kl}"),
        ):
            if not ok:
                raise ConfigError(message)
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
        totals: dict[str, list[Tensor]] = {k: [] for k in MEANS + ("actor_kl_max",)}
        for _ in range(cfg.epochs):
            for idx in minibatches(batch.returns.shape[0], cfg.minibatch_size):
                dist = self.actor(batch.obs[idx])
                advantages = normalize(batch.advantages[idx]) if self.normalize_advantage else batch.advantages[idx]
                loss, info = ppo_clip_loss(
                    dist.log_prob(batch.actions[idx]), batch.log_probs[idx], advantages, dist.entropy(), clip, entropy_coef
                )
                with torch.no_grad():
                    kl = old_dist[idx].kl(dist).mean()  # no_grad: no graph, and no copy needed
                if cfg.target_kl is not None and bool(kl > cfg.target_kl):
                    totals["actor_kl_max"].append(kl)
                    return {**self._summarise(totals), **schedule}
                critic_loss, _ = value_loss(self.critic(batch.obs[idx]), batch.returns[idx], batch.values[idx], cfg.clip_value)
                # One backward for both networks (disjoint parameters: each gets its own loss's gradient).
                (actor_grad_norm, critic_grad_norm), ok = self.gradient_steps(
                    loss + critic_loss,
                    (self.actor_optimizer, self.actor_parameters, self.cfg.actor.max_grad_norm),
                    (self.critic_optimizer, self.critic_parameters, self.cfg.critic.max_grad_norm),
                )
                if not ok:
                    return {**self._summarise(totals), **schedule, "skipped": True}
                for key, value in zip(totals, (loss.detach(), info["entropy"], info["clip_fraction"], actor_grad_norm,
                                               critic_loss.detach(), critic_grad_norm, kl)):  # fmt: skip
                    totals[key].append(value)
        return {**self._summarise(totals), **schedule}

    @staticmethod
    def _summarise(totals: dict[str, list[Tensor]]) -> dict[str, Tensor]:
        """Means over the minibatches that stepped (:data:`MEANS`); the max KL over all of them."""
        out = {name: torch.stack(totals[name]).mean() for name in MEANS if totals[name]}
        if totals["actor_kl_max"]:
            out["actor_kl_max"] = torch.stack(totals["actor_kl_max"]).max()
        return out
