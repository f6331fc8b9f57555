"""Rollouts of K seeds at once: one policy call per vector step for all seeds, each seed its own env.

In: K lone ``RolloutCollector`` s (same ``n_steps``, ``num_envs`` and spaces), usually built by
:func:`build_collectors` exactly as K lone runs build theirs. Out: each seed's own
``RolloutBuffer``, filled exactly as its lone ``collect`` would fill it given the same actions --
the buffers are seed ``k``'s slices of one ``[K, T, N, ...]`` storage (``StackedBuffer``), so the
policy's observation for step ``t`` of all seeds, ``storage.obs[:, t]``, is a ``[K, N, obs_dim]``
view and no copy::

    build_collectors(cfg, seeds) -> StackedCollector(collectors).collect(act, value)
        per step: collector_k.observe(t)  (normalise, write storage.obs[k, t])
                  act(storage.obs[:, t])  (once for all K seeds)
                  collector_k.step(t, actions[k], ...)  (its own env, scaler, episode stats)

Each seed keeps its own vector env: gymnasium's CartPole vector entry point draws every sub-env's
reset from ONE generator, so one K x N vector env would let seeds influence each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from rlopt.config.schema import Config
from rlopt.envs import make_vec_env
from rlopt.normalization import RewardScaler, RunningMeanStd
from rlopt.rollout import RolloutBuffer, RolloutCollector, RolloutStats, act_on_finite_rows

StackedActFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
"""``act(obs [K, N, obs_dim]) -> (actions [K, N] or [K, N, act_dim], log_probs [K, N], values [K, N])``."""
StackedValueFn = Callable[[Tensor], Tensor]
"""``value(obs [K, N, obs_dim]) -> values [K, N]``; called once per rollout for the bootstrap."""


class StackedBuffer:
    """The ``[K, ...]`` storage behind K seeds' buffers: every ``RolloutBuffer`` field (``obs``,
    ``actions``, ..., ``last_values``) as one tensor with a leading seed dimension; ``seeds[k]`` is
    seed ``k``'s ``RolloutBuffer`` on views of it."""

    def __init__(self, buffers_like: Sequence[RolloutCollector], device: torch.device) -> None:
        first = buffers_like[0]
        layout = RolloutBuffer.layout(first.n_steps, first.num_envs, first.obs_dim, first.action_space)
        self.num_seeds = len(buffers_like)
        for name, (shape, dtype) in layout.items():
            setattr(self, name, torch.zeros((self.num_seeds, *shape), dtype=dtype, device=device))
        self.seeds = [
            RolloutBuffer(first.n_steps, first.num_envs, first.obs_dim, first.action_space, device,
                          storage={name: getattr(self, name)[k] for name in layout})  # fmt: skip
            for k in range(self.num_seeds)
        ]


