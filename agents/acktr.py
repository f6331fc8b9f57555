"""ACKTR (Wu et al. 2017) as a configuration of NPG: the actor's trust-region step applies the
K-FAC approximation of the Fisher (``actor.optim: {name: trust_region, solver: kfac, metric: fisher,
line_search: false}``) and the critic is fitted by K-FAC Gauss-Newton steps (``critic.optim.name:
kfac``, :mod:`rlopt.kfac_optimizer`). Only the defaults differ from :class:`agents.npg.NPG`.
"""

from __future__ import annotations

import copy
from typing import Any

from agents.npg import NPG
from rlopt.config import Config

ACKTR_CRITIC_OPTIM: dict[str, Any] = {"name": "kfac", "lr": 0.25, "momentum": 0.9, "kl_clip": 0.001}
"""The critic's spec when ``critic.optim`` is empty (ACKTR's K-FAC critic step, baselines' lr and clip)."""


class ACKTR(NPG):
    """NPG with the ``kfac`` solver and a K-FAC critic by default."""

    name = "acktr"

    @classmethod
    def resolve_actor_optim(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """NPG's trust-region spec with ``solver: kfac`` unless the spec names another solver."""
        resolved = super().resolve_actor_optim(spec)
        return resolved if resolved is spec else {**resolved, "solver": spec.get("solver", "kfac")}

    @classmethod
    def resolve_config(cls, cfg: Config) -> Config:
        """NPG's resolution, with :data:`ACKTR_CRITIC_OPTIM` when ``critic.optim`` is empty."""
        resolved = super().resolve_config(cfg)
        if not cfg.critic.optim:
            resolved.critic.optim = copy.deepcopy(ACKTR_CRITIC_OPTIM)
        return resolved
