"""Metric products of the stacked trust-region step (:mod:`rlopt.stacked.trust_region`): v ↦ M v on
``[K, P]``, row k = M_k v_k, for K seeds whose parameters are the rows of θ.

The summed per-seed objective has a block-diagonal Hessian, so one product serves every seed:

* :func:`hessian_product`: Pearlmutter's double backward of a ``[K]`` target's sum (the lone
  :func:`rlopt.trust_region.metrics.hessian.hessian_vector_product`; for the KL it is the Fisher);
* :func:`fisher_product`: the Fisher as Jᵀ F_y J (Martens 2014, sec. 9; Schulman et al. 2015, App. C),
  F_y the Fisher of the action distribution in the policy's outputs y -- for logits z of a
  Categorical diag(p) − ppᵀ, for a Gaussian's mean 1/σ² and for its state-independent log-std 2 --
  J v by one forward-mode pass through the stacked MLP (:func:`linearize_head`) and Jᵀ u by one
  backward of a recorded forward. The same matrix as the KL's Hessian at θ_old (there ∇_y KL = 0,
  so the second-order term of y vanishes), for about a third of the double backward's cost.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rlopt.distributions import ActionDistribution, Categorical

BatchedProduct = Callable[[Tensor], Tensor]
"""``[K, P] ↦ [K, P]``: row k is M_k v_k."""


def batched_dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot products of ``[K, P]`` tensors, ``[K]``."""
    return (a * b).sum(-1)


def identity_product(vector: Tensor) -> Tensor:
    """M = I."""
    return vector


def hessian_product(target: Tensor, theta: Tensor) -> BatchedProduct:
    """v ↦ ∇²_θ(Σ_k target_k) v by double backward, the first-order graph built once."""
    first = torch.autograd.grad(target.sum(), theta, create_graph=True)[0]

    def product(vector: Tensor) -> Tensor:
        if not first.requires_grad:  # the target is linear in θ: M = 0
            return torch.zeros_like(vector)
        return torch.autograd.grad(batched_dot(first, vector.detach()).sum(), theta, retain_graph=True)[0]

    return product


def linearize_head(actor: nn.Module, obs: Tensor, theta: Tensor) -> BatchedProduct:
    """v ↦ J v, the directional derivative of ``actor.head(obs, θ)`` ``[K, R, h]`` along v ``[K, P]``.

    One pass records each Linear layer's input and weights and each (elementwise) activation's
    derivative; a product is then two batched matmuls per layer, (x Wᵀ + b)' = x dWᵀ + db + dx Wᵀ,
    and one multiply per activation (and the squashed mean's tanh)."""
    flat, body = actor.flat, actor.seeds[0].body
    layers: list[tuple[nn.Linear | None, Tensor, Tensor | None]] = []
    x = obs
    with torch.no_grad():
        for layer in body:
            if isinstance(layer, nn.Linear):
                weight = flat.of(theta, layer.weight)
                layers.append((layer, x, weight))
                x = torch.baddbmm(flat.of(theta, layer.bias).unsqueeze(1), x, weight.transpose(1, 2))
            else:  # elementwise: its derivative is the backward of a ones cotangent
                with torch.enable_grad():
                    inputs = x.detach().requires_grad_()
                    outputs = layer(inputs)
                    layers.append((None, torch.autograd.grad(outputs, inputs, torch.ones_like(outputs))[0], None))
                x = outputs.detach()
        squash = actor.seeds[0].mean_half_range * (1.0 - torch.tanh(x).square()) if actor.squash_mean else None

    def jvp(vector: Tensor) -> Tensor:
        tangent = None
        for layer, recorded, weight in layers:
            if layer is None:
                tangent = tangent * recorded
                continue
            step = torch.baddbmm(flat.of(vector, layer.bias).unsqueeze(1), recorded, flat.of(vector, layer.weight).transpose(1, 2))
            tangent = step if tangent is None else torch.baddbmm(step, tangent, weight.transpose(1, 2))
        return tangent if squash is None else tangent * squash

    return jvp


def fisher_product(actor: nn.Module, obs: Tensor, mask: Tensor, old_dist: ActionDistribution, theta: Tensor, head: Tensor) -> BatchedProduct:
    """v ↦ F v, F_k the Fisher of seed k's mean KL(π_old‖π_θ) over its ``mask`` rows, as Jᵀ F_y J v.

    ``head`` = ``actor.head(obs, theta)`` with its graph (kept for every product); ``old_dist`` the
    ``[K, R]`` distribution at θ (its probabilities or σ are F_y's)."""
    weights = (mask / mask.sum(-1, keepdim=True).clamp(min=1)).unsqueeze(-1)  # the masked mean's 1/B_k
    jvp = linearize_head(actor, obs, theta.detach())
    if isinstance(old_dist, Categorical):
        probs = old_dist.probs

        def output_fisher(tangent: Tensor) -> Tensor:  # (diag(p) − ppᵀ) u, row by row
            return probs * (tangent - (probs * tangent).sum(-1, keepdim=True))

        log_std_block = None
    else:
        inverse_variance = torch.exp(-2.0 * old_dist.log_std)

        def output_fisher(tangent: Tensor) -> Tensor:  # the mean's block, diag(1/σ²)
            return tangent * inverse_variance

        start, end = actor.flat.segments[actor.flat.index[id(actor.seeds[0].log_std)]]
        log_std_block = torch.zeros_like(theta[:1])
        log_std_block[:, start:end] = 2.0  # ∂²KL/∂s² = 2 per dimension, the same for every row
        log_std_block = log_std_block * mask.any(1, keepdim=True)

    def product(vector: Tensor) -> Tensor:
        vector = vector.detach()
        cotangent = output_fisher(jvp(vector)) * weights
        out = torch.autograd.grad(head, theta, grad_outputs=cotangent, retain_graph=True)[0]
        return out if log_std_block is None else out + log_std_block * vector

    return product
