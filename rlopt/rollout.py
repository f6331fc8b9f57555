"""Rollout storage and collection: the layer that turns env steps into a learner's batch.

In: a NEXT_STEP vector env (``rlopt.envs.make_vec_env``), the policy callables ``act`` / ``value``
and optional normalisers (``rlopt.normalization``). Out: a filled ``RolloutBuffer`` plus
``RolloutStats``; the agent computes advantages/returns from the buffer with ``rlopt.returns`` and
flattens it into a ``RolloutBatch``::

    make_vec_env -> RolloutCollector.collect(act, value) -> RolloutBuffer
                 -> agent.compute_targets(buffer)  (rlopt.returns: compute_gae | discounted_returns)
                 -> buffer.flatten() -> RolloutBatch -> agent.update(batch)

Autoreset convention (gymnasium >= 1.0, ``AutoresetMode.NEXT_STEP``). When sub-env ``e`` reports
``terminated | truncated`` at step ``t``, the observation returned at ``t`` is the true final
observation ``s_final``. The next ``step`` ignores the action, resets ``e`` and returns the reset
observation with reward 0 and no done flag. That *reset step* ``t+1`` is not a real transition: it
is stored with ``valid[t+1, e] = False`` and ``flatten()`` drops it. Its stored observation is
``s_final``, so ``values[t+1, e] = V(s_final)`` -- exactly the value a time-limit truncation must
bootstrap from (Pardo et al. 2018, "Time Limits in Reinforcement Learning").

All time-major tensors are ``[T, E]`` (steps x envs), row ``t`` holding the transition taken from
the observation in row ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from torch import Tensor

from rlopt.envs import validate_vector_env
from rlopt.errors import ConfigError
from rlopt.normalization import RewardScaler, RunningMeanStd
from rlopt.rollout_buffer import RolloutBatch, RolloutBuffer

__all__ = ["ActFn", "RolloutBatch", "RolloutBuffer", "RolloutCollector", "RolloutStats", "ValueFn",
           "act_on_finite_rows"]  # fmt: skip

ActFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
"""``act(obs [E, obs_dim]) -> (action, log_prob [E], value [E])``; called under the caller's no_grad."""
ValueFn = Callable[[Tensor], Tensor]
"""``value(obs [E, obs_dim]) -> value [E]``; called once per rollout for the bootstrap value."""


# --------------------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------------------


@dataclass
class RolloutStats:
    """What one ``collect`` call saw; the data itself is in ``collector.buffer``."""

    env_steps: int
    """``n_steps * num_envs`` env steps taken (NEXT_STEP reset steps included)."""
    episode_returns: list[float]
    """Undiscounted raw-reward returns of the episodes that ended during this rollout."""
    episode_lengths: list[int]
    """Their lengths in real transitions."""


