"""The tanh MLP pieces of the stacked fast path (``stack_exact: false``, issue 17): tanh as 2σ(2x) − 1,
a tanh layer in three passes, and K tanh MLPs on a ``[K, P]`` stack as one autograd node
(:class:`_TanhMLP`) with its hand-written backward. :mod:`rlopt.stacked.networks` builds them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def _tanh_by_sigmoid(x: Tensor) -> Tensor:
    """``2σ(2x) − 1`` in four vectorised passes (one new tensor)."""
    return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) = 2σ(2x) − 1 with tanh's backward ``g · (1 − y²)``: torch's tanh takes a scalar path
    on CPUs like this one (≈ 2.6 ns per float32 against ≈ 0.8 ns for the four vectorised passes here,
    ``scripts/bench_stacked_ops.py --kernels``); the result differs from ``torch.tanh`` by at most ~2e-7."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = _tanh_by_sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: Tensor) -> Tensor:
    """tanh as ``2σ(2x) − 1`` (:class:`_SigmoidTanh`), differentiable; without autograd (a rollout)
    the same passes without the autograd Function's overhead (~20 µs a call)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _SigmoidTanh.apply(x)
    return _tanh_by_sigmoid(x)


_MINUS_ONE = torch.tensor(-1.0)
"""The ``−1`` of ``2σ(2z) − 1`` as a 0-dim tensor: ``torch.add(−1, s, alpha=2)`` is one pass."""
_NARROW_INPUT = 16
"""Below this many input features, a layer's weight gradient is computed as ``(hᵀ g)ᵀ``: ``gᵀ h`` with a
narrow ``h`` (CartPole's 4, Pendulum's 3 observations) takes a kernel ~5x slower here (``[10, 64, 256] x
[10, 256, 4]``: 186 µs against 36 µs, ``scripts/bench_stacked_ops.py --kernels``)."""


def _tanh_layer(bias: Tensor, x: Tensor, weight_t: Tensor) -> Tensor:
    """``tanh(b + x Wᵀ)`` as ``2σ(2b + 2 x Wᵀ) − 1`` in three passes: the doubling folded into the
    ``baddbmm`` (``beta = alpha = 2``, exact in floating point), σ in place, ``2s − 1`` as one ``add``;
    the same numbers as :func:`_tanh_by_sigmoid` of the layer, bit for bit."""
    z = torch.baddbmm(bias, x, weight_t, beta=2.0, alpha=2.0).sigmoid_()
    if z.device.type != "cpu":  # the same floats (2s is exact) in two passes
        return z.mul_(2.0).sub_(1.0)
    return torch.add(_MINUS_ONE, z, alpha=2.0, out=z)


def _weight_gradient(grad: Tensor, inputs: Tensor) -> Tensor:
    """``∂W = gᵀ h`` (``[K, out, in]``) of a layer with output gradient ``grad`` ``[K, B, out]`` and
    inputs ``[K, B, in]`` (see ``_NARROW_INPUT``)."""
    if inputs.shape[-1] < _NARROW_INPUT:
        return torch.bmm(inputs.transpose(1, 2), grad).transpose(1, 2)
    return torch.bmm(grad.transpose(1, 2), inputs)


def _input_gradient(grad: Tensor, weight: Tensor) -> Tensor:
    """``∂h = g W`` (``[K, B, in]``); a single output (a critic's value) as the broadcast product
    ``g ⊙ W`` (one elementwise pass instead of a 1-column batched product, ~3x slower here)."""
    if weight.shape[1] == 1:
        return grad * weight
    return torch.bmm(grad, weight)


