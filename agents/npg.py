"""Natural policy gradient (Kakade 2002) as a configuration of the trust-region step.

The actor's optimizer is :class:`rlopt.trust_region.TrustRegion` (``actor.optim.name:
trust_region``): the gradient g of the surrogate is preconditioned by the metric M(θ) (Fisher
by default) with conjugate gradient, and the step is scaled to the KL radius,
δθ* = √(2δ / gᵀM⁻¹g) · M⁻¹g (seed 003; Schulman et al. 2015, App. C). NPG takes that step
as it is (``line_search: false``); :class:`agents.trpo.TRPO` only switches the line search on.
The one hook overridden here is :meth:`actor_step`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agents.base import Agent, Distribution
from rlopt.errors import ConfigError
from rlopt.losses import surrogate_loss
from rlopt.rollout import RolloutBatch
from rlopt.schedules import ScheduledValue, parse_scheduled_value
from rlopt.trust_region import TrustRegion


class NPG(Agent):
    """Actor: one preconditioned trust-region step per rollout; critic: regression."""

    name = "npg"
    line_search_default = False

    def build_actor_optimizer(self, spec: dict[str, Any]) -> torch.optim.Optimizer:
        """``trust_region`` with ``max_kl`` a number or a schedule {value, name, ...}."""
        if spec.get("name", "trust_region") != "trust_region":
            raise ConfigError(f"actor.optim.name: {self.name} needs trust_region, got '{spec.get('name')}'")
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        kwargs.setdefault("line_search", self.line_search_default)
        self.max_kl: ScheduledValue = parse_scheduled_value(
            kwargs.pop("max_kl", 0.01), self.cfg.num_updates, key="actor.optim.max_kl"
        )
        try:
            return TrustRegion(self.actor.parameters(), max_kl=self.max_kl.value(0), **kwargs)
        except TypeError as err:
            raise ConfigError(f"actor.optim: {err}") from None

    def actor_step(self, batch: RolloutBatch, old_dist: Distribution) -> dict[str, Tensor]:
        """Closure (surrogate loss, mean KL(π_old‖π_θ)) handed to the trust-region optimizer."""
        advantages = self.advantages(batch)
        entropy_coef = self.current_entropy_coef
        self.actor_optimizer.param_groups[0]["max_kl"] = self.max_kl.value(self.updates_done)

        def closure() -> tuple[Tensor, Tensor]:
            dist = self.actor(batch.obs)
            loss, _ = surrogate_loss(dist.log_prob(batch.actions), batch.log_probs, advantages, dist.entropy(), entropy_coef)
            return loss, old_dist.kl(dist).mean()

        result = self.actor_optimizer.step(closure)
        with torch.no_grad():
            entropy = self.actor(batch.obs).entropy().mean()
        return {
            "actor_loss": torch.tensor(result.loss_before),
            "actor_entropy": entropy,
            "actor_grad_norm": torch.tensor(result.grad_norm),
            "actor_cg_residual": torch.tensor(result.cg_residual),
            "actor_line_search_steps": torch.tensor(float(result.line_search_steps)),
            "actor_step_accepted": torch.tensor(float(result.accepted)),
            "skipped": not result.finite,
        }