def act_on_finite_rows(act: ActFn, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``act`` on an observation with non-finite entries: those rows are acted on as zeros (the
    sampler never sees NaN probabilities, the env never gets a NaN action) and their value is NaN,
    so the update that would learn from them is skipped. The buffer keeps the raw rows."""
    finite_rows = torch.isfinite(obs).all(dim=-1)
    actions, log_probs, values = act(torch.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0))
    return actions, log_probs, values.masked_fill(~finite_rows, math.nan)


class RolloutCollector:
    """Steps a NEXT_STEP vector env with a policy callable and fills a ``RolloutBuffer``.

    The first ``collect`` resets the envs with ``seed`` (sub-env ``e`` gets ``seed + e`` in
    ``SyncVectorEnv``); later calls continue the running episodes. If ``obs_normalizer`` is given,
    it is updated with every raw observation before that observation is normalised for the policy.
    """

    def __init__(
        self,
        envs: VectorEnv,
        n_steps: int,
        device: torch.device | str = "cpu",
        obs_normalizer: RunningMeanStd | None = None,
        seed: int | None = None,
        obs_clip: float = 10.0,
        reward_scaler: RewardScaler | None = None,
    ) -> None:
        validate_vector_env(envs)
        if n_steps < 1:
            raise ConfigError(f"rollout.n_steps must be >= 1, got {n_steps}")
        self.envs = envs
        self.n_steps = n_steps
        self.device = torch.device(device)
        self.obs_normalizer = obs_normalizer
        self.seed = seed
        self.obs_clip = obs_clip
        self.reward_scaler = reward_scaler
        self.num_envs: int = envs.num_envs
        self.obs_dim: int = int(envs.single_observation_space.shape[0])
        self.action_space: spaces.Discrete | spaces.Box = envs.single_action_space
        self.buffer = RolloutBuffer(n_steps, self.num_envs, self.obs_dim, self.action_space, self.device)
        self.total_env_steps = 0

        # Host-side state between steps and across collect() calls. The numpy arrays are written
        # in place (out=...) and shared with tensors via from_numpy, so the step loop allocates
        # nothing of its own.
        self._raw_obs = torch.zeros(self.num_envs, self.obs_dim, dtype=torch.float32)
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._episode_returns = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = True
        self.raw_obs_finite = True
        """Whether every entry of the current raw observation is finite."""
        # Per-rollout host staging of what the env returns, copied into ``buffer`` once per collect.
        steps_envs = (n_steps, self.num_envs)
        self._host = {
            "valid": np.zeros(steps_envs, dtype=bool),
            "rewards": np.zeros(steps_envs, dtype=np.float32),
            "terminated": np.zeros(steps_envs, dtype=bool),
            "truncated": np.zeros(steps_envs, dtype=bool),
        }
        self._host_tensors = {name: torch.from_numpy(array) for name, array in self._host.items()}
        if isinstance(self.action_space, spaces.Box):
            self._action_low = self.action_space.low
            self._action_high = self.action_space.high
            self._env_actions = np.empty((self.num_envs, *self.action_space.shape), dtype=self.action_space.dtype)

    def host_arrays(self) -> dict[str, Any]:
        """The host state the step loop writes in place: ``raw_obs`` (float32 tensor
        ``[E, obs_dim]``), ``prev_done`` / ``episode_returns`` / ``episode_lengths`` ``[E]`` and
        this rollout's staging ``valid`` / ``rewards`` / ``terminated`` / ``truncated`` ``[T, E]``."""
        return {"raw_obs": self._raw_obs, "prev_done": self._prev_done, "episode_returns": self._episode_returns,
                "episode_lengths": self._episode_lengths, **self._host}  # fmt: skip

    def bind_host_state(self, arrays: dict[str, Any]) -> None:
        """Keep the host state in ``arrays`` from now on (same names, shapes and dtypes as
        :meth:`host_arrays` -- e.g. seed ``k``'s rows of K seeds' stacked arrays); the current
        values are copied into them first."""
        current = self.host_arrays()
        for name, target in arrays.items():
            if tuple(target.shape) != tuple(current[name].shape) or target.dtype != current[name].dtype:
                raise ValueError(f"host array {name!r} is {tuple(target.shape)} {target.dtype}, "
                                 f"expected {tuple(current[name].shape)} {current[name].dtype}")  # fmt: skip
            target[...] = current[name]
        self._raw_obs = arrays.get("raw_obs", self._raw_obs)
        self._prev_done = arrays.get("prev_done", self._prev_done)
        self._episode_returns = arrays.get("episode_returns", self._episode_returns)
        self._episode_lengths = arrays.get("episode_lengths", self._episode_lengths)
        self._host = {name: arrays.get(name, array) for name, array in self._host.items()}
        self._host_tensors = {name: torch.from_numpy(array) for name, array in self._host.items()}

    def reset(self, seed: int | None = None) -> None:
        """Reset all envs (``reset(seed=seed)``) and drop partial episodes."""
        obs, _ = self.envs.reset(seed=seed)
        self.set_raw_obs(obs)
        self._prev_done[:] = False
        self._episode_returns[:] = 0.0
        self._episode_lengths[:] = 0
        self._needs_reset = False

    def set_raw_obs(self, obs: Any) -> None:
        """Keep the env's observation (float32) and whether every entry of it is finite."""
        array = np.asarray(obs)
        self.raw_obs_finite = bool(np.isfinite(array).all())
        self._raw_obs.copy_(torch.from_numpy(array))

    def write_policy_obs(self, out: Tensor, update_normalizer: bool) -> None:
        """Write the current observation, normalised if configured, into ``out``."""
        if self.obs_normalizer is None:
            out.copy_(self._raw_obs)
            return
        if update_normalizer:  # a non-finite observation must not poison the statistics
            finite_rows = torch.isfinite(self._raw_obs).all(dim=-1)
            self.obs_normalizer.update(self._raw_obs if bool(finite_rows.all()) else self._raw_obs[finite_rows])
        out.copy_(self.obs_normalizer.normalize(self._raw_obs, clip=self.obs_clip))

    def _to_env_actions(self, actions: Tensor) -> np.ndarray:
        """Numpy actions for ``envs.step``; Box actions are clipped to the bounds (buffer keeps raw)."""
        host_actions = actions.detach().cpu().numpy()
        if isinstance(self.action_space, spaces.Box):
            return np.clip(host_actions, self._action_low, self._action_high, out=self._env_actions)
        return host_actions

    def collect(self, act: ActFn, value: ValueFn) -> RolloutStats:
        """Run ``n_steps`` vector steps, fill ``buffer`` (incl. ``last_values``) and return stats.

        ``act`` is called once per step on the policy's view of the observation (float32
        ``[E, obs_dim]``) and returns ``(action [E] or [E, act_dim], log_prob [E], value [E])``;
        ``value`` is called once on ``buffer.last_obs``. Both should run without autograd.

        Per step, only the policy call and the env step touch torch; rewards, flags and the
        policy's outputs are kept on the host and written into ``buffer`` once per rollout
        (one copy or ``torch.stack`` per field), which is what makes small vector envs fast.
        A row with a non-finite observation (checked in numpy) is acted on as zeros and gets
        a NaN value, so the update that would learn from it is skipped (:func:`act_on_finite_rows`).

        The phases (``begin_rollout``, ``observe``, ``step``, ``end_rollout``, ``finish_rollout``)
        are public for ``rlopt.stacked.rollout.StackedCollector``, which drives K collectors with
        one policy call per step: it runs ``step``'s bookkeeping once on K collectors' host state
        (bound to rows of ``[K, ...]`` arrays by :meth:`bind_host_state`) and the other phases
        per seed where they are per seed.
        """
        self.begin_rollout()
        for t in range(self.n_steps):
            obs_t, finite = self.observe(t)
            self.step(t, *(act(obs_t) if finite else act_on_finite_rows(act, obs_t)))
        return self.finish_rollout(value(self.end_rollout()))

    def begin_rollout(self) -> None:
        """Phase 1: reset the envs on first use and start this rollout's records."""
        if self._needs_reset:
            self.reset(self.seed)
        self._finished_returns: list[float] = []
        self._finished_lengths: list[int] = []
        self._actions_t: list[Tensor] = []
        self._log_probs_t: list[Tensor] = []
        self._values_t: list[Tensor] = []

    def observe(self, t: int) -> tuple[Tensor, bool]:
        """Phase 2: write the policy's view of the current observation into ``buffer.obs[t]``
        (updating the normaliser first) and return that row and whether every entry is finite."""
        obs_t = self.buffer.obs[t]
        self.write_policy_obs(obs_t, update_normalizer=True)
        return obs_t, self.raw_obs_finite

    def step(self, t: int, actions: Tensor, log_probs: Tensor, values: Tensor) -> None:
        """Phase 3: record the policy's outputs for step ``t``, step the envs with ``actions`` and
        do the reward scaling and episode bookkeeping on the host."""
        self._actions_t.append(actions)
        self._log_probs_t.append(log_probs)
        self._values_t.append(values)
        host = self._host
        # Step t of env e is a real transition unless e finished at t-1 (NEXT_STEP reset step).
        valid = np.logical_not(self._prev_done, out=host["valid"][t])

        next_obs, rewards, terminated, truncated, _ = self.envs.step(self._to_env_actions(actions))
        rewards, terminated, truncated = np.asarray(rewards), np.asarray(terminated), np.asarray(truncated)
        host["rewards"][t] = rewards if self.reward_scaler is None else self.reward_scaler.scale(
            rewards, terminated | truncated
        )
        host["terminated"][t] = terminated
        host["truncated"][t] = truncated
        self.set_raw_obs(next_obs)

        # Episode bookkeeping on the host: reset steps add reward 0 and no length.
        self._episode_returns += rewards
        self._episode_lengths += valid
        self.close_episodes(np.logical_or(terminated, truncated, out=self._prev_done))

    def close_episodes(self, done: np.ndarray) -> None:
        """Move the episodes that ended at this step (``done [E]``) into this rollout's stats."""
        if done.any():
            self._finished_returns.extend(self._episode_returns[done].tolist())
            self._finished_lengths.extend(self._episode_lengths[done].tolist())
            self._episode_returns[done] = 0.0
            self._episode_lengths[done] = 0

    def end_rollout(self) -> Tensor:
        """Phase 4: write the step records into ``buffer`` and return ``buffer.last_obs`` (the
        policy's view of the observation after the last step) for the bootstrap value."""
        buffer = self.buffer
        torch.stack(self._actions_t, out=buffer.actions)
        torch.stack(self._log_probs_t, out=buffer.log_probs)
        torch.stack(self._values_t, out=buffer.values)
        del self._actions_t, self._log_probs_t, self._values_t
        for name in ("valid", "rewards", "terminated", "truncated"):
            getattr(buffer, name).copy_(self._host_tensors[name])
        # The normaliser sees this observation at the next collect's first step; don't count it twice.
        self.write_policy_obs(buffer.last_obs, update_normalizer=False)
        return buffer.last_obs

    def finish_rollout(self, last_values: Tensor) -> RolloutStats:
        """Phase 5: store the bootstrap ``last_values = value(last_obs)`` and count the steps."""
        self.buffer.last_values.copy_(last_values.reshape(self.num_envs))
        env_steps = self.n_steps * self.num_envs
        self.total_env_steps += env_steps
        stats = RolloutStats(env_steps, self._finished_returns, self._finished_lengths)
        del self._finished_returns, self._finished_lengths
        return stats

    def state_dict(self) -> dict[str, Any]:
        """The collector's own state (not the envs'): current raw obs, done flags, partial episodes,
        step count and the normaliser statistics if one is attached."""
        return {
            "raw_obs": self._raw_obs.clone(),
            "prev_done": torch.from_numpy(self._prev_done.copy()),
            "episode_returns": torch.from_numpy(self._episode_returns.copy()),
            "episode_lengths": torch.from_numpy(self._episode_lengths.copy()),
            "total_env_steps": self.total_env_steps,
            "needs_reset": self._needs_reset,
            "obs_normalizer": None if self.obs_normalizer is None else self.obs_normalizer.state_dict(),
            "reward_scaler": None if self.reward_scaler is None else self.reward_scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``. The envs' internal state is not restored: if the envs are
        fresh, call ``reset(seed)`` afterwards (this drops the restored partial episodes)."""
        saved_normalizer = state["obs_normalizer"]
        if (saved_normalizer is None) != (self.obs_normalizer is None):
            raise ValueError("collector state and this collector disagree on having an obs normaliser")
        self._raw_obs.copy_(state["raw_obs"])
        self.raw_obs_finite = bool(torch.isfinite(self._raw_obs).all())
        self._prev_done[:] = state["prev_done"].numpy()
        self._episode_returns[:] = state["episode_returns"].numpy()
        self._episode_lengths[:] = state["episode_lengths"].numpy()
        self.total_env_steps = int(state["total_env_steps"])
        self._needs_reset = bool(state["needs_reset"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(saved_normalizer)
        if self.reward_scaler is not None and state.get("reward_scaler") is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