class TanhMLPLayout:
    """Where each linear layer of a tanh MLP (``Linear, Tanh, ..., Linear``) sits in a ``[K, P]`` stack
    of :class:`rlopt.stacked.networks.FlatSeeds` (its parameters' ``segments`` and ``shapes``), for
    :class:`_TanhMLP`."""

    def __init__(self, segments: Sequence[tuple[int, int]], shapes: Sequence[torch.Size],
                 linears: list[tuple[int, int]], sizes: list[int], piece: list[int]) -> None:  # fmt: skip
        self.segments, self.shapes, self.linears, self.sizes = segments, shapes, linears, sizes
        in_mlp = {param for layer in linears for param in layer}
        self.owner = {p: param for param, p in enumerate(piece) if param in in_mlp}
        """The MLP parameter each piece of ``sizes`` holds (pieces not in it: padding, an actor's log-std)."""

    def weights(self, stacked: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per linear layer its ``[K, out, in]`` weight and ``[K, out]`` bias, views of ``stacked``."""
        k = stacked.shape[0]
        out = []
        for weight, bias in self.linears:
            (w0, w1), (b0, b1) = self.segments[weight], self.segments[bias]
            out.append((stacked[:, w0:w1].view(k, *self.shapes[weight]), stacked[:, b0:b1]))
        return out

    def gradient(self, grads: list[tuple[Tensor, Tensor]], stacked: Tensor) -> Tensor:
        """The ``[K, P]`` gradient holding each layer's (weight, bias) gradient; zeros elsewhere (padding,
        parameters outside the MLP such as an actor's log-std: autograd adds theirs)."""
        k = stacked.shape[0]
        by_param: dict[int, Tensor] = {}
        for (weight, bias), (grad_weight, grad_bias) in zip(self.linears, grads):
            by_param[weight], by_param[bias] = grad_weight.reshape(k, -1), grad_bias
        pieces = [by_param[self.owner[i]] if i in self.owner else stacked.new_zeros(k, width)
                  for i, width in enumerate(self.sizes)]  # fmt: skip
        return torch.cat(pieces, dim=1)


class _TanhMLP(torch.autograd.Function):
    """K tanh MLPs on a ``[K, P]`` stack as ONE autograd node with a hand-written backward (the chain
    rule layer by layer: ``∂W = gᵀ h``, ``∂b = Σ_rows g``, ``∂h = g W``, tanh' = 1 − y²) instead of
    ~20 (split, views, transposes, baddbmm and tanh nodes per network), and every gradient reaching a
    tanh in its output's layout. Forward as :meth:`BoundLayers.run` without ``exact`` (tanh as 2σ(2x)−1),
    results equal to autograd's up to float rounding (tests/test_stacked_parts.py)."""

    @staticmethod
    def forward(ctx: Any, stacked: Tensor, x: Tensor, layout: TanhMLPLayout) -> Tensor:
        layers = layout.weights(stacked)
        inputs = [x]
        for weight, bias in layers[:-1]:
            inputs.append(_tanh_layer(bias.unsqueeze(1), inputs[-1], weight.transpose(1, 2)))
        weight, bias = layers[-1]
        ctx.layout = layout
        ctx.save_for_backward(stacked, *inputs)
        return torch.baddbmm(bias.unsqueeze(1), inputs[-1], weight.transpose(1, 2))

    @staticmethod
    @torch.autograd.function.once_differentiable  # a double backward (the Hessian metric) raises, never runs wrong
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        stacked, *inputs = ctx.saved_tensors
        layers = ctx.layout.weights(stacked)
        grads: list[tuple[Tensor, Tensor]] = []
        for i in reversed(range(len(layers))):
            grads.append((_weight_gradient(grad, inputs[i]), grad.sum(1)))
            if i > 0:
                grad = torch.ops.aten.tanh_backward(_input_gradient(grad, layers[i][0]), inputs[i])
            elif ctx.needs_input_grad[1]:
                grad = _input_gradient(grad, layers[0][0])
        grad_stacked = ctx.layout.gradient(grads[::-1], stacked) if ctx.needs_input_grad[0] else None
        return grad_stacked, grad if ctx.needs_input_grad[1] else None, None
