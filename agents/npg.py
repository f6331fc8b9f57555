"""Natural policy gradient (Kakade 2002) as a configuration of the trust-region step.

The actor's optimizer is :class:`rlopt.trust_region.TrustRegion` (``actor.optim.name:
trust_region``): the gradient g of the surrogate is preconditioned by the metric M(θ) (Fisher
by default) with conjugate gradient, and the step is scaled to the KL radius,
δθ* = √(2δ / gᵀM⁻¹g) · M⁻¹g (seed 003; Schulman et al. 2015, App. C). NPG takes that step
as it is (``line_search: false``); :class:`agents.trpo.TRPO` only switches the line search on.
The one hook overridden here is :meth:`actor_step`; the config rules are NPG's own
(:meth:`check_config`: the actor step is ``trust_region``, its spec completed from
``DEFAULT_TRUST_REGION`` and :attr:`line_search_default`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from agents.base import Agent, Distribution
from rlopt.config import DEFAULT_TRUST_REGION, Config, check_optimizer_spec
from rlopt.errors import ConfigError
from rlopt.losses import surrogate_loss
from rlopt.rollout import RolloutBatch
from rlopt.trust_region import TRUST_REGION_NAME, TrustRegion, build_trust_region


class NPG(Agent):
    """Actor: one preconditioned trust-region step per rollout; critic: regression."""

    name = "npg"
    line_search_default: ClassVar[bool] = False
    """``actor.optim.line_search`` when the spec leaves it out: the only default NPG and TRPO differ in."""

    @classmethod
    def resolve_actor_optim(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """``trust_region`` or no name: the full trust-region spec (DEFAULT_TRUST_REGION, this agent's
        ``line_search``, then the given options). Another name is left for :meth:`check_config`."""
        if spec.get("name", TRUST_REGION_NAME) != TRUST_REGION_NAME:
            return spec
        return {**DEFAULT_TRUST_REGION, "line_search": cls.line_search_default, **spec}

    @classmethod
    def check_config(cls, cfg: Config) -> Config:
        """The actor step must be ``trust_region``; returns ``cfg`` with the full spec filled in."""
        resolved = cls.resolve_config(cfg)
        name = resolved.actor.optim.get("name")
        if name != TRUST_REGION_NAME:
            raise ConfigError(f"actor.optim.name: {cls.name} needs trust_region, got {name!r}")
        check_optimizer_spec(resolved.actor.optim, "actor.optim", resolved.num_updates)
        return resolved

    def build_actor_optimizer(self, spec: dict[str, Any]) -> TrustRegion:
        """``trust_region`` with ``max_kl`` a number or a schedule {value, name, ...}."""
        return build_trust_region(self.actor.parameters(), spec, self.cfg.num_updates, key="actor.optim")

    def actor_step(self, batch: RolloutBatch, old_dist: Distribution) -> dict[str, Tensor]:
        """Closure (surrogate loss, mean KL(π_old‖π_θ)) handed to the trust-region optimizer."""
        advantages = self.advantages(batch)
        entropy_coef = self.current_entropy_coef
        optimizer = self.actor_optimizer
        optimizer.param_groups[0]["max_kl"] = self.coefficient("actor.optim.max_kl")

        def closure() -> tuple[Tensor, Tensor]:
            dist = self.actor(batch.obs)
            loss, _ = surrogate_loss(dist.log_prob(batch.actions), batch.log_probs, advantages, dist.entropy(), entropy_coef)
            return loss, old_dist.kl(dist).mean()

        loss = optimizer.step(closure)
        result = optimizer.last_stats
        with torch.no_grad():
            entropy = self.actor(batch.obs).entropy().mean()
        return {
            "actor_loss": loss,
            "actor_entropy": entropy,
            "actor_grad_norm": torch.tensor(result.grad_norm),
            "actor/cg_residual": torch.tensor(result.cg_residual),
            "actor/line_search_steps": torch.tensor(float(result.line_search_steps)),
            "actor/step_accepted": torch.tensor(float(result.accepted)),
            "skipped": not result.finite,
        }
