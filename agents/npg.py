"""Natural policy gradient (Kakade 2002) as a configuration of the trust-region step.

The actor's optimizer is :class:`rlopt.trust_region.TrustRegion` (``actor.optim.name:
trust_region``): the gradient g of the surrogate is preconditioned by the metric M(θ) (Fisher
by default) with conjugate gradient, and the step is scaled to the KL radius,
δθ* = √(2δ / gᵀM⁻¹g) · M⁻¹g (Schulman et al. 2015, App. C; docs/theory.md#trust-region-step). NPG takes that step
as it is (``line_search: false``); :class:`agents.trpo.TRPO` only switches the line search on.
The one hook overridden here is :meth:`actor_step`; the config rules are NPG's own
(:meth:`check_config`: the actor step is the ``trust_region`` family's, its spec completed from
``DEFAULT_TRUST_REGION`` and :attr:`line_search_default`). The optimizer is built by its family
like any other, and ``max_kl`` is scheduled on its param group like ``lr``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.func import functional_call

from agents.actor_critic import A2C
from agents.base import Distribution
from rlopt import optimizers
from rlopt.config import DEFAULT_TRUST_REGION, Config, check_optimizer_spec
from rlopt.errors import ConfigError
from rlopt.losses import surrogate_loss, surrogate_loss_per_sample
from rlopt.networks import Actor, ActorOutputs
from rlopt.rollout import RolloutBatch
from rlopt.optimizers.trust_region import TRUST_REGION_FAMILY
from rlopt.trust_region import MetricInputs


def _sample_loss(
    actor: Actor, entropy_coef: float, outputs: Tensor, actions: Tensor, old_log_probs: Tensor, advantages: Tensor
) -> Tensor:
    """Per-sample surrogate l_i of outputs y [B, k] (its mean is the closure's loss)."""
    dist = actor.distribution(outputs)
    return surrogate_loss_per_sample(dist.log_prob(actions), old_log_probs, advantages, dist.entropy(), entropy_coef)


def _sample_log_prob(actor: Actor, outputs: Tensor, actions: Tensor, *_: Tensor) -> Tensor:
    """log π(a_i|s_i) of outputs y [B, k] at the batch's actions."""
    return actor.distribution(outputs).log_prob(actions)


def _sample_actions(actor: Actor, outputs: Tensor) -> Tensor:
    """Actions a ~ π(·|y) for outputs y [B, k] (the sampled Fisher of the kfac/diagonal solvers)."""
    return actor.distribution(outputs).sample()


def actor_metric_inputs(
    actor: Actor, obs: Tensor, actions: Tensor, old_log_probs: Tensor, advantages: Tensor, entropy_coef: float
) -> MetricInputs:
    """The actor on a batch as pure functions of its parameters, for the metrics that differentiate
    its outputs or per-sample terms; the per-sample loss is the closure's surrogate, row by row.
    Cheap to build (no computation); ``fisher`` and ``identity`` with CG never read it; the ``kfac``
    solver walks ``module`` for its Linear layers."""
    outputs_module = ActorOutputs(actor)
    return MetricInputs(
        params=dict(outputs_module.named_parameters()),
        forward=functools.partial(functional_call, outputs_module),
        inputs=obs,
        targets=(actions, old_log_probs, advantages),
        sample_loss=functools.partial(_sample_loss, actor, entropy_coef),
        sample_log_prob=functools.partial(_sample_log_prob, actor),
        module=outputs_module,
        sample_actions=functools.partial(_sample_actions, actor),
    )


class NPG(A2C):
    """Actor: one preconditioned trust-region step per rollout; critic: regression (A2C's)."""

    name = "npg"
    line_search_default: ClassVar[bool] = False
    """``actor.optim.line_search`` when the spec leaves it out: the only default NPG and TRPO differ in."""

    @classmethod
    def resolve_actor_optim(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """A trust-region spec, or one without a name: the full trust-region spec
        (DEFAULT_TRUST_REGION, this agent's ``line_search``, then the given options). Another
        family is left for :meth:`check_config`."""
        if "name" in spec and optimizers.family_of(spec["name"]) is not TRUST_REGION_FAMILY:
            return spec
        return {**DEFAULT_TRUST_REGION, "line_search": cls.line_search_default, **spec}

    @classmethod
    def check_config(cls, cfg: Config) -> Config:
        """The actor step must be the trust-region family's; returns ``cfg`` with the full spec filled in."""
        resolved = cls.resolve_config(cfg)
        name = resolved.actor.optim.get("name")
        if optimizers.family_of(name) is not TRUST_REGION_FAMILY:
            raise ConfigError(f"actor.optim.name: {cls.name} needs {TRUST_REGION_FAMILY.label}, got {name!r}")
        check_optimizer_spec(resolved.actor.optim, "actor.optim", resolved.num_updates)
        return resolved

    def actor_closure(
        self, batch: RolloutBatch, old_dist: Distribution, advantages: Tensor, entropy_coef: float, inputs: MetricInputs
    ) -> Callable[[], tuple[Tensor, Tensor]]:
        """The trust-region closure: (surrogate loss, mean KL(π_old‖π_θ)) at the current parameters.

        When the optimizer's solver reuses the closure's forward (:meth:`TrustRegion.reuses_forward`)
        the actor runs through ``inputs.module`` (its outputs y), whose forward the solver records;
        otherwise through ``actor(obs)``, the same values except that a Gaussian's entropy rounds
        differently through y.
        """
        through_outputs = self.actor_optimizer.reuses_forward(inputs)

        def closure() -> tuple[Tensor, Tensor]:
            dist = self.actor.distribution(inputs.module(batch.obs)) if through_outputs else self.actor(batch.obs)
            loss, _ = surrogate_loss(dist.log_prob(batch.actions), batch.log_probs, advantages, dist.entropy(), entropy_coef)
            return loss, old_dist.kl(dist).mean()

        return closure

    def actor_step(self, batch: RolloutBatch, old_dist: Distribution) -> dict[str, Tensor | float]:
        """Closure (surrogate loss, mean KL(π_old‖π_θ)) and :func:`actor_metric_inputs` handed to
        the trust-region optimizer; its diagnostics become ``actor/*`` tags."""
        advantages = self.advantages(batch)
        entropy_coef = self.current_entropy_coef
        optimizer = self.actor_optimizer
        max_kl = optimizer.param_groups[0]["max_kl"]  # this update's, set by the param-group scheduler

        inputs = actor_metric_inputs(self.actor, batch.obs, batch.actions, batch.log_probs, advantages, entropy_coef)
        loss = optimizer.step(self.actor_closure(batch, old_dist, advantages, entropy_coef, inputs), inputs)
        result = optimizer.last_stats
        with torch.no_grad():
            entropy = self.actor(batch.obs).entropy().mean()
        diagnostics = {
            "actor/cg_residual": result.cg_residual,
            "actor/line_search_steps": result.line_search_steps,
            "actor/step_accepted": result.accepted,
            "actor/cos_to_grad": result.cos_to_grad,
            "actor/expected_improvement": result.expected_improvement,
            "actor/actual_improvement": result.actual_improvement,
            "actor/improvement_ratio": result.improvement_ratio,
            "actor/step_norm": result.step_norm,
            "actor/step_fraction": result.step_fraction,
            "actor/cg_iterations": result.cg_iterations,
            "actor/negative_curvature": result.negative_curvature,
        }
        return {
            "actor_loss": loss,
            "actor_entropy": entropy,
            "actor_grad_norm": torch.tensor(result.grad_norm),
            **{tag: torch.tensor(float(value)) for tag, value in diagnostics.items()},
            "schedule/entropy_coef": entropy_coef,
            "schedule/max_kl": max_kl,
            "skipped": not result.finite,
        }
