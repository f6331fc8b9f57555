"""Views of a list of parameter tensors as one flat vector θ ∈ ℝⁿ.

A trust-region step (Schulman et al. 2015, App. C) works on the whole parameter vector at once:
the gradient g, the metric product M v, the CG solution and the step are all n-vectors. The
order of the flat vector is the order of ``params``, each tensor flattened row-major.

Bottom of :mod:`rlopt.trust_region` (torch only). Gradients are taken functionally with
:func:`flat_grad`; the trust-region step neither reads nor writes ``p.grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _check_numel(params: Sequence[Tensor], flat: Tensor) -> None:
    expected = sum(p.numel() for p in params)
    if flat.dim() != 1 or flat.numel() != expected:
        raise ValueError(
            f"flat parameter vector must be a 1-D tensor of {expected} elements, "
            f"got shape {tuple(flat.shape)}"
        )


def flat_params(params: Sequence[Tensor]) -> Tensor:
    """Concatenate the (detached) parameters into a new 1-D tensor θ."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def set_flat_params_(params: Sequence[Tensor], flat: Tensor) -> None:
    """Copy the 1-D tensor ``flat`` into ``params`` in place, without recording autograd history."""
    _check_numel(params, flat)
    offset = 0
    for p in params:
        count = p.numel()
        p.copy_(flat[offset : offset + count].view_as(p))
        offset += count


def flat_grad(
    output: Tensor,
    params: Sequence[Tensor],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    """∇_θ output as a 1-D tensor, via ``torch.autograd.grad`` (``.grad`` is left untouched).

    Parameters the output does not depend on get zeros; if the output does not depend on any
    parameter (it does not require grad) the whole gradient is zero.
    ``create_graph=True`` keeps the graph of the gradient, for a second (Pearlmutter) backward.
    """
    params = list(params)
    if not output.requires_grad:
        return torch.cat([torch.zeros_like(p).reshape(-1) for p in params])
    grads = torch.autograd.grad(
        output,
        params,
        create_graph=create_graph,
        retain_graph=retain_graph,
        allow_unused=True,
        materialize_grads=True,
    )
    return torch.cat([g.reshape(-1) for g in grads])
