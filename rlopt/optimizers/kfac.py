"""K-FAC for a regression network (``critic.optim.name: kfac``): the critic step of ACKTR (Wu et al. 2017).

The squared-error value loss ½(V(s) − R)² has the Gauss-Newton matrix E_s[∇V ∇Vᵀ] (output Hessian 1),
which K-FAC approximates per ``nn.Linear`` layer by A ⊗ G (Martens & Grosse 2015): A = E[ā āᵀ] of the
layer's inputs (a 1 appended for the bias), G = E[g gᵀ] of g = ∂V/∂s back-propagated from a unit
output gradient to the layer's pre-activations s (the rows of the ``gauss_newton`` metric). Factors
are running averages, π-damped and inverted every ``update_every`` steps; the per-layer step is the
actor solver's own (:func:`rlopt.trust_region.solvers.kfac.precondition_layers`).

``step()`` reads ``.grad`` as any torch optimizer (so clipping and ``zero_grad`` work as usual),
preconditions each Linear layer's gradient V into G̃⁻¹ V Ã⁻¹ (other parameters keep their plain
gradient), shrinks the whole update by ACKTR's KL clip

    ν = min(1, √(kl_clip / (lr² Σ gᵀ·precond_g)))

and takes a heavy-ball momentum step θ ← θ − lr · buf, buf ← momentum · buf + ν · precond_g.
The statistics are computed at the current θ on the input of the module's latest forward pass run
with grad enabled (a forward pre-hook keeps it; ``no_grad`` passes such as acting are ignored):
one extra forward and backward per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rlopt.errors import ConfigError
from rlopt.optimizers.family import OptimizerFamily, stand_in_layer
from rlopt.options import (
    Option, any_error_as_config_error, check_all, errors_under, real, reject_unknown_options, resolve, signature,
)  # fmt: skip
from rlopt.trust_region.metrics import GaussNewtonMetric
from rlopt.trust_region.solvers.kfac import STAT_DECAY, UPDATE_EVERY, layer_statistics, linear_layers, precondition_layers

KFAC_NAME = "kfac"
"""``critic.optim.name`` of this optimizer."""
KFAC_HYPERPARAMETERS: dict[str, Option] = {
    "lr": Option(0.25, real(0.0, low_open=True), "step size η of θ ← θ − η · buf (schedulable)"),
    "momentum": Option(0.9, real(0.0, 1.0), "heavy-ball coefficient of buf ← momentum · buf + ν · precond_g"),
    "damping": Option(0.01, real(0.0, low_open=True), "λ; the factors are damped π√λ and √λ/π (Martens & Grosse 2015, §6.3)"),
    "stat_decay": Option(0.99, STAT_DECAY.check, STAT_DECAY.doc),
    "update_every": Option(UPDATE_EVERY.default, UPDATE_EVERY.check, UPDATE_EVERY.doc),
    "kl_clip": Option(0.001, real(0.0, low_open=True), "ACKTR's trust bound: the update is shrunk so that lr² Σ gᵀ·precond_g ≤ kl_clip"),
}  # fmt: skip
"""Every hyper-parameter of :class:`KFAC`, listed once."""
KFAC_OPTIONS: tuple[str, ...] = tuple(KFAC_HYPERPARAMETERS)
"""Keys a ``kfac`` spec may set besides ``name``: exactly the constructor's keywords."""
_VALUE_ROWS = GaussNewtonMetric()
"""V(s)'s Gauss-Newton rows: one per output unit."""
_TEST_STEPS = 2


