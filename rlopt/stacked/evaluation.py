"""The deterministic evaluation of K seeds of a stack run together (issue 17): one stacked forward
per vector step for every seed, each seed's returned dict equal (``==``) to its lone agent's
:func:`rlopt.evaluation.evaluate_episodes`.

Per seed, everything :func:`~rlopt.evaluation.evaluate_episodes` does is kept: the same fresh vector
envs (``make_vec_env(cfg.env.id, size)``, chunks of at most ``chunk`` sub-envs reset with seed
``seed + EVAL_SEED_OFFSET + start``), the first episode of each sub-env, the same step limit and
float64 sums. The actions are those of ``agents[k].predict(obs, deterministic=True)``: the K
actors run on ``[K, size, obs_dim]`` by the exact stacked forward (:func:`rlopt.stacked.networks.stacked_mlp`
with ``exact=True``, whatever ``stack_exact`` the stack trains with), each seed's observation
normaliser applied as in ``Agent.preprocess``, the mode of each distribution, Box actions clipped.
That forward equals the lone one row for row at the presets' shapes (not for CartPole's 2-output
head on 1-3 rows here: a lone ``nn.Linear`` takes another kernel); at each chunk's first observations
every seed's mode inputs (log-probabilities or means) are compared bit for bit with its lone
actor's, and a seed that differs acts through its own ``predict`` for that chunk -- so a result
never differs from the lone evaluation's (kernels are chosen by shape, not by values). CartPole envs step as one array (:class:`StackedCartPole`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlopt.distributions import Categorical
from rlopt.envs import make_vec_env
from rlopt.evaluation import EVAL_CHUNK_ENVS, EVAL_SEED_OFFSET, episode_step_limit
from rlopt.networks import clip_action_to_space
from rlopt.stacked.cartpole import StackedCartPole, fits as cartpole_fits
from rlopt.stacked.learner import StackedLearner
from rlopt.stacked.networks import BoundLayers, Layers
from rlopt.stacked.normalization import StackedRunningMeanStd

STACKED_EVAL_ENVS = 4096
"""At most this many evaluation envs of a stack exist at once (``K`` seeds x a chunk's envs): more
seeds than fit are evaluated in groups, each seed's chunks as :data:`EVAL_CHUNK_ENVS` cuts them."""


class StackedPolicy:
    """The deterministic policy of the seeds ``indices`` of a stack on ``[len(indices), B, obs_dim]``
    raw observations, with the weights they have now (bound once: no update may run meanwhile)."""

    def __init__(self, learner: StackedLearner, indices: Sequence[int]) -> None:
        self.agents = [learner.agents[k] for k in indices]
        actor = learner.actor
        self.first = actor.seeds[0]
        with torch.no_grad():
            stacked = actor.stack_params()[list(indices)]
            self.layers: BoundLayers = Layers(actor.flat, self.first.body, exact=True).bind(stacked)
        self.discrete = actor.is_discrete
        self.device = learner.device
        self.action_space = self.agents[0].action_space
        normalizers = [agent.obs_normalizer for agent in self.agents]
        self.obs_stats = StackedRunningMeanStd(normalizers) if StackedRunningMeanStd.fits(normalizers) else None
        self.obs_clip = self.agents[0].cfg.env.obs_clip

    def preprocess(self, obs: np.ndarray) -> Tensor:
        """``Agent.preprocess`` of each seed's rows: float32, normalised with its frozen statistics."""
        tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self.obs_stats is not None:
            return self.obs_stats.normalize(tensor, clip=self.obs_clip)
        if self.agents[0].obs_normalizer is None:
            return tensor
        return torch.stack([agent.preprocess(rows) for agent, rows in zip(self.agents, tensor)])

    @torch.no_grad()
    def mode_inputs(self, obs: np.ndarray) -> Tensor:
        """What each row's mode is read from: log-probabilities (Discrete) or means (Box), ``[K, B, n]``."""
        head = self.layers.run(self.preprocess(obs))
        if self.first.squash_mean:  # Actor._head, as a lone actor computes it
            head = self.first.mean_center + self.first.mean_half_range * torch.tanh(head)
        return Categorical(head).log_probs if self.discrete else head  # DiagGaussian's mode: its mean

    def actions(self, mode_inputs: Tensor) -> np.ndarray:
        """``Agent.predict(obs, deterministic=True)``'s actions of every row, ``[K, B, ...]``."""
        if self.discrete:
            return Categorical._from_log_probs(mode_inputs).mode().cpu().numpy()
        actions = mode_inputs.cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Box):
            actions = clip_action_to_space(actions, self.action_space)
        return actions

    @torch.no_grad()
    def differing(self, obs: np.ndarray, mode_inputs: Tensor) -> list[bool]:
        """Per seed: whether its lone actor's mode inputs on ``obs[k]`` differ from ``mode_inputs[k]``
        in any bit (NaN equals NaN: a diverged seed's NaNs come out the same)."""
        flags = []
        for agent, rows, mine in zip(self.agents, obs, mode_inputs):
            dist = agent.actor(agent.preprocess(rows))
            lone = dist.log_probs if self.discrete else dist.mean
            same = lone.shape == mine.shape and bool(((lone == mine) | (lone.isnan() & mine.isnan())).all())
            flags.append(not same)
        return flags


