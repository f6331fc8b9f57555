"""The ``kfac`` solver: Kronecker-factored blocks of M(θ), one per ``nn.Linear`` layer (Martens &
Grosse 2015, K-FAC; Wu et al. 2017, ACKTR; docs/theory.md#kfac).

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

K-FAC lives here once: the critic's K-FAC optimizer (:mod:`rlopt.optimizers.kfac`) takes the same
per-layer step (:func:`precondition_layers`) and declares its decay and refresh options with the
same checks (:data:`STAT_DECAY`, :data:`UPDATE_EVERY`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from rlopt.options import Option, integer, real
from rlopt.trust_region.metrics.base import MetricInputs, Row, unflatten
from rlopt.trust_region.solvers.base import Direction, Solver, StepProblem, statistics_direction
from rlopt.trust_region.solvers.diagonal import diagonal_direction, metric_diagonal

STAT_DECAY = Option(0.95, real(0.0, 1.0), "running-average decay of the Kronecker factors A and G")
"""The factors' decay, declared once for both K-FAC steps (the actor solver's default; the critic sets its own)."""
UPDATE_EVERY = Option(1, integer(1), "the damped factor inverses are recomputed every this many steps")
"""How often the inverses are refreshed, declared once for both K-FAC steps."""


# ----------------------------------------------------------------- pure numerical pieces
def input_factor(layer_inputs: Tensor, bias: bool) -> Tensor:
    """A = E_i[ā_i ā_iᵀ] of inputs [N, in], ā = [a; 1] when the layer has a bias:
    [[E[a aᵀ], E[a]], [E[a]ᵀ, 1]], assembled without materialising [a, 1]."""
    count = layer_inputs.shape[0]
    second_moment = layer_inputs.T @ layer_inputs / count
    if not bias:
        return second_moment
    mean = layer_inputs.mean(dim=0)
    top = torch.cat([second_moment, mean[:, None]], dim=1)
    bottom = torch.cat([mean, mean.new_ones(1)])[None, :]
    return torch.cat([top, bottom], dim=0)


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
    return spd_inverse(add_to_diagonal(a_factor, pi * root)), spd_inverse(add_to_diagonal(g_factor, root / pi))


def add_to_diagonal(matrix: Tensor, value: Tensor | float) -> Tensor:
    """matrix + value · I (a new tensor)."""
    damped = matrix.clone()
    damped.diagonal().add_(value)
    return damped


def spd_inverse(matrix: Tensor) -> Tensor:
    """Inverse of a symmetric positive-definite matrix through its Cholesky factor (half the cost of a
    general inverse); the pseudo-inverse when the factorisation fails (a singular, undamped factor)."""
    cholesky, info = torch.linalg.cholesky_ex(matrix)
    if int(info) != 0:
        return torch.linalg.pinv(matrix, hermitian=True)
    return torch.cholesky_inverse(cholesky)


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


class ForwardRecord(NamedTuple):
    """What one forward of the factored module left behind, still attached to its autograd graph."""

    outputs: Tensor
    """The module's outputs y [N, k]."""
    layer_inputs: list[Tensor]
    """Each layer's input a [N, in] (detached), in the order of the layers."""
    pre_activations: list[Tensor]
    """Each layer's pre-activation s [N, out]."""