class KFAC(torch.optim.Optimizer):
    """K-FAC (Gauss-Newton) preconditioned momentum SGD over all parameters of ``module``.

    Args:
        module: the network; its ``nn.Linear`` layers are found by walking it.
        **hyperparameters: any of :data:`KFAC_HYPERPARAMETERS` (``lr``, ``momentum``, ``damping``,
            ``stat_decay``, ``update_every``, ``kl_clip``), schedulable through ``param_groups[0]``.
    """

    def __init__(self, module: nn.Module, **hyperparameters: Any) -> None:
        super().__init__(module.parameters(), resolve(KFAC_HYPERPARAMETERS, hyperparameters, "KFAC"))
        if len(self.param_groups) != 1:
            raise ConfigError("KFAC optimizes one module as one parameter group")
        self.module = module
        self._params: list[Tensor] = list(self.param_groups[0]["params"])
        self._layers = linear_layers(module, self._params)
        self._last_input: Tensor | None = None
        self._hook = module.register_forward_pre_hook(self._remember_input)

    __init__.__signature__ = signature(KFAC_HYPERPARAMETERS, leading=("self", "module"))  # type: ignore[attr-defined]

    def _remember_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """Keep the input of a forward pass with grad enabled (the loss's), for the statistics."""
        if torch.is_grad_enabled() and args and isinstance(args[0], Tensor):
            self._last_input = args[0].detach()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One preconditioned step from ``.grad`` (after ``closure()`` re-evaluates it, if given)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._last_input is None:
            raise RuntimeError("KFAC.step: run the module's forward pass with grad enabled before step()")
        group = self.param_groups[0]
        check_all(group, KFAC_HYPERPARAMETERS)
        params = self._params
        counter = self.state[params[0]]
        step = counter.get("step", 0)
        a_factors, g_factors = layer_statistics(self.module, self._last_input, self._layers, _VALUE_ROWS.rows)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        preconditioned = precondition_layers(
            self._layers, grads, a_factors, g_factors, lambda index: self.state[params[index]],
            group["stat_decay"], group["damping"], refresh=step % group["update_every"] == 0,
        )  # fmt: skip
        precond = [g if d is None else d for g, d in zip(grads, preconditioned)]
        # ACKTR's KL clip (Wu et al. 2017, §3.1; baselines' kfac ``clip_kl``).
        lr = group["lr"]
        quadratic = sum(torch.sum(g * d) for g, d in zip(grads, precond))
        scale = torch.clamp(torch.sqrt(group["kl_clip"] / (lr**2 * quadratic)), max=1.0)
        scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
        for param, direction in zip(params, precond):
            state = self.state[param]
            if group["momentum"] > 0:  # out of place: a loaded state may share tensors with its source
                buffer = state.get("momentum_buffer")
                direction = scale * direction if buffer is None else buffer * group["momentum"] + scale * direction
                state["momentum_buffer"] = direction
            else:
                direction = scale * direction
            param.add_(direction, alpha=-lr)
        counter["step"] = step + 1
        return loss


def build_kfac(module: nn.Module, spec: Mapping[str, Any], key: str = "critic.optim") -> KFAC:
    """:class:`KFAC` over ``module`` from ``{name: kfac, <option>: value, ...}``; bad specs raise a
    one-line :class:`ConfigError` naming ``key.<option>``."""
    reject_unknown_options(spec, KFAC_OPTIONS, KFAC_NAME, key)
    with errors_under(key, KFAC_OPTIONS):
        return KFAC(module, **{option: value for option, value in spec.items() if option != "name"})


class KFACFamily(OptimizerFamily):
    """``kfac``: the critic's K-FAC step (it needs the network itself, to find its layers)."""

    label: ClassVar[str] = KFAC_NAME
    roles: ClassVar[tuple[str, ...]] = ("critic",)
    needs: ClassVar[str] = "K-FAC, which needs the network itself, built by rlopt.optimizers.build"

    def names(self) -> tuple[str, ...]:
        return (KFAC_NAME,)

    def options(self, name: str) -> tuple[str, ...]:
        return KFAC_OPTIONS

    def build(self, module: nn.Module, spec: Mapping[str, Any], key: str) -> KFAC:
        return build_kfac(module, spec, key)

    def check(self, spec: Mapping[str, Any], key: str) -> None:
        """Build on a stand-in Linear layer and take test steps of a squared loss."""
        layer = stand_in_layer(out_features=1)
        with any_error_as_config_error(key):
            optimizer = self.build(layer, spec, key)
            for _ in range(_TEST_STEPS):
                optimizer.zero_grad()
                layer(torch.eye(2)).square().mean().backward()
                optimizer.step()
        if not all(bool(torch.isfinite(param).all()) for param in layer.parameters()):
            raise ConfigError(f"{key}: kfac turns a test step into non-finite parameters; check its numeric options")

    def wrong_role(self, key: str) -> str:
        return f"{key}.name: kfac is the critic's K-FAC optimizer; for a K-FAC actor step use name: trust_region, solver: kfac"


KFAC_FAMILY = KFACFamily()
"""The registry entry."""
