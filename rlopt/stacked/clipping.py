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
def clip_grad_norms_per_seed(
    grads: Sequence[Sequence[Tensor]], max_norm: float | None, storage: Sequence[Tensor] | None = None
) -> Tensor:
    """Clip each seed's gradients ``grads[k]`` (the same number of tensors per seed) in place to
    global L2 norm ``max_norm`` (None: measure only); returns the ``[K]`` norms before clipping.
    ``storage[k]``, if given, is one tensor holding all of ``grads[k]`` (a flat gradient whose
    views they are): it is scaled instead, in one op per seed (multiplication rounds elementwise,
    so the same numbers). A seed with a non-finite norm is left for the caller to discard."""
    num_seeds, per_seed = len(grads), len(grads[0])
    if any(len(seed_grads) != per_seed for seed_grads in grads):
        raise ValueError("every seed needs the same number of gradient tensors")
    flat = [g for seed_grads in grads for g in seed_grads]
    norms = torch.linalg.vector_norm(
        torch.stack(torch._foreach_norm(flat, _NORM_TYPE)).reshape(num_seeds, per_seed), _NORM_TYPE, dim=1
    )
    if max_norm is not None:
        coefficients = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
        targets = [list(seed_grads) for seed_grads in grads] if storage is None else [[t] for t in storage]
        for k, seed_targets in enumerate(targets):
            torch._foreach_mul_(seed_targets, coefficients[k])
    return norms