class ForwardRecorder:
    """Forward hooks that keep the outputs of ``module`` and the input and pre-activation of each of
    ``layers`` while the context is open, so the statistics can reuse a forward already run (the
    trust-region closure's) instead of running their own.

    :meth:`record` gives the forward only if it was unambiguous: ``module`` ran exactly once, on
    ``inputs`` itself (identity), and each layer once; otherwise None and the caller runs its own.
    """

    def __init__(self, module: nn.Module, layers: Sequence[LinearLayer]) -> None:
        self.module = module
        self.layers = list(layers)
        self._calls: list[tuple[Tensor, Tensor]] = []
        self._layer_calls: dict[int, list[tuple[Tensor, Tensor]]] = {id(layer.module): [] for layer in self.layers}
        self._handles: list[Any] = []

    def _keep_module(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        self._calls.append((args[0], output))

    def _keep_layer(self, layer: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        self._layer_calls[id(layer)].append((args[0].detach(), output))

    def __enter__(self) -> ForwardRecorder:
        self._handles = [self.module.register_forward_hook(self._keep_module)]
        self._handles += [layer.module.register_forward_hook(self._keep_layer) for layer in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def record(self, inputs: Tensor) -> ForwardRecord | None:
        """The recorded forward of ``module`` on ``inputs``, or None if there was not exactly one."""
        if len(self._calls) != 1 or self._calls[0][0] is not inputs:
            return None
        if any(len(calls) != 1 for calls in self._layer_calls.values()):
            return None
        per_layer = [self._layer_calls[id(layer.module)][0] for layer in self.layers]
        return ForwardRecord(self._calls[0][1], [a for a, _ in per_layer], [s for _, s in per_layer])


def layer_statistics(
    module: nn.Module, obs: Tensor, layers: Sequence[LinearLayer], rows_of: Any, record: ForwardRecord | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """Batch factors (A_l, G_l) of each layer: the forward of ``module`` on ``obs`` (``record``, one
    already run with a :class:`ForwardRecorder` open, or one run here), then one backward of
    Σ_i r(y_i) per row r to the layers' pre-activations.

    ``rows_of(outputs) -> list[Row]`` gives the row functions at the outputs (sampling happens there).
    """
    if record is None:
        with ForwardRecorder(module, layers) as recorder, torch.enable_grad():
            module(obs)
        record = recorder.record(obs)
        if record is None:
            raise ValueError("solver 'kfac' needs a module whose forward runs each of its Linear layers exactly once")
    outputs, pre_activations = record.outputs, record.pre_activations
    rows: list[Row] = rows_of(outputs)
    grads: list[list[Tensor]] = [[] for _ in layers]
    for number, row in enumerate(rows):
        with torch.enable_grad():
            total = row.function(outputs, *row.targets).sum()
        pulled = torch.autograd.grad(total, pre_activations, retain_graph=number + 1 < len(rows), allow_unused=True)
        for layer_grads, g in zip(grads, pulled):
            if g is not None:
                layer_grads.append(g.detach())
    a_factors = [input_factor(a, layer.bias is not None) for a, layer in zip(record.layer_inputs, layers)]
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


def precondition_layers(
    layers: Sequence[LinearLayer],
    grads: Sequence[Tensor],
    a_factors: Sequence[Tensor],
    g_factors: Sequence[Tensor],
    state_of: Callable[[int], MutableMapping[str, Tensor]],
    decay: float,
    damping: float,
    refresh: bool,
) -> list[Tensor | None]:
    """K-FAC's per-layer step, shared by the actor solver and the critic optimizer: fold each layer's
    batch factors into its running ones (``state_of(weight index)``), then precondition its gradient
    V = [W | b] into G̃⁻¹ V Ã⁻¹ and split it back. One entry per gradient in ``grads``; None for a
    parameter outside every layer (the caller treats those)."""
    out: list[Tensor | None] = [None] * len(grads)
    for layer, a_batch, g_batch in zip(layers, a_factors, g_factors):
        layer_state = state_of(layer.weight)
        update_layer_state(layer_state, a_batch, g_batch, decay, damping, refresh=refresh)
        weight_grad = grads[layer.weight]
        layer_grad = weight_grad if layer.bias is None else torch.cat([weight_grad, grads[layer.bias][:, None]], dim=1)
        block = kfac_precondition(layer_grad, layer_state["kfac_A_inv"], layer_state["kfac_G_inv"])
        out[layer.weight] = block[:, : weight_grad.shape[1]]
        if layer.bias is not None:
            out[layer.bias] = block[:, weight_grad.shape[1]]
    return out


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
    recorder: ForwardRecorder | None = None,
) -> Tensor:
    """The ``kfac`` solver's d for all ``params``: Kronecker blocks for the Linear layers of
    ``inputs.module`` (their factors kept in ``state[weight]``), diagonal for the rest.

    ``step`` counts the optimizer's earlier steps: inverses are refreshed when it is a multiple of
    ``update_every``. The same sampled rows serve the factors and the diagonal of the rest.
    ``recorder`` (open around the closure: :meth:`KFACSolver.recorder`) lends its forward when it
    recorded one of ``inputs.module`` on ``inputs.inputs``.
    """
    if inputs.module is None:
        raise ValueError("solver 'kfac' needs MetricInputs.module (the module whose Linear layers it factors)")
    layers = recorder.layers if recorder is not None else linear_layers(inputs.module, params)
    record = recorder.record(inputs.inputs) if recorder is not None else None
    sampled: list[list[Row]] = []

    def rows_once(outputs: Tensor) -> list[Row]:
        sampled.append(rows_of(outputs))
        return sampled[0]

    a_factors, g_factors = layer_statistics(inputs.module, inputs.inputs, layers, rows_once, record)
    pieces = list(unflatten(gradient, params))
    preconditioned = precondition_layers(
        layers, pieces, a_factors, g_factors, lambda index: state[params[index]],
        stat_decay, damping, refresh=step % update_every == 0,
    )  # fmt: skip
    directions: list[Tensor | None] = [None if d is None else -d for d in preconditioned]
    rest = [i for i, d in enumerate(directions) if d is None]
    if rest:
        with torch.enable_grad():
            diagonal = metric_diagonal(inputs, params, sampled[0], only=rest)
        rest_grad = torch.cat([pieces[i].reshape(-1) for i in rest])
        rest_direction = unflatten(diagonal_direction(rest_grad, diagonal, damping), [params[i] for i in rest])
        for i, d in zip(rest, rest_direction):
            directions[i] = d
    return torch.cat([d.reshape(-1) for d in directions])  # type: ignore[union-attr]


class KFACSolver(Solver):
    """Kronecker-factored blocks per Linear layer of ``MetricInputs.module``, diagonal for the rest;
    reuses the closure's forward of that module when it ran exactly once (:class:`ForwardRecorder`)."""

    name: ClassVar[str] = "kfac"
    reuses_forward: ClassVar[bool] = True

    def recorder(self, inputs: MetricInputs | None, params: Sequence[Tensor]) -> ForwardRecorder | None:
        """Hooks on ``inputs.module`` and its layers (their inputs and pre-activations make the factors)."""
        if inputs is None or inputs.module is None:
            return None
        return ForwardRecorder(inputs.module, linear_layers(inputs.module, params))

    def direction(self, problem: StepProblem, hyper: Mapping[str, Any]) -> Direction:
        inputs = self.require_inputs(problem.inputs)

        def rows_of(outputs: Tensor) -> list[Row]:
            return problem.metric.rows(outputs, inputs)

        direction = kfac_solver_direction(
            inputs, problem.params, problem.gradient.detach(), rows_of, problem.state, problem.step,
            damping=hyper["cg_damping"], stat_decay=hyper["kfac_stat_decay"],
            update_every=hyper["kfac_update_every"], recorder=problem.recorder,
        )  # fmt: skip
        return statistics_direction(problem.gradient, direction)
