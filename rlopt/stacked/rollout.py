"""Rollouts of K seeds at once: one policy call per vector step for all seeds, each seed its own env.

In: K lone ``RolloutCollector`` s (same ``n_steps``, ``num_envs`` and spaces), usually built by
:func:`build_collectors` exactly as K lone runs build theirs. Out: each seed's own
``RolloutBuffer``, filled exactly as its lone ``collect`` would fill it given the same actions --
the buffers are seed ``k``'s slices of one ``[K, T, N, ...]`` storage (``StackedBuffer``), so the
policy's observation for step ``t`` of all seeds, ``storage.obs[:, t]``, is a ``[K, N, obs_dim]``
view and no copy::

    build_collectors(cfg, seeds) -> StackedCollector(collectors).collect(act, value)
        per step: storage.obs[:, t] <- each seed's (normalised) observation
                  act(storage.obs[:, t])  (once for all K seeds)
                  step every seed's env (K CartPoles or K Pendulums as one array:
                  rlopt.stacked.cartpole, rlopt.stacked.pendulum),
                  then RolloutCollector.step's bookkeeping once on [K, N] host arrays

Each seed keeps its own vector env: gymnasium's CartPole vector entry point draws every sub-env's
reset from ONE generator, so one K x N vector env would let seeds influence each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlopt.config.schema import Config
from rlopt.envs import make_vec_env
from rlopt.normalization import RewardScaler, RunningMeanStd
from rlopt.rollout import RolloutBuffer, RolloutCollector, RolloutStats, act_on_finite_rows
from rlopt.stacked.cartpole import StackedCartPole
from rlopt.stacked.cartpole import fits as cartpole_fits
from rlopt.stacked.normalization import StackedRewardScaler, StackedRunningMeanStd
from rlopt.stacked.pendulum import StackedPendulum
from rlopt.stacked.pendulum import fits as pendulum_fits

StackedActFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
"""``act(obs [K, N, obs_dim]) -> (actions [K, N] or [K, N, act_dim], log_probs [K, N], values [K, N])``."""
StackedValueFn = Callable[[Tensor], Tensor]
"""``value(obs [K, N, obs_dim]) -> values [K, N]``; called once per rollout for the bootstrap."""


class StackedBuffer:
    """The ``[K, ...]`` storage behind K seeds' buffers: every ``RolloutBuffer`` field (``obs``,
    ``actions``, ..., ``last_values``) as one tensor with a leading seed dimension; ``seeds[k]`` is
    seed ``k``'s ``RolloutBuffer`` on views of it."""

    def __init__(self, collectors: Sequence[RolloutCollector], device: torch.device) -> None:
        first = collectors[0]
        layout = RolloutBuffer.layout(first.n_steps, first.num_envs, first.obs_dim, first.action_space)
        self.num_seeds = len(collectors)
        for name, (shape, dtype) in layout.items():
            setattr(self, name, torch.zeros((self.num_seeds, *shape), dtype=dtype, device=device))
        self.seeds = [
            RolloutBuffer(first.n_steps, first.num_envs, first.obs_dim, first.action_space, device,
                          storage={name: getattr(self, name)[k] for name in layout})  # fmt: skip
            for k in range(self.num_seeds)
        ]


class SeedEnvs:
    """The fallback env side: steps each seed's own vector env in turn and stacks the results
    (each in the dtype its env returned, as the lone collector sees it)."""

    def __init__(self, collectors: Sequence[RolloutCollector]) -> None:
        self.collectors = collectors

    def begin(self) -> None:
        """Nothing to gather: every seed's env steps itself."""

    def end(self) -> None:
        """Nothing to write back."""

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``actions [K, N, ...]`` -> stacked ``(obs, rewards, terminated, truncated)``."""
        results = [c.envs.step(seed_actions)[:4] for c, seed_actions in zip(self.collectors, actions)]
        stacked = (np.stack([np.asarray(part) for part in parts]) for parts in zip(*results))
        obs, rewards, terminated, truncated = stacked
        return obs, rewards, terminated, truncated


EnvSide = StackedCartPole | StackedPendulum | SeedEnvs
"""What steps the seeds' envs: ``begin()``, ``step(actions) -> (obs, rewards, terminated, truncated)``, ``end()``."""