def evaluate_stacked(
    learner: StackedLearner,
    episodes: int,
    seeds: Sequence[int] | None = None,
    indices: Sequence[int] | None = None,
    chunk: int = EVAL_CHUNK_ENVS,
) -> list[dict[str, Any]]:
    """:func:`rlopt.evaluation.evaluate_episodes` ``(learner.agents[k], episodes, seeds[i], chunk=chunk)``
    of each seed index ``k = indices[i]`` (default every seed, each with its ``cfg.seed``),
    deterministic, the seeds stepped together (in groups of at most :data:`STACKED_EVAL_ENVS` envs);
    one dict per index, each equal to the lone call's."""
    indices = list(range(learner.num_seeds)) if indices is None else list(indices)
    seeds = [learner.agents[k].cfg.seed for k in indices] if seeds is None else list(seeds)
    if len(seeds) != len(indices):
        raise ValueError(f"{len(seeds)} evaluation seeds for {len(indices)} seed indices")
    if not indices:
        return []
    max_steps = episode_step_limit(learner.agents[indices[0]])
    if episodes <= 0:
        return [{"return_mean": float("nan"), "return_std": float("nan"), "episodes": 0, "truncated_episodes": 0,
                 "max_episode_steps": max_steps, "episode_length": float("nan")} for _ in indices]  # fmt: skip
    group = max(1, STACKED_EVAL_ENVS // min(chunk, episodes))
    results = []
    for first in range(0, len(indices), group):
        part = slice(first, first + group)
        results += _evaluate_group(StackedPolicy(learner, indices[part]), episodes, seeds[part], chunk, max_steps)
    return results


def _evaluate_group(
    policy: StackedPolicy, episodes: int, seeds: list[int], chunk: int, max_steps: int
) -> list[dict[str, Any]]:
    """:func:`evaluate_stacked` of the seeds of ``policy``, with evaluation seeds ``seeds``."""
    returns = np.zeros((len(seeds), episodes), dtype=np.float64)
    lengths = np.zeros((len(seeds), episodes), dtype=np.int64)
    cut = np.zeros(len(seeds), dtype=np.int64)
    env_id = policy.agents[0].cfg.env.id
    for start in range(0, episodes, chunk):
        size = min(chunk, episodes - start)
        envs: list[Any] = []
        try:
            for _ in seeds:
                envs.append(make_vec_env(env_id, size))
            obs = np.stack([env.reset(seed=seed + EVAL_SEED_OFFSET + start)[0] for env, seed in zip(envs, seeds)])
            window = slice(start, start + size)
            cut += _run_chunk(policy, envs, obs, max_steps, returns[:, window], lengths[:, window])
        finally:
            for env in envs:
                env.close()
    return [{"return_mean": float(r.mean()), "return_std": float(r.std()), "episodes": episodes,
             "truncated_episodes": int(c), "max_episode_steps": max_steps, "episode_length": float(n.mean())}
            for r, n, c in zip(returns, lengths, cut)]  # fmt: skip


def _run_chunk(
    policy: StackedPolicy, envs: list[Any], obs: np.ndarray, max_steps: int, returns: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Step every seed's freshly reset ``envs`` (first observations ``obs`` ``[K, size, ...]``) until
    each sub-env's first episode ends or ``max_steps``; adds into ``returns`` and ``lengths``
    (``[K, size]`` views) as the lone loop does, and returns the episodes cut per seed."""
    running = np.ones(returns.shape, dtype=bool)
    cartpole = StackedCartPole(envs) if cartpole_fits(envs) else None
    if cartpole is not None:
        cartpole.begin()
    mode_inputs = policy.mode_inputs(obs)
    lone = np.array(policy.differing(obs, mode_inputs))  # these seeds act through their own predict
    steps = 0
    while running.any() and steps < max_steps:
        actions = policy.actions(mode_inputs)
        for k in np.flatnonzero(lone & running.any(axis=1)):
            actions[k] = policy.agents[k].predict(obs[k], deterministic=True)[0]
        if cartpole is not None:
            obs, rewards, terminated, truncated = cartpole.step(actions)
            returns += np.where(running, rewards, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
        else:  # seed by seed, only the seeds still running (as each lone loop stops)
            for k in np.flatnonzero(running.any(axis=1)):
                obs[k], rewards, terminated, truncated, _ = envs[k].step(actions[k])
                returns[k] += np.where(running[k], rewards, 0.0)
                lengths[k] += running[k]
                running[k] &= ~(terminated | truncated)
        steps += 1
        if running.any() and steps < max_steps:
            mode_inputs = policy.mode_inputs(obs)
    return running.sum(axis=1)
