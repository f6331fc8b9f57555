"""One gradient step of one or several networks, and minibatch indices: the pieces every
torch.optim update of the agents is made of.

:func:`gradient_steps` is backward → clip → step with the all-or-nothing rule of the trainer
(a non-finite gradient is caught before any weight moves); with several (optimizer, parameters)
pairs it serves networks with disjoint parameters (PPO's actor and critic) with one backward.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from rlopt.clipping import clip_gradients

GradientStep = tuple[torch.optim.Optimizer, Iterable[nn.Parameter], "float | None"]
"""(optimizer, the parameters it steps, max global gradient norm or None)."""


def minibatches(size: int, minibatch_size: int, generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Index tensors of a random permutation of ``range(size)`` split into minibatches."""
    if minibatch_size <= 0 or minibatch_size >= size:
        yield torch.randperm(size, generator=generator)
        return
    permutation = torch.randperm(size, generator=generator)
    for start in range(0, size, minibatch_size):
        yield permutation[start : start + minibatch_size]


def gradient_steps(loss: Tensor, *steps: GradientStep) -> tuple[list[Tensor], bool]:
    """One backward of ``loss`` (a sum of losses of disjoint parameter sets, e.g. actor + critic:
    each set gets exactly its own loss's gradient), then per (optimizer, params, max_grad_norm):
    clip; the optimizers step only if every gradient norm is finite. Returns the norms before
    clipping and whether the weights moved."""
    for optimizer, _, _ in steps:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norms = [clip_gradients(params, max_norm=max_norm, measure_after=False).norm_before.detach()
             for _, params, max_norm in steps]  # fmt: skip
    finite = torch.isfinite(norms[0]) if len(norms) == 1 else torch.isfinite(torch.stack(norms)).all()
    if not bool(finite):
        for optimizer, _, _ in steps:
            optimizer.zero_grad(set_to_none=True)
        return norms, False
    for optimizer, _, _ in steps:
        optimizer.step()
    return norms, True
