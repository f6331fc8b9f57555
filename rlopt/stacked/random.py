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
    ``generators[k]`` exactly as ``dist.sample()`` draws a lone ``[B]`` batch from the global one.
    ``[K, B]`` or ``[K, B, d]``.

    Categorical on CPU: ``torch.multinomial(p, 1, replacement=True)`` is ``argmax(p / q)`` with
    ``q ~ Exp(1)`` drawn by ``exponential_`` on a tensor shaped like ``p`` (the exponential form of
    the Gumbel-max trick, ATen's ``multinomial`` for one sample); so each seed draws its own ``q``
    from its generator and one division and one argmax serve all seeds (tested against
    ``multinomial`` in tests/test_stacked_parts.py; unlike it, a non-finite row is not refused: its
    action is arbitrary and its NaN log-prob skips that seed's update). Elsewhere one
    ``multinomial`` per seed.
    Gaussian: ``mean + std · randn`` with one ``randn`` per seed."""
    with torch.no_grad():
        if isinstance(dist, Categorical):
            probs = dist.log_probs.detach().exp()
            if probs.device.type != "cpu":
                return torch.stack([
                    torch.multinomial(probs[k], num_samples=1, replacement=True, generator=g).squeeze(-1)
                    for k, g in enumerate(generators)
                ])  # fmt: skip
            noise = torch.empty_like(probs)
            for row, generator in zip(noise, generators):
                row.exponential_(generator=generator)
            return probs.div_(noise).argmax(dim=-1)
        mean, std = dist.mean.detach(), dist.std.detach()
        noise = torch.stack([torch.randn(mean.shape[1:], generator=g, dtype=mean.dtype) for g in generators])
        return mean + std * noise

