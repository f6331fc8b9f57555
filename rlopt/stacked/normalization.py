"""K seeds' running statistics updated as ``[K, ...]`` tensors for the length of a rollout.

``RunningMeanStd.update`` / ``normalize`` and ``RewardScaler.scale`` cost ≈ 20 small torch ops per
call whatever the batch, so K seeds' normalisers called one by one cost K times that per vector
step. The classes here run the same float64 operations, elementwise and in the same order, on
all K seeds' statistics at once (``torch.var_mean`` over each seed's own rows gives the lone
result bit for bit), so seed ``k``'s statistics and outputs are exactly its lone normaliser's.
As with ``rlopt.stacked.cartpole``, the per-seed objects stay the source of truth between
rollouts: :meth:`begin` gathers their state, :meth:`end` writes it back. Only all-finite input is
handled here; the caller syncs (``end``), runs the per-seed objects on non-finite input (which
drop those samples, issue 12) and gathers again (``begin``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rlopt.normalization import RewardScaler, RunningMeanStd


def _distinct(objects: Sequence[object]) -> bool:
    return len({id(obj) for obj in objects}) == len(objects)


class StackedRunningMeanStd:
    """K ``RunningMeanStd`` s of one shape and ``std_epsilon`` (see :meth:`fits`) as ``[K, *shape]``."""

    @staticmethod
    def fits(stats: Sequence[RunningMeanStd | None]) -> bool:
        """Whether every seed has its own normaliser, all of one shape, ``std_epsilon`` and device."""
        if not stats or any(s is None for s in stats) or not _distinct(stats):
            return False
        first = stats[0]
        return all(s.mean.shape == first.mean.shape and s.std_epsilon == first.std_epsilon
                   and s.mean.device == first.mean.device for s in stats)  # fmt: skip

    def __init__(self, stats: Sequence[RunningMeanStd]) -> None:
        if not self.fits(stats):
            raise ValueError("StackedRunningMeanStd needs distinct normalisers of one shape, std_epsilon and device")
        self.stats = list(stats)
        self.std_epsilon = stats[0].std_epsilon
        self.shape = tuple(stats[0].mean.shape)
        self.begin()

    def begin(self) -> None:
        """Gather the seeds' current statistics."""
        self.mean = torch.stack([s.mean for s in self.stats])
        self.var = torch.stack([s.var for s in self.stats])
        self.count = torch.tensor([s.count for s in self.stats], dtype=torch.float64, device=self.mean.device)

    def end(self) -> None:
        """Write the statistics back into the seeds' objects."""
        for k, stats in enumerate(self.stats):
            stats.mean.copy_(self.mean[k])
            stats.var.copy_(self.var[k])
            stats.count = float(self.count[k])

    def _per_seed(self, scalars: Tensor) -> Tensor:
        """``[K]`` -> ``[K, 1, ...]`` broadcasting against ``[K, *shape]``."""
        return scalars.reshape(-1, *([1] * len(self.shape)))

    def update(self, x: Tensor) -> None:
        """``RunningMeanStd.update`` of each seed with its slice ``x[k]`` (all entries finite)."""
        batch = x.detach().to(device=self.mean.device, dtype=torch.float64).reshape(len(self.stats), -1, *self.shape)
        batch_count = batch.shape[1]
        if batch_count == 0:
            return
        batch_var, batch_mean = torch.var_mean(batch, dim=1, correction=0)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        # A tensor division, not ``int / Tensor`` (torch computes that as reciprocal-then-multiply).
        self.mean += delta * self._per_seed(torch.full_like(total, batch_count) / total)
        sum_sq = (self.var * self._per_seed(self.count) + batch_var * batch_count
                  + delta.square() * self._per_seed(self.count * batch_count / total))  # fmt: skip
        self.var.copy_(sum_sq / self._per_seed(total))
        self.count = total

    def normalize(self, x: Tensor, clip: float) -> Tensor:
        """``RunningMeanStd.normalize`` of each seed's slice ``x[k]`` (``[K, ..., *shape]``)."""
        expand = (len(self.stats), *([1] * (x.dim() - 1 - len(self.shape))), *self.shape)
        mean = self.mean.to(x.device).reshape(expand)
        std = (self.var.to(x.device) + self.std_epsilon).sqrt().reshape(expand)
        return ((x.to(torch.float64) - mean) / std).clamp_(-clip, clip).to(torch.float32)


class StackedRewardScaler:
    """K ``RewardScaler`` s of one ``gamma``, ``clip`` and size (see :meth:`fits`) on ``[K, N]``."""

    @staticmethod
    def fits(scalers: Sequence[RewardScaler | None]) -> bool:
        """Whether every seed has its own scaler, all with one gamma, clip and number of envs."""
        if not scalers or any(s is None for s in scalers) or not _distinct(scalers):
            return False
        first = scalers[0]
        def key(scaler: RewardScaler) -> tuple:
            return scaler.gamma, scaler.clip, scaler.discounted_return.shape

        same = all(key(s) == key(first) for s in scalers)
        return same and StackedRunningMeanStd.fits([s.return_stats for s in scalers])

    def __init__(self, scalers: Sequence[RewardScaler]) -> None:
        if not self.fits(scalers):
            raise ValueError("StackedRewardScaler needs distinct scalers of one gamma, clip and number of envs")
        self.scalers = list(scalers)
        self.gamma, self.clip = scalers[0].gamma, scalers[0].clip
        self.return_stats = StackedRunningMeanStd([s.return_stats for s in scalers])
        self.begin()

    def begin(self) -> None:
        """Gather the seeds' running returns and statistics."""
        self.discounted_return = np.stack([s.discounted_return for s in self.scalers])
        self.return_stats.begin()

    def end(self) -> None:
        """Write them back into the seeds' scalers."""
        for k, scaler in enumerate(self.scalers):
            scaler.discounted_return = self.discounted_return[k].copy()
        self.return_stats.end()

    def scale(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray | None:
        """``RewardScaler.scale`` of every seed on ``rewards, done [K, N]``; ``None`` (nothing
        changed) if a running return would turn non-finite -- run the per-seed scalers then."""
        discounted_return = self.discounted_return * self.gamma + rewards
        if not np.isfinite(discounted_return).all():
            return None
        self.discounted_return = discounted_return
        self.return_stats.update(torch.from_numpy(discounted_return))
        discounted_return[done] = 0.0
        std = (self.return_stats.var + self.return_stats.std_epsilon).sqrt().numpy()
        # The lone scaler divides by a Python float, which NumPy applies in the rewards' dtype.
        return np.clip(rewards / std.astype(rewards.dtype)[:, None], -self.clip, self.clip).astype(np.float32)
