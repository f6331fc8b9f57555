"""REINFORCE (Williams 1992) with an optional learned baseline.

A2C with another hook, :meth:`compute_targets`: the advantage is the Monte-Carlo return
G_t = Σ_k γ^k r_{t+k} (minus V(s_t) with ``reinforce.baseline: value``). Episodes cut by the
end of a rollout bootstrap from V of the next observation when a critic exists, and from 0
otherwise (the plain Monte-Carlo estimator of a truncated sum).
"""

from __future__ import annotations

from torch import Tensor

from agents.actor_critic import A2C
from rlopt.config import Config
from rlopt.errors import ConfigError
from rlopt.returns import discounted_returns, next_values_from
from rlopt.rollout import RolloutBuffer

BASELINES = ("none", "value")
"""``reinforce.baseline``: nothing, or a learned V(s) (the critic)."""


class REINFORCE(A2C):
    """Policy gradient with Monte-Carlo returns; baseline ``none`` or ``value``."""

    name = "reinforce"
    config_section = "reinforce"

    @classmethod
    def check_config(cls, cfg: Config) -> Config:
        """``reinforce.baseline`` is a known one, then the base rules."""
        if cfg.reinforce.baseline not in BASELINES:
            raise ConfigError(
                f"reinforce.baseline: unknown baseline '{cfg.reinforce.baseline}'; valid: {', '.join(BASELINES)}"
            )
        return super().check_config(cfg)

    @property
    def uses_critic(self) -> bool:
        return self.cfg.reinforce.baseline == "value"

    def compute_targets(self, buffer: RolloutBuffer) -> tuple[Tensor, Tensor]:
        """Â_t = G_t − b(s_t), critic target G_t (Sutton & Barto 2018, §13.4)."""
        next_values = next_values_from(buffer.values, buffer.last_values)
        returns = discounted_returns(buffer.rewards, buffer.terminated, buffer.truncated, next_values, self.cfg.gamma)
        return returns - buffer.values, returns