class StackedCollector:
    """Drives K seeds' collectors with one ``act`` call per vector step and one ``value`` call per
    rollout. Each collector's ``buffer`` is replaced by its slice of ``self.buffer`` (a
    ``StackedBuffer``); everything else (env, normaliser, reward scaler, episode statistics,
    ``state_dict``) stays the collector's own."""

    def __init__(self, collectors: Sequence[RolloutCollector]) -> None:
        if not collectors:
            raise ValueError("StackedCollector needs at least one collector")
        first = collectors[0]
        for k, other in enumerate(collectors):
            mismatch = [
                key for key in ("n_steps", "num_envs", "obs_dim", "action_space", "device")
                if getattr(other, key) != getattr(first, key)
            ]  # fmt: skip
            if mismatch:
                raise ValueError(f"collector {k} differs from collector 0 in {', '.join(mismatch)}")
            if any(other.envs is c.envs for c in collectors[:k]):
                raise ValueError(f"collector {k} shares its vector env with an earlier collector")
        self.collectors = list(collectors)
        self.n_steps, self.num_envs = first.n_steps, first.num_envs
        self.buffer = StackedBuffer(self.collectors, first.device)
        for collector, buffer in zip(self.collectors, self.buffer.seeds):
            collector.buffer = buffer

    @property
    def num_seeds(self) -> int:
        return len(self.collectors)

    def collect(self, act: StackedActFn, value: StackedValueFn) -> list[RolloutStats]:
        """One rollout of every seed; returns each seed's ``RolloutStats`` (see
        ``RolloutCollector.collect``). A seed with a non-finite observation row gets exactly the
        lone treatment (:func:`rlopt.rollout.act_on_finite_rows` is the identity on finite rows)."""
        collectors, stacked_obs = self.collectors, self.buffer.obs
        for collector in collectors:
            collector.begin_rollout()
        for t in range(self.n_steps):
            finite = True
            for collector in collectors:
                finite &= collector.observe(t)[1]
            obs_t = stacked_obs[:, t]
            actions, log_probs, values = act(obs_t) if finite else act_on_finite_rows(act, obs_t)
            for k, collector in enumerate(collectors):
                collector.step(t, actions[k], log_probs[k], values[k])
        for collector in collectors:
            collector.end_rollout()
        last_values = value(self.buffer.last_obs)
        return [collector.finish_rollout(last_values[k]) for k, collector in enumerate(collectors)]

    def state_dict(self) -> list[dict[str, Any]]:
        """Each seed's ``RolloutCollector.state_dict()`` (seed ``k`` at index ``k``)."""
        return [collector.state_dict() for collector in self.collectors]

    def load_state_dict(self, states: Sequence[dict[str, Any]]) -> None:
        """Restore ``state_dict()``: ``states[k]`` goes to seed ``k`` (as a lone collector's would)."""
        if len(states) != self.num_seeds:
            raise ValueError(f"{len(states)} collector states for {self.num_seeds} seeds")
        for collector, state in zip(self.collectors, states):
            collector.load_state_dict(state)

    def close(self) -> None:
        """Close every seed's vector env."""
        for collector in self.collectors:
            collector.envs.close()


def build_collector(
    cfg: Config, seed: int, obs_normalizer: RunningMeanStd | None, device: torch.device | str = "cpu"
) -> RolloutCollector:
    """Seed ``seed``'s vector env and collector for ``cfg``, built as ``rlopt.trainer.Trainer``
    builds a lone run's (``cfg.seed`` replaced by ``seed``). ``obs_normalizer`` is that seed's
    agent's; if ``None`` and ``cfg.env.normalize_obs``, a fresh ``RunningMeanStd`` (as
    ``agents.base`` builds it) -- the collector's ``obs_normalizer`` then."""
    envs = make_vec_env(cfg.env.id, cfg.env.num_envs, seed=seed)
    if obs_normalizer is None and cfg.env.normalize_obs:
        obs_normalizer = RunningMeanStd(envs.single_observation_space.shape)
    reward_scaler = (
        RewardScaler(cfg.env.num_envs, cfg.gamma, clip=cfg.env.reward_clip) if cfg.env.normalize_reward else None
    )
    return RolloutCollector(
        envs, cfg.rollout.n_steps, device=device, obs_normalizer=obs_normalizer, seed=seed,
        obs_clip=cfg.env.obs_clip, reward_scaler=reward_scaler,
    )  # fmt: skip


def build_collectors(
    cfg: Config,
    seeds: Sequence[int],
    obs_normalizers: Sequence[RunningMeanStd | None] | None = None,
    device: torch.device | str = "cpu",
) -> StackedCollector:
    """A ``StackedCollector`` over :func:`build_collector` for each seed; ``obs_normalizers[k]``
    (default ``None``) is seed ``k``'s agent's normaliser."""
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    if obs_normalizers is None:
        obs_normalizers = [None] * len(seeds)
    elif len(obs_normalizers) != len(seeds):
        raise ValueError(f"{len(obs_normalizers)} obs normalisers for {len(seeds)} seeds")
    collectors: list[RolloutCollector] = []
    try:
        for seed, normalizer in zip(seeds, obs_normalizers):
            collectors.append(build_collector(cfg, seed, normalizer, device))
        return StackedCollector(collectors)
    except BaseException:
        for collector in collectors:
            collector.envs.close()
        raise
