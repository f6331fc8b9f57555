"""K-FAC for a regression network (``critic.optim.name: kfac``): the critic step of ACKTR (Wu et al. 2017).

The squared-error value loss ½(V(s) − R)² has the Gauss-Newton matrix E_s[∇V ∇Vᵀ] (output Hessian 1),
which K-FAC approximates per ``nn.Linear`` layer by A ⊗ G (Martens & Grosse 2015): A = E[ā āᵀ] of the
layer's inputs (a 1 appended for the bias), G = E[g gᵀ] of g = ∂V/∂s back-propagated from a unit
output gradient to the layer's pre-activations s. Factors are running averages, π-damped and
inverted every ``update_every`` steps (the pure pieces are :mod:`rlopt.trust_region.solvers.kfac`).

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

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rlopt.errors import ConfigError
from rlopt.optim import build_optimizer
from rlopt.trust_region.solvers.kfac import kfac_precondition, layer_statistics, linear_layers, update_layer_state
from rlopt.trust_region.solvers.rows import Row

KFAC_NAME = "kfac"
"""``critic.optim.name`` of this optimizer."""


def _output_unit(unit: int, outputs: Tensor) -> Tensor:
    """The ``unit``-th output of each row (outputs [N] or [N, k]): the Gauss-Newton row function."""
    return outputs.reshape(outputs.shape[0], -1)[:, unit]


def _gauss_newton_rows(outputs: Tensor) -> list[Row]:
    """One row per output unit: G = E[Σ_k ∂y_k/∂s ∂y_k/∂sᵀ] (for V(s), a single unit)."""
    units = outputs.reshape(outputs.shape[0], -1).shape[1]
    return [Row(functools.partial(_output_unit, unit), ()) for unit in range(units)]


def _check_hyperparameters(
    lr: float, momentum: float, damping: float, stat_decay: float, update_every: int, kl_clip: float
) -> None:
    """One-line :class:`ConfigError` naming the first option outside its range."""
    for name, value in (("lr", lr), ("momentum", momentum), ("damping", damping), ("stat_decay", stat_decay), ("kl_clip", kl_clip)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if not lr > 0:
        raise ConfigError(f"lr must be > 0, got {lr}")
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
    if not damping > 0:
        raise ConfigError(f"damping must be > 0, got {damping}")
    if not 0 <= stat_decay < 1:
        raise ConfigError(f"stat_decay must be in [0, 1), got {stat_decay}")
    if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
        raise ConfigError(f"update_every must be an integer >= 1, got {update_every!r}")
    if not kl_clip > 0:
        raise ConfigError(f"kl_clip must be > 0, got {kl_clip}")


class KFAC(torch.optim.Optimizer):
    """K-FAC (Gauss-Newton) preconditioned momentum SGD over all parameters of ``module``.

    Args:
        module: the network; its ``nn.Linear`` layers are found by walking it.
        lr: step size η of θ ← θ − η · buf (schedulable through ``param_groups[0]["lr"]``).
        momentum: heavy-ball coefficient of buf ← momentum · buf + ν · precond_g.
        damping: λ; the factors are damped π√λ and √λ/π (Martens & Grosse 2015, §6.3).
        stat_decay: running-average decay of the factors A and G.
        update_every: the damped factor inverses are recomputed every this many steps.
        kl_clip: ACKTR's trust bound: the update is shrunk so that lr² Σ gᵀ·precond_g ≤ kl_clip.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: float = 0.25,
        momentum: float = 0.9,
        damping: float = 0.01,
        stat_decay: float = 0.99,
        update_every: int = 1,
        kl_clip: float = 0.001,
    ) -> None:
        _check_hyperparameters(lr, momentum, damping, stat_decay, update_every, kl_clip)
        defaults = dict(
            lr=lr, momentum=momentum, damping=damping, stat_decay=stat_decay, update_every=update_every, kl_clip=kl_clip
        )
        super().__init__(module.parameters(), defaults)
        if len(self.param_groups) != 1:
            raise ConfigError("KFAC optimizes one module as one parameter group")
        self.module = module
        self._params: list[Tensor] = list(self.param_groups[0]["params"])
        self._layers = linear_layers(module, self._params)
        self._last_input: Tensor | None = None
        self._hook = module.register_forward_pre_hook(self._remember_input)

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
        _check_hyperparameters(*(group[k] for k in ("lr", "momentum", "damping", "stat_decay", "update_every", "kl_clip")))
        params = self._params
        counter = self.state[params[0]]
        step = counter.get("step", 0)
        a_factors, g_factors = layer_statistics(self.module, self._last_input, self._layers, _gauss_newton_rows)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        precond = list(grads)
        for layer, a_batch, g_batch in zip(self._layers, a_factors, g_factors):
            state = self.state[params[layer.weight]]
            update_layer_state(
                state, a_batch, g_batch, group["stat_decay"], group["damping"], refresh=step % group["update_every"] == 0
            )
            weight_grad = grads[layer.weight]
            layer_grad = weight_grad if layer.bias is None else torch.cat([weight_grad, grads[layer.bias][:, None]], 1)
            block = kfac_precondition(layer_grad, state["kfac_A_inv"], state["kfac_G_inv"])
            precond[layer.weight] = block[:, : weight_grad.shape[1]]
            if layer.bias is not None:
                precond[layer.bias] = block[:, weight_grad.shape[1]]
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


KFAC_OPTIONS: tuple[str, ...] = tuple(name for name in inspect.signature(KFAC.__init__).parameters if name not in ("self", "module"))
"""Keys a ``kfac`` spec may set besides ``name``: exactly the constructor's keywords."""


def build_kfac(module: nn.Module, spec: Mapping[str, Any], key: str = "critic.optim") -> KFAC:
    """:class:`KFAC` over ``module`` from ``{name: kfac, <option>: value, ...}``; bad specs raise a
    one-line :class:`ConfigError` naming ``key.<option>``."""
    kwargs = {option: value for option, value in spec.items() if option != "name"}
    for option in kwargs:
        if option not in KFAC_OPTIONS:
            raise ConfigError(f"{key}.{option}: unknown option for {KFAC_NAME}; accepted: name, {', '.join(KFAC_OPTIONS)}")
    try:
        return KFAC(module, **kwargs)
    except ConfigError as err:  # names the bare option ("damping must be ..."): prefix the key
        message = str(err)
        raise ConfigError(f"{key}.{message}" if message.split(" ")[0] in KFAC_OPTIONS else f"{key}: {message}") from None


def build_network_optimizer(module: nn.Module, spec: Mapping[str, Any], key: str) -> torch.optim.Optimizer:
    """The optimizer of ``module`` named by ``spec``: :class:`KFAC` (which needs the module itself)
    for ``kfac``, any other name through :func:`rlopt.optim.build_optimizer` on its parameters."""
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str) and spec["name"].lower() == KFAC_NAME:
        return build_kfac(module, spec, key)
    return build_optimizer(module.parameters(), spec, key=key)
