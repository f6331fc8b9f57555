"""Gradient clipping by global L2 norm, per seed: seed ``k``'s norm is over seed ``k``'s tensors only.

The lone rule (:mod:`rlopt.clipping`, Pascanu et al. 2013): ``g ← g · min(1, τ / (‖g‖₂ + 1e-6))``
with ``‖g‖₂ = ‖(‖g_i‖₂)_i‖₂`` over a network's tensors. Here one ``torch._foreach_norm`` measures
every tensor of every seed, and the per-seed norms are the row norms of a ``[K, L]`` table.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_NORM_TYPE = 2.0


@torch.no_grad()
def clip_grad_norms_per_seed(grads: Sequence[Sequence[Tensor]], max_norm: float | None) -> Tensor:
    """Clip each seed's gradients ``grads[k]`` (the same number of tensors per seed) in place to
    global L2 norm ``max_norm`` (None: measure only); returns the ``[K]`` norms before clipping.
    A seed with a non-finite norm is left for the caller to discard."""
    num_seeds, per_seed = len(grads), len(grads[0])
    if any(len(seed_grads) != per_seed for seed_grads in grads):
        raise ValueError("every seed needs the same number of gradient tensors")
    flat = [g for seed_grads in grads for g in seed_grads]
    norms = torch.linalg.vector_norm(
        torch.stack(torch._foreach_norm(flat, _NORM_TYPE)).reshape(num_seeds, per_seed), _NORM_TYPE, dim=1
    )
    if max_norm is not None:
        coefficients = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
        for k, seed_grads in enumerate(grads):
            torch._foreach_mul_(list(seed_grads), coefficients[k])
    return norms


@torch.no_grad()
def clip_flat_grad_norms_per_seed(
    flat_grads: Sequence[Tensor], segments: Sequence[tuple[int, int]], max_norm: float | None
) -> Tensor:
    """:func:`clip_grad_norms_per_seed` for seeds whose gradients are each one flat tensor
    ``flat_grads[k]`` holding its parameters at ``segments`` (``[start, end)``, padding between
    them is 0): each parameter's norm is a row norm of the ``[K, P]`` stack -- the same numbers as
    one norm per tensor -- and each seed's flat gradient is scaled in place. ``[K]`` norms."""
    stacked = torch.stack(list(flat_grads))
    per_tensor = torch.stack([torch.linalg.vector_norm(stacked[:, a:b], _NORM_TYPE, dim=1) for a, b in segments], dim=1)
    norms = torch.linalg.vector_norm(per_tensor, _NORM_TYPE, dim=1)
    if max_norm is not None:
        torch._foreach_mul_(list(flat_grads), list(torch.clamp(max_norm / (norms + 1e-6), max=1.0).unbind()))
    return norms


@torch.no_grad()
def clip_flat_grads_per_seed_at_once(
    flat_grads: Sequence[Sequence[Tensor]], max_norms: Sequence[float | None]
) -> Tensor:
    """:func:`clip_flat_grad_norms_per_seed` for several networks at once, each seed's norm that of its
    whole flat gradient (the same norm up to float rounding: the padding is 0) -- ``flat_grads[n][k]``:
    network ``n``'s flat gradient of seed ``k``, clipped to ``max_norms[n]`` (None: measured only); one
    ``_foreach_norm`` and one ``_foreach_mul_`` for all of them instead of a norm per parameter slice and
    a round of small ops per network. Returns the ``[N, K]`` norms before clipping."""
    grads = [g for network_grads in flat_grads for g in network_grads]
    norms = torch.stack(torch._foreach_norm(grads, _NORM_TYPE)).view(len(flat_grads), -1)
    clipped = [n for n, max_norm in enumerate(max_norms) if max_norm is not None]
    if clipped:
        limits = torch.tensor([max_norms[n] for n in clipped], dtype=norms.dtype).unsqueeze(1)
        coefficients = torch.clamp(limits / (norms[clipped] + 1e-6), max=1.0)
        torch._foreach_mul_([g for n in clipped for g in flat_grads[n]], list(coefficients.flatten().unbind()))
    return norms
