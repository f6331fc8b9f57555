"""Running observation and reward statistics: stateful normalisers the collector applies.

Layer: between the env and the rollout storage. In: raw observation batches (``RunningMeanStd``)
or per-step rewards and done flags (``RewardScaler``). Out: normalised float32 observations and
scaled rewards for the learner; episode statistics stay raw. Both save and restore their state as
plain tensors/floats (``state_dict`` / ``load_state_dict``), nested in the collector's state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


class RunningMeanStd:
    """Running mean and (population) variance of a stream of batches, kept in float64.

    Batches are merged with the parallel algorithm of Chan, Golub & LeVeque (1979): for counts
    ``n_a, n_b``, means ``m_a, m_b``, variances ``v_a, v_b`` and ``d = m_b - m_a``::

        m = m_a + d * n_b / n,   v = (n_a v_a + n_b v_b + d^2 n_a n_b / n) / n,   n = n_a + n_b.

    The stats start at mean 0, variance 1 with pseudo-count ``epsilon`` (a prior that keeps the
    first normalisations finite); ``epsilon = 0`` gives the exact statistics of the data seen.
    """

    def __init__(
        self,
        shape: int | tuple[int, ...],
        epsilon: float = 1e-4,
        std_epsilon: float = 1e-8,
        device: torch.device | str = "cpu",
    ) -> None:
        """``std_epsilon`` is added to the variance under the square root in ``normalize``."""
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = float(epsilon)
        self.std_epsilon = std_epsilon

    def update(self, x: Tensor) -> None:
        """Merge a batch ``x`` of shape ``[..., *shape]`` (all leading dims are samples).

        Samples with a non-finite entry are left out: one NaN would poison the statistics for
        the rest of the run (issue 12); the update that sees it is skipped by the agent.
        """
        batch = x.detach().to(device=self.mean.device, dtype=torch.float64).reshape(-1, *self.mean.shape)
        if batch.shape[0] > 0:
            finite = torch.isfinite(batch).reshape(batch.shape[0], -1).all(dim=1)
            if not bool(finite.all()):
                batch = batch[finite]
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        batch_var, batch_mean = torch.var_mean(batch, dim=0, correction=0)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean += delta * (batch_count / total)
        sum_sq = self.var * self.count + batch_var * batch_count + delta.square() * (self.count * batch_count / total)
        self.var.copy_(sum_sq / total)
        self.count = total

    def normalize(self, x: Tensor, clip: float = 10.0) -> Tensor:
        """``clamp((x - mean) / sqrt(var + std_epsilon), -clip, clip)`` as float32 on ``x.device``."""
        mean = self.mean.to(x.device)
        std = (self.var.to(x.device) + self.std_epsilon).sqrt()
        return ((x.to(torch.float64) - mean) / std).clamp_(-clip, clip).to(torch.float32)

    def state_dict(self) -> dict[str, Any]:
        """``{"mean": Tensor, "var": Tensor, "count": float}`` (copies)."""
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the statistics saved by ``state_dict``."""
        if tuple(state["mean"].shape) != tuple(self.mean.shape):
            raise ValueError(f"normaliser shape {tuple(self.mean.shape)} != saved {tuple(state['mean'].shape)}")
        self.mean.copy_(state["mean"])
        self.var.copy_(state["var"])
        self.count = float(state["count"])


class RewardScaler:
    """Divide rewards by the running std of the discounted return (SB3's VecNormalize; Engstrom
    et al. 2020, "Implementation matters", reward scaling): R ← γR(1 − done) + r, r̃ = r / √Var[R].

    Only the learning signal is scaled; episode statistics stay in raw reward units.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-4) -> None:
        self.gamma = gamma
        self.clip = clip
        self.discounted_return = np.zeros(num_envs, dtype=np.float64)
        self.return_stats = RunningMeanStd((), epsilon=epsilon)

    def scale(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Update the running return with this step's rewards and return the scaled rewards.

        A non-finite reward restarts its env's running return and never enters the statistics;
        its scaled reward stays non-finite, so the update that would learn from it is skipped.
        """
        self.discounted_return = self.discounted_return * self.gamma + rewards
        finite = np.isfinite(self.discounted_return)
        if finite.all():
            self.return_stats.update(torch.from_numpy(self.discounted_return))
        else:
            self.return_stats.update(torch.from_numpy(self.discounted_return[finite]))
            self.discounted_return[~finite] = 0.0
        self.discounted_return[done] = 0.0
        std = float((self.return_stats.var + self.return_stats.std_epsilon).sqrt())
        return np.clip(rewards / std, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"discounted_return": torch.from_numpy(self.discounted_return.copy()),
                "return_stats": self.return_stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discounted_return[:] = state["discounted_return"].numpy()
        self.return_stats.load_state_dict(state["return_stats"])