class StackedCollector:
    """Drives K seeds' collectors with one ``act`` call per vector step and one ``value`` call per
    rollout. Each collector's ``buffer`` becomes its slice of ``self.buffer`` (a ``StackedBuffer``)
    and its host state (:meth:`RolloutCollector.host_arrays`) its row of ``[K, ...]`` arrays, so
    the per-step bookkeeping runs once on ``[K, N]`` arrays; normaliser, reward scaler, episode
    statistics and ``state_dict`` stay each collector's own. K CartPole or K Pendulum vector envs
    are stepped as one (``rlopt.stacked.cartpole``, ``rlopt.stacked.pendulum``); any other env
    steps seed by seed (:class:`SeedEnvs`)."""

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
        host = {name: _stacked_like(array, len(collectors)) for name, array in first.host_arrays().items()}
        for k, collector in enumerate(self.collectors):
            collector.buffer = self.buffer.seeds[k]
            collector.bind_host_state({name: array[k] for name, array in host.items()})
        self._host = host
        self._env_side: tuple[list[Any], EnvSide] | None = None
        staged = ("valid", "rewards", "terminated", "truncated")
        self._host_tensors = {name: torch.from_numpy(host[name]) for name in staged}
        self._normalized = any(c.obs_normalizer is not None for c in self.collectors)
        self._scaled = any(c.reward_scaler is not None for c in self.collectors)
        space = first.action_space
        self._bounds = (space.low, space.high) if isinstance(space, spaces.Box) else None
        if isinstance(space, spaces.Box):  # clipped into the space's dtype, as the lone collector does
            self._env_actions = np.empty((len(collectors), self.num_envs, *space.shape), dtype=space.dtype)

    @property
    def num_seeds(self) -> int:
        return len(self.collectors)

    def env_side(self) -> EnvSide:
        """Where the collectors' envs are now (a resume may have swapped them: then built anew)."""
        envs = [c.envs for c in self.collectors]
        cached = self._env_side
        if cached is None or len(cached[0]) != len(envs) or any(a is not b for a, b in zip(cached[0], envs)):
            side: EnvSide
            if cartpole_fits(envs):
                side = StackedCartPole(envs)
            elif pendulum_fits(envs):
                side = StackedPendulum(envs)
            else:
                side = SeedEnvs(self.collectors)
            cached = self._env_side = (envs, side)
        return cached[1]

    def _stacked_statistics(self) -> tuple[StackedRunningMeanStd | None, StackedRewardScaler | None]:
        """The seeds' normalisers as ``[K, ...]`` statistics, where they fit (else per seed)."""
        normalizers = [c.obs_normalizer for c in self.collectors]
        same_clip = len({c.obs_clip for c in self.collectors}) == 1
        stacks = same_clip and StackedRunningMeanStd.fits(normalizers)
        obs_stats = StackedRunningMeanStd(normalizers) if stacks else None
        scalers = [c.reward_scaler for c in self.collectors]
        return obs_stats, StackedRewardScaler(scalers) if StackedRewardScaler.fits(scalers) else None

    def _observe(self, t: int, obs_stats: StackedRunningMeanStd | None) -> bool:
        """``RolloutCollector.observe`` of every seed into ``buffer.obs[:, t]``; all finite?"""
        raw_obs, obs_t = self._host["raw_obs"], self.buffer.obs[:, t]
        if not self._normalized:
            obs_t.copy_(raw_obs)
        elif obs_stats is not None and bool(torch.isfinite(raw_obs).all()):
            obs_stats.update(raw_obs)
            obs_t.copy_(obs_stats.normalize(raw_obs, clip=self.collectors[0].obs_clip))
        else:  # per seed, on the seeds' own normalisers (which drop non-finite rows)
            if obs_stats is not None:
                obs_stats.end()
            for collector in self.collectors:
                collector.observe(t)
            if obs_stats is not None:
                obs_stats.begin()
        return all(c.raw_obs_finite for c in self.collectors)

    def _scale_rewards(self, t: int, rewards: np.ndarray, done: np.ndarray, stats: StackedRewardScaler | None) -> None:
        """``host rewards[:, t]``: the raw rewards, or each seed's scaled by its reward scaler."""
        scaled = None if stats is None else stats.scale(rewards, done)
        if scaled is not None:
            self._host["rewards"][:, t] = scaled
        elif not self._scaled:
            self._host["rewards"][:, t] = rewards
        else:  # per seed (a non-finite running return, or scalers that do not stack)
            if stats is not None:
                stats.end()
            for k, scaler in enumerate(c.reward_scaler for c in self.collectors):
                self._host["rewards"][k, t] = rewards[k] if scaler is None else scaler.scale(rewards[k], done[k])
            if stats is not None:
                stats.begin()

    def _step(self, t: int, actions: Tensor, env_side: EnvSide,
              reward_stats: StackedRewardScaler | None) -> None:  # fmt: skip
        """``RolloutCollector.step`` of every seed on ``[K, N]`` arrays: valid mask, env step,
        rewards, flags, next observation and episode bookkeeping."""
        host, collectors = self._host, self.collectors
        valid = np.logical_not(host["prev_done"], out=host["valid"][:, t])
        env_actions = actions.detach().cpu().numpy()
        if self._bounds is not None:  # Box: the env gets the clipped action, the buffer the sample
            env_actions = np.clip(env_actions, *self._bounds, out=self._env_actions)
        next_obs, rewards, terminated, truncated = env_side.step(env_actions)
        self._scale_rewards(t, rewards, terminated | truncated, reward_stats)
        host["terminated"][:, t] = terminated
        host["truncated"][:, t] = truncated
        host["raw_obs"].copy_(torch.from_numpy(next_obs))
        finite = np.isfinite(next_obs).reshape(len(collectors), -1).all(axis=1)
        for collector, seed_finite in zip(collectors, finite.tolist()):
            collector.raw_obs_finite = seed_finite
        host["episode_returns"] += rewards
        host["episode_lengths"] += valid
        done = np.logical_or(terminated, truncated, out=host["prev_done"])
        if done.any():
            for k in np.flatnonzero(done.any(axis=1)).tolist():
                collectors[k].close_episodes(done[k])

    def collect(self, act: StackedActFn, value: StackedValueFn) -> list[RolloutStats]:
        """One rollout of every seed; returns each seed's ``RolloutStats`` (see
        ``RolloutCollector.collect``, whose phases this runs on ``[K, N]`` arrays). A seed with a
        non-finite observation row gets exactly the lone treatment
        (:func:`rlopt.rollout.act_on_finite_rows` is the identity on finite rows)."""
        collectors, buffer = self.collectors, self.buffer
        for collector in collectors:
            collector.begin_rollout()
        env_side = self.env_side()
        obs_stats, reward_stats = self._stacked_statistics()
        records: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
        env_side.begin()
        try:
            for t in range(self.n_steps):
                obs_t = buffer.obs[:, t]
                outputs = act(obs_t) if self._observe(t, obs_stats) else act_on_finite_rows(act, obs_t)
                for record, output in zip(records, outputs):
                    record.append(output)
                self._step(t, outputs[0], env_side, reward_stats)
        finally:  # the per-seed envs and normalisers hold the state between rollouts
            env_side.end()
            for stats in (obs_stats, reward_stats):
                if stats is not None:
                    stats.end()
        for record, name in zip(records, ("actions", "log_probs", "values")):
            torch.stack(record, dim=1, out=getattr(buffer, name))
        for name, tensor in self._host_tensors.items():
            getattr(buffer, name).copy_(tensor)
        for collector in collectors:  # the normaliser sees this obs at the next rollout's first step
            collector.write_policy_obs(collector.buffer.last_obs, update_normalizer=False)
        last_values = value(buffer.last_obs)
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


def _stacked_like(array: Any, num_seeds: int) -> Any:
    """A zero ``[num_seeds, *array.shape]`` array or tensor of ``array``'s dtype."""
    if isinstance(array, Tensor):
        return torch.zeros((num_seeds, *array.shape), dtype=array.dtype)
    return np.zeros((num_seeds, *array.shape), dtype=array.dtype)


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
