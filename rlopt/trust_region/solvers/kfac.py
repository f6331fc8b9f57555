"""The ``kfac`` solver: Kronecker-factored blocks of M(θ), one per ``nn.Linear`` layer (Martens &
Grosse 2015, K-FAC; Wu et al. 2017, ACKTR; seed 003, "Practical computation").

For a layer s = W ā (ā = [a; 1] its input with a 1 appended for the bias, s its pre-activation), the
per-sample gradient of a row r is ∇_V r = g āᵀ with g = ∂r/∂s and V = [W | b] (out × (in+1)). K-FAC
assumes g and ā independent:

    E[vec(g āᵀ) vec(g āᵀ)ᵀ] ≈ A ⊗ G,   A = E[ā āᵀ],   G = E[g gᵀ]     (column-major vec)

Factors are running averages (``stat_decay``), damped with the π-correction of Martens & Grosse
(2015, §6.3): Ã = A + π√λ I, G̃ = G + √λ/π I, π = √((tr A / dim A) / (tr G / dim G)); their
inverses are refreshed every ``update_every`` steps. The block's direction is
d = −(Ã ⊗ G̃)⁻¹ vec(V) = −vec(G̃⁻¹ V Ã⁻¹) for the layer's gradient V.

Parameters outside an ``nn.Linear`` layer (a Gaussian policy's log-std) get the ``diagonal`` solver's
treatment: d = −g / (diag(M) + λ). Layers are found by walking ``MetricInputs.module`` and matched
to the optimizer's parameters by identity, never by name.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from rlopt.trust_region.metrics.base import MetricInputs, unflatten
from rlopt.trust_region.solvers.diagonal import diagonal_direction, metric_diagonal
from rlopt.trust_region.solvers.rows import Row


# ----------------------------------------------------------------- pure numerical pieces
def input_factor(layer_inputs: Tensor, bias: bool) -> Tensor:
    """A = E_i[ā_i ā_iᵀ] of inputs [N, in], ā = [a; 1] when the layer has a bias."""
    if bias:
        layer_inputs = torch.cat([layer_inputs, layer_inputs.new_ones(layer_inputs.shape[0], 1)], dim=1)
    return layer_inputs.T @ layer_inputs / layer_inputs.shape[0]


def output_factor(output_grads: Sequence[Tensor]) -> Tensor:
    """G = E_i[Σ_j g_ij g_ijᵀ] of back-propagated gradients [N, out] at the pre-activations, one
    tensor per row function j (several for Gauss-Newton: one per output unit)."""
    total = sum(g.T @ g for g in output_grads)
    return total / output_grads[0].shape[0]


def running_average(old: Tensor | None, new: Tensor, decay: float) -> Tensor:
    """decay · old + (1 − decay) · new; the first statistic (old None) is taken as is."""
    return new if old is None else torch.add(old * decay, new, alpha=1.0 - decay)


def pi_damped_inverses(a_factor: Tensor, g_factor: Tensor, damping: float) -> tuple[Tensor, Tensor]:
    """(Ã⁻¹, G̃⁻¹) with Ã = A + π√λ I, G̃ = G + √λ/π I, π = √((tr A/dim A) / (tr G/dim G))
    (Martens & Grosse 2015, §6.3); π = 1 when either trace is 0 (a dead layer)."""
    pi = torch.sqrt((torch.trace(a_factor) / a_factor.shape[0]) / (torch.trace(g_factor) / g_factor.shape[0]))
    pi = torch.where(torch.isfinite(pi) & (pi > 0), pi, torch.ones_like(pi))
    root = damping**0.5
    eye_a = torch.eye(a_factor.shape[0], dtype=a_factor.dtype, device=a_factor.device)
    eye_g = torch.eye(g_factor.shape[0], dtype=g_factor.dtype, device=g_factor.device)
    return torch.linalg.inv(a_factor + pi * root * eye_a), torch.linalg.inv(g_factor + root / pi * eye_g)


def kfac_precondition(layer_grad: Tensor, a_inverse: Tensor, g_inverse: Tensor) -> Tensor:
    """G̃⁻¹ V Ã⁻¹ = unvec((Ã ⊗ G̃)⁻¹ vec(V)) for V [out, in(+1)] (both factors symmetric)."""
    return g_inverse @ layer_grad @ a_inverse


# ----------------------------------------------------------------- layers and statistics
class LinearLayer(NamedTuple):
    """An ``nn.Linear`` whose parameters are optimizer parameters, with their indices."""

    module: nn.Linear
    weight: int
    """Index of the weight in the parameter list."""
    bias: int | None
    """Index of the bias (None for a layer without bias)."""


def linear_layers(module: nn.Module, params: Sequence[Tensor]) -> list[LinearLayer]:
    """The ``nn.Linear`` layers of ``module`` whose weight (and bias, if any) are in ``params``,
    matched by identity; a layer only partly in ``params`` is left to the diagonal treatment."""
    index = {id(p): i for i, p in enumerate(params)}
    layers = []
    for layer in module.modules():
        if not isinstance(layer, nn.Linear) or id(layer.weight) not in index:
            continue
        if layer.bias is not None and id(layer.bias) not in index:
            continue
        layers.append(LinearLayer(layer, index[id(layer.weight)], None if layer.bias is None else index[id(layer.bias)]))
    return layers


def layer_statistics(
    module: nn.Module, obs: Tensor, layers: Sequence[LinearLayer], rows_of: Any
) -> tuple[list[Tensor], list[Tensor]]:
    """Batch factors (A_l, G_l) of each layer: one forward of ``module`` on ``obs`` with hooks that keep
    each layer's input and pre-activation, then one backward of Σ_i r(y_i) per row r.

    ``rows_of(outputs) -> list[Row]`` gives the row functions at the outputs (sampling happens there).
    """
    captured: dict[int, tuple[Tensor, Tensor]] = {}

    def keep(layer: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        captured[id(layer)] = (args[0].detach(), output)

    handles = [layer.module.register_forward_hook(keep) for layer in layers]
    try:
        with torch.enable_grad():
            outputs = module(obs)
    finally:
        for handle in handles:
            handle.remove()
    pre_activations = [captured[id(layer.module)][1] for layer in layers]
    rows: list[Row] = rows_of(outputs)
    grads: list[list[Tensor]] = [[] for _ in layers]
    for number, row in enumerate(rows):
        with torch.enable_grad():
            total = row.function(outputs, *row.targets).sum()
        pulled = torch.autograd.grad(total, pre_activations, retain_graph=number + 1 < len(rows), allow_unused=True)
        for layer_grads, g in zip(grads, pulled):
            if g is not None:
                layer_grads.append(g.detach())
    a_factors = [input_factor(captured[id(layer.module)][0], layer.bias is not None) for layer in layers]
    g_factors = [
        output_factor(g) if g else pre.new_zeros(pre.shape[-1], pre.shape[-1]) for g, pre in zip(grads, pre_activations)
    ]
    return a_factors, g_factors


def update_layer_state(
    state: MutableMapping[str, Tensor], a_batch: Tensor, g_batch: Tensor, decay: float, damping: float, refresh: bool
) -> None:
    """Fold the batch factors into the running ones (``kfac_A``, ``kfac_G``) and, when ``refresh``
    (or none exist yet), recompute the π-damped inverses (``kfac_A_inv``, ``kfac_G_inv``)."""
    state["kfac_A"] = running_average(state.get("kfac_A"), a_batch, decay)
    state["kfac_G"] = running_average(state.get("kfac_G"), g_batch, decay)
    if refresh or "kfac_A_inv" not in state:
        state["kfac_A_inv"], state["kfac_G_inv"] = pi_damped_inverses(state["kfac_A"], state["kfac_G"], damping)


def kfac_solver_direction(
    inputs: MetricInputs,
    params: Sequence[Tensor],
    gradient: Tensor,
    rows_of: Any,
    state: MutableMapping[Tensor, dict[str, Any]],
    step: int,
    damping: float,
    stat_decay: float,
    update_every: int,
) -> Tensor:
    """The ``kfac`` solver's d for all ``params``: Kronecker blocks for the Linear layers of
    ``inputs.module`` (their factors kept in ``state[weight]``), diagonal for the rest.

    ``step`` counts the optimizer's earlier steps: inverses are refreshed when it is a multiple of
    ``update_every``. The same sampled rows serve the factors and the diagonal of the rest.
    """
    if inputs.module is None:
        raise ValueError("solver 'kfac' needs MetricInputs.module (the module whose Linear layers it factors)")
    layers = linear_layers(inputs.module, params)
    sampled: list[list[Row]] = []

    def rows_once(outputs: Tensor) -> list[Row]:
        sampled.append(rows_of(outputs))
        return sampled[0]

    a_factors, g_factors = layer_statistics(inputs.module, inputs.inputs, layers, rows_once)
    pieces = list(unflatten(gradient, params))
    directions: list[Tensor | None] = [None] * len(params)
    for layer, a_batch, g_batch in zip(layers, a_factors, g_factors):
        layer_state = state[params[layer.weight]]
        update_layer_state(layer_state, a_batch, g_batch, stat_decay, damping, refresh=step % update_every == 0)
        weight_grad = pieces[layer.weight]
        layer_grad = weight_grad if layer.bias is None else torch.cat([weight_grad, pieces[layer.bias][:, None]], dim=1)
        block = -kfac_precondition(layer_grad, layer_state["kfac_A_inv"], layer_state["kfac_G_inv"])
        directions[layer.weight] = block[:, : weight_grad.shape[1]]
        if layer.bias is not None:
            directions[layer.bias] = block[:, weight_grad.shape[1]]
    rest = [i for i, d in enumerate(directions) if d is None]
    if rest:
        with torch.enable_grad():
            diagonal = metric_diagonal(inputs, params, sampled[0], only=rest)
        rest_grad = torch.cat([pieces[i].reshape(-1) for i in rest])
        rest_direction = unflatten(diagonal_direction(rest_grad, diagonal, damping), [params[i] for i in rest])
        for i, d in zip(rest, rest_direction):
            directions[i] = d
    return torch.cat([d.reshape(-1) for d in directions])  # type: ignore[union-attr]
