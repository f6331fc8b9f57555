"""Action distributions with closed-form log-prob, entropy and KL.

Plain ``__slots__`` classes instead of ``torch.distributions``: they are rebuilt on every forward
pass, and skipping argument validation and the ``Distribution`` machinery keeps that cheap.
Every quantity is reduced to one value per batch row, shape ``[B]``.

``Categorical``  — gymnasium ``Discrete``: logits ``[B, n]``.
``DiagGaussian`` — gymnasium ``Box``: mean ``[B, d]``, log-std ``[d]`` (state-independent) or
``[B, d]``; the log-std broadcasts against the mean and is never materialised at ``[B, d]``.

Numerical layer (torch only): the policy heads of :mod:`rlopt.networks` build these, and the
learners call their methods (``log_prob``, ``entropy``, ``kl``) directly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# 0.5 * log(2π): the normaliser of a unit Gaussian density, per dimension.
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def _lowest(dtype: torch.dtype, cache: dict[torch.dtype, float] = {}) -> float:
    """``torch.finfo(dtype).min``, looked up once per dtype (it sits on every policy forward)."""
    if dtype not in cache:
        cache[dtype] = torch.finfo(dtype).min
    return cache[dtype]


class Categorical:
    """Categorical distribution over ``n`` actions, parameterised by normalised log-probabilities."""

    __slots__ = ("log_probs",)

    def __init__(self, logits: Tensor) -> None:
        """``logits``: ``[B, n]`` unnormalised scores; ``-inf`` masks an action out."""
        log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        # Clamp -inf (masked actions) to the most negative finite value so that p·log p = 0·finite = 0
        # in entropy and KL instead of 0·(-inf) = NaN (same guard as torch.distributions).
        self.log_probs: Tensor = log_probs.clamp(min=_lowest(log_probs.dtype))

    @classmethod
    def by_log_softmax(cls, logits: Tensor) -> Categorical:
        """``Categorical(logits)`` with ``log_softmax`` for the normalisation: equal up to float rounding
        (not bit for bit: lone runs keep ``logsumexp``), one fused kernel, ~3x faster on a few rows."""
        return cls._from_log_probs(torch.log_softmax(logits, dim=-1).clamp(min=_lowest(logits.dtype)))

    @classmethod
    def _from_log_probs(cls, log_probs: Tensor) -> Categorical:
        """Wrap already-normalised log-probabilities without recomputing logsumexp."""
        dist = cls.__new__(cls)
        dist.log_probs = log_probs
        return dist

    @property
    def probs(self) -> Tensor:
        """Action probabilities, ``[B, n]``."""
        return self.log_probs.exp()

    def sample(self) -> Tensor:
        """Draw one action per row with torch's global RNG; ``[B]`` int64, no gradient."""
        log_probs = self.log_probs.detach()
        if log_probs.dim() == 2:
            return torch.multinomial(log_probs.exp(), num_samples=1, replacement=True).squeeze(-1)
        flat_probs = log_probs.exp().reshape(-1, log_probs.shape[-1])
        return torch.multinomial(flat_probs, num_samples=1, replacement=True).reshape(log_probs.shape[:-1])

    def mode(self) -> Tensor:
        """Most probable action per row, ``[B]`` int64."""
        return self.log_probs.argmax(dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        """log π(a) for integer ``actions`` ``[B]`` → ``[B]``."""
        index = actions.long().unsqueeze(-1)
        return self.log_probs.gather(-1, index).squeeze(-1)

    def entropy(self) -> Tensor:
        """H(π) = -Σ_a π(a) log π(a), ``[B]``."""
        return -(self.probs * self.log_probs).sum(dim=-1)

    def kl(self, other: Categorical) -> Tensor:
        """KL(self ‖ other) = Σ_a p(a) (log p(a) - log q(a)), ``[B]``; differentiable in both."""
        return (self.probs * (self.log_probs - other.log_probs)).sum(dim=-1)

    def detach(self) -> Categorical:
        """A copy cut from the autograd graph (the fixed "old policy" in KL(π_old ‖ π_θ)); it shares
        no storage with ``self``, so no later in-place change of ``self``'s tensors reaches it."""
        return Categorical._from_log_probs(self.log_probs.detach().clone())

    def __getitem__(self, index: Tensor | slice) -> Categorical:
        """The distributions of a subset of the batch (a minibatch of the old policy)."""
        return Categorical._from_log_probs(self.log_probs[index])


class DiagGaussian:
    """Gaussian with diagonal covariance: independent Normal(mean_i, exp(log_std_i)²) per action dim."""

    __slots__ = ("mean", "log_std")

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        """``mean``: ``[B, d]``; ``log_std``: ``[d]`` (state-independent) or ``[B, d]``."""
        self.mean: Tensor = mean
        self.log_std: Tensor = log_std

    @property
    def std(self) -> Tensor:
        """Standard deviation, same shape as ``log_std``."""
        return self.log_std.exp()

    def sample(self) -> Tensor:
        """mean + std · ε, ε ~ N(0, I) from torch's global RNG; ``[B, d]``, unclipped, no gradient."""
        with torch.no_grad():
            return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> Tensor:
        """The mean, ``[B, d]``."""
        return self.mean

    def log_prob(self, actions: Tensor) -> Tensor:
        """log N(a; μ, σ²) summed over dims: Σ_i [-½((a_i-μ_i)/σ_i)² - log σ_i - ½ log 2π], ``[B]``."""
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - _HALF_LOG_TWO_PI).sum(dim=-1)

    def entropy(self) -> Tensor:
        """H = Σ_i (½ + ½ log 2π + log σ_i), ``[B]`` (broadcast when ``log_std`` is ``[d]``)."""
        per_row = (self.log_std + (0.5 + _HALF_LOG_TWO_PI)).sum(dim=-1)
        return per_row.expand(self.mean.shape[:-1])

    def kl(self, other: DiagGaussian) -> Tensor:
        """KL(p ‖ q) = Σ_i [log σq_i/σp_i + (σp_i² + (μp_i-μq_i)²)/(2σq_i²) - ½], ``[B]``."""
        log_std_diff = self.log_std - other.log_std  # log σp/σq
        scaled_mean_diff = (self.mean - other.mean) * torch.exp(-other.log_std)
        variance_ratio = torch.exp(2.0 * log_std_diff)  # σp²/σq²
        per_dim = -log_std_diff + 0.5 * (variance_ratio + scaled_mean_diff.square()) - 0.5
        return per_dim.sum(dim=-1)

    def detach(self) -> DiagGaussian:
        """A copy cut from the autograd graph (the fixed "old policy" in KL(π_old ‖ π_θ)).

        Cloned, not only detached: an actor's state-independent ``log_std`` IS its ``nn.Parameter``,
        and ``Tensor.detach`` shares storage, so the optimizer's in-place step (and every trial point
        of TRPO's line search) would move π_old's σ along with π_θ's and hide the σ change from the KL.
        """
        return DiagGaussian(self.mean.detach().clone(), self.log_std.detach().clone())

    def __getitem__(self, index: Tensor | slice) -> DiagGaussian:
        """The distributions of a subset of the batch; a shared [d] log-std stays shared (the same
        tensor as ``self``'s: index a :meth:`detach` copy to get a fixed minibatch of π_old)."""
        log_std = self.log_std if self.log_std.dim() == 1 else self.log_std[index]
        return DiagGaussian(self.mean[index], log_std)


ActionDistribution = Categorical | DiagGaussian
"""What a policy head returns; ``p.kl(q)`` needs ``q`` of the same type (π_old and π_θ of one actor)."""
