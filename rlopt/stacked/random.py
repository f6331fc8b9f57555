"""Per-seed random streams: seed ``k`` of a stack draws exactly the numbers of its lone run.

A lone run draws everything after its network construction from torch's global generator, in
this order: the action samples of each rollout step, then the update's minibatch permutations.
Seed ``k``'s :class:`torch.Generator` starts from the global state right after seed ``k``'s
networks are built (:func:`generator_from_global_state`) and is used for exactly those draws, in
the same order and with the same shapes, so it continues the lone stream number for number.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rlopt.distributions import ActionDistribution, Categorical


def generator_from_global_state() -> torch.Generator:
    """A CPU generator in the current state of torch's global one (which is not advanced)."""
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    return generator


def sample_per_seed(dist: ActionDistribution, generators: Sequence[torch.Generator]) -> Tensor:
    """One action per row of a ``[K, B]`` distribution, seed ``k``'s rows drawn from
    ``generators[k]`` exactly as ``dist.sample()`` draws a lone ``[B]`` batch from the global one
    (``multinomial`` of the probabilities; ``mean + std · randn``). ``[K, B]`` or ``[K, B, d]``."""
    with torch.no_grad():
        if isinstance(dist, Categorical):
            probs = dist.log_probs.detach().exp()
            return torch.stack([
                torch.multinomial(probs[k], num_samples=1, replacement=True, generator=g).squeeze(-1)
                for k, g in enumerate(generators)
            ])  # fmt: skip
        mean, std = dist.mean.detach(), dist.std.detach()
        noise = torch.stack([torch.randn(mean.shape[1:], generator=g, dtype=mean.dtype) for g in generators])
        return mean + std * noise


def permutation_chunks(size: int, minibatch_size: int, generator: torch.Generator) -> list[Tensor]:
    """:func:`rlopt.gradient_steps.minibatches` with ``generator``: the same draw and the same chunks."""
    permutation = torch.randperm(size, generator=generator)
    if minibatch_size <= 0 or minibatch_size >= size:
        return [permutation]
    return list(permutation.split(minibatch_size))
