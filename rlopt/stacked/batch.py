"""K seeds' rollout batches as one padded ``[K, R, ...]`` batch, and per-seed minibatch plans.

Seed ``k`` keeps ``B_k`` valid transitions of its rollout (NEXT_STEP reset steps dropped, as
``RolloutBuffer.flatten`` drops them), so the seeds' batches differ in length. They are stacked
to ``R = n_steps · num_envs`` rows -- a length fixed by the config, never by the other seeds, so a
seed's arithmetic does not depend on which seeds share its stack -- with a bool ``mask`` (True on
the ``B_k`` rows, in the lone batch's order) that every loss reduces with
(:func:`rlopt.losses.masked_mean`). Padded rows repeat the seed's first row (finite when it is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from types import SimpleNamespace

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from rlopt.distributions import ActionDistribution, Categorical, DiagGaussian
from rlopt.rollout import RolloutBatch

FIELDS = tuple(f.name for f in fields(RolloutBatch))
"""The ``RolloutBatch`` fields a ``StackedBatch`` holds, each ``[K, R, ...]``."""


@dataclass
class StackedBatch(RolloutBatch):
    """Padded ``[K, R, ...]`` batch: seed ``k``'s rows ``[:sizes[k]]`` are its lone ``RolloutBatch``."""

    mask: Tensor
    """``[K, R]`` bool: True on each seed's real rows."""
    sizes: list[int]
    """``B_k`` per seed."""

    @property
    def rows(self) -> int:
        """``R``, the padded length."""
        return self.mask.shape[1]

    def __len__(self) -> int:
        """Real transitions over all seeds."""
        return sum(self.sizes)


def take_rows(tensor: Tensor, positions: Tensor | None) -> Tensor:
    """``tensor[k, positions[k]]`` for every seed: ``[K, R, ...]`` with ``[K, W]`` → ``[K, W, ...]``;
    ``positions=None``: every row where it is (``tensor`` itself)."""
    if positions is None:
        return tensor
    index = positions.reshape(*positions.shape, *([1] * (tensor.dim() - 2))).expand(*positions.shape, *tensor.shape[2:])
    return tensor.gather(1, index)


def take_distribution(dist: ActionDistribution, positions: Tensor | None) -> ActionDistribution:
    """The ``[K, W]`` rows ``positions`` of a ``[K, R]`` distribution (a minibatch of π_old; None: ``dist``)."""
    if positions is None:
        return dist
    if isinstance(dist, Categorical):
        return Categorical._from_log_probs(take_rows(dist.log_probs, positions))
    log_std = dist.log_std if dist.log_std.shape[1] == 1 else take_rows(dist.log_std, positions)
    return DiagGaussian(take_rows(dist.mean, positions), log_std)


def time_major_over_seeds(tensor: Tensor) -> Tensor:
    """``[K, T, N, ...]`` → ``[T, K·N, ...]``: K seeds' envs side by side as one env axis (GAE and
    the Monte-Carlo returns are columnwise, so each column is computed exactly as alone)."""
    k, t, n = tensor.shape[:3]
    return tensor.transpose(0, 1).reshape(t, k * n, *tensor.shape[3:])


def compute_targets_stacked(compute_targets, storage) -> tuple[Tensor, Tensor]:
    """An agent's ``compute_targets`` hook (GAE, or REINFORCE's returns) run once on K seeds'
    ``[K, T, N]`` storage laid out as ``[T, K·N]``; returns ``[K, T, N]`` advantages and returns."""
    k, t, n = storage.rewards.shape
    view = SimpleNamespace(
        **{name: time_major_over_seeds(getattr(storage, name)) for name in ("rewards", "values", "terminated", "truncated")},
        last_values=storage.last_values.reshape(k * n),
        n_steps=t,
        num_envs=k * n,
    )
    advantages, returns = compute_targets(view)

    def back(tensor: Tensor) -> Tensor:
        return tensor.reshape(t, k, n).transpose(0, 1)

    return back(advantages), back(returns)


def stack_rollouts(storage) -> StackedBatch:
    """The padded batch of a ``StackedBuffer`` whose ``advantages``/``returns`` are filled: seed
    ``k``'s valid rows in time-major order (``RolloutBuffer.flatten(valid_only=True)``'s order)."""
    k, t, n = storage.valid.shape
    rows = t * n
    valid = storage.valid.reshape(k, rows)
    sizes = valid.sum(1).tolist()
    # Stable sort puts each seed's valid rows first, in their time-major order.
    order = torch.sort((~valid).to(torch.uint8), dim=1, stable=True).indices
    arange = torch.arange(rows)
    mask = arange.unsqueeze(0) < torch.tensor(sizes).unsqueeze(1)
    positions = torch.where(mask, order, order[:, :1])  # padding repeats the first valid row
    tensors = {}
    for name in FIELDS:
        field = getattr(storage, name)
        tensors[name] = take_rows(field.reshape(k, rows, *field.shape[3:]), positions)
    return StackedBatch(**tensors, mask=mask, sizes=[int(s) for s in sizes])


def draw_permutations(sizes: Sequence[int], generators: Sequence[torch.Generator], active: Sequence[bool]) -> list[Tensor]:
    """Per active seed with rows one ``randperm(B_k)`` from its generator (the lone minibatch draw);
    an inactive or empty seed draws nothing (an empty tensor)."""
    empty = torch.zeros(0, dtype=torch.long)
    return [torch.randperm(size, generator=generator) if is_active and size > 0 else empty
            for size, generator, is_active in zip(sizes, generators, active)]  # fmt: skip


@dataclass
class MinibatchPlan:
    """One epoch's minibatches for K seeds: ``positions[j]`` ``[K, W]`` into the padded batch,
    ``masks[j]`` ``[K, W]`` bool, ``counts[j][k]`` real rows of seed ``k`` (0: seed not in it)."""

    positions: list[Tensor]
    masks: list[Tensor]
    counts: list[list[int]]


def plan_minibatches(
    sizes: Sequence[int], rows: int, minibatch_size: int, generators: Sequence[torch.Generator], active: Sequence[bool]
) -> MinibatchPlan:
    """Per active seed one ``randperm(B_k)`` from its generator, chunked as the lone
    :func:`rlopt.gradient_steps.minibatches` chunks it; chunks padded to the width
    ``W = minibatch_size`` (or ``R`` for a full batch), a number fixed by the config. Inactive
    seeds draw nothing and have no rows."""
    width = minibatch_size if 0 < minibatch_size < rows else rows
    num = math.ceil(rows / width)
    # Seed k's chunk j is its permutation's [j·W, (j+1)·W): the permutations padded to num·W and cut
    # into [K, num, W] hold every chunk at once (two ops for all seeds, not a copy per seed and chunk).
    permutations = draw_permutations(sizes, generators, active)
    padded = pad_sequence(permutations, batch_first=True)
    padded = torch.nn.functional.pad(padded, (0, num * width - padded.shape[1]))
    positions = padded.view(len(sizes), num, width).transpose(0, 1)
    counts = [[min(max(len(p) - j * width, 0), width) for p in permutations] for j in range(num)]
    count_table = torch.tensor(counts, dtype=torch.long)  # [num, K]
    masks = torch.arange(width).expand(num, len(sizes), width) < count_table.unsqueeze(-1)
    return MinibatchPlan(list(positions.unbind(0)), list(masks.unbind(0)), counts)
