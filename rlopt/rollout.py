"""Vector environments, rollout storage, advantage / return estimators, observation normalisation.

Data flows one way::

    make_vec_env -> RolloutCollector.collect(act, value) -> RolloutBuffer
                 -> buffer.compute_gae(...) | buffer.compute_discounted_returns(...)
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

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.registration import VectorizeMode
from gymnasium.vector import AutoresetMode, VectorEnv
from torch import Tensor

from rlopt.errors import ConfigError

ActFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
"""``act(obs [E, obs_dim]) -> (action, log_prob [E], value [E])``; called under the caller's no_grad."""
ValueFn = Callable[[Tensor], Tensor]
"""``value(obs [E, obs_dim]) -> value [E]``; called once per rollout for the bootstrap value."""


# --------------------------------------------------------------------------------------------------
# Vector environments
# --------------------------------------------------------------------------------------------------


def _resolve_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """Look up ``env_id`` (``Env-v0`` or ``module:Env-v0``), importing ``module`` first if given."""
    module_name, _, env_name = env_id.rpartition(":")
    if module_name:
        try:
            importlib.import_module(module_name)
        except Exception as error:  # any import-time failure is a bad env.id for the user
            raise ConfigError(
                f"env.id: unknown environment {env_id!r} (importing module {module_name!r} failed: {error})"
            ) from error
    try:
        return gym.spec(env_name)
    except gym.error.Error as error:
        raise ConfigError(f"env.id: unknown environment {env_id!r} ({error})") from error


def validate_vector_env(envs: VectorEnv) -> None:
    """Raise ConfigError unless ``envs`` autoresets NEXT_STEP, observes a 1-D Box and acts in a
    Discrete or 1-D Box space -- the layout RolloutCollector stores."""
    autoreset_mode = envs.metadata.get("autoreset_mode")
    if autoreset_mode != AutoresetMode.NEXT_STEP:
        raise ConfigError(f"env: autoreset mode must be NEXT_STEP, got {autoreset_mode!r}")
    obs_space = envs.single_observation_space
    if not (isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1):
        raise ConfigError(f"env.id: observation space must be a 1-D Box, got {obs_space}")
    action_space = envs.single_action_space
    if not (
        isinstance(action_space, spaces.Discrete)
        or (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1)
    ):
        raise ConfigError(f"env.id: action space must be Discrete or a 1-D Box, got {action_space}")


def make_vec_env(env_id: str, num_envs: int, seed: int | None = None, **make_kwargs: Any) -> VectorEnv:
    """Build ``num_envs`` copies of ``env_id`` as one NEXT_STEP-autoresetting vector env.

    Uses the env's own vectorised implementation when its spec has a ``vector_entry_point``
    (e.g. ``CartPoleVectorEnv``), otherwise ``SyncVectorEnv``. ``make_kwargs`` go to the env
    constructor. ``seed`` seeds the action spaces; the env itself is seeded by the collector's
    first ``reset(seed=seed)`` (sub-env ``e`` gets ``seed + e``).
    """
    if num_envs < 1:
        raise ConfigError(f"env.num_envs must be >= 1, got {num_envs}")
    spec = _resolve_spec(env_id)
    if spec.vector_entry_point is not None:
        mode, vector_kwargs = VectorizeMode.VECTOR_ENTRY_POINT, {}
    else:
        mode, vector_kwargs = VectorizeMode.SYNC, {"autoreset_mode": AutoresetMode.NEXT_STEP}
    try:
        envs = gym.make_vec(
            spec.id, num_envs=num_envs, vectorization_mode=mode, vector_kwargs=vector_kwargs, **make_kwargs
        )
    except TypeError as error:  # the env constructor rejected a keyword
        raise ConfigError(f"env.kwargs: {env_id!r} rejected {sorted(make_kwargs)} ({error})") from error
    try:
        validate_vector_env(envs)
    except ConfigError:
        envs.close()
        raise
    if seed is not None:
        envs.action_space.seed(seed)
        envs.single_action_space.seed(seed)
    return envs


# --------------------------------------------------------------------------------------------------
# Advantage and return estimators (pure functions)
# --------------------------------------------------------------------------------------------------


def _check_time_major(rewards: Tensor, last: Tensor, last_name: str, **others: Tensor) -> None:
    """Shape guard: every ``[T, E]`` input matches ``rewards``, ``last`` is ``[E]``."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [T, E], got shape {tuple(rewards.shape)}")
    for name, tensor in others.items():
        if tensor.shape != rewards.shape:
            raise ValueError(f"{name} must match rewards {tuple(rewards.shape)}, got {tuple(tensor.shape)}")
    if last.shape != rewards.shape[1:]:
        raise ValueError(f"{last_name} must be [E] = {tuple(rewards.shape[1:])}, got {tuple(last.shape)}")


def next_values_from(values: Tensor, last_values: Tensor) -> Tensor:
    """``V_{t+1}`` for every row: ``values`` shifted up by one step with ``last_values`` appended.

    Under NEXT_STEP autoreset, after a done at ``t`` the row ``t+1`` holds ``V(s_final)``.
    """
    return torch.cat((values[1:], last_values.unsqueeze(0)), dim=0)


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    last_values: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) with NEXT_STEP layout.

    Inputs ``[T, E]`` (``terminated``/``truncated`` bool or 0/1 floats), ``last_values`` ``[E]`` =
    V(observation after the last step). With ``V_{t+1} = next_values_from(values, last_values)[t]``
    and ``done_t = terminated_t or truncated_t``::

        delta_t = r_t + gamma * (1 - terminated_t) * V_{t+1} - V_t
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},      A_T = 0
        returns = A + V

    A truncated step keeps its bootstrap ``gamma * V(s_final)`` in ``delta_t`` but, like a
    terminated one, does not chain into the next episode. Rows of reset steps are meaningless and
    are masked out by the buffer. Returns ``(advantages, returns)`` in ``rewards.dtype``.
    """
    _check_time_major(rewards, last_values, "last_values", values=values, terminated=terminated, truncated=truncated)
    dtype = rewards.dtype
    terminated, truncated = terminated.bool(), truncated.bool()
    not_terminated = (~terminated).to(dtype)
    not_done = (~(terminated | truncated)).to(dtype)
    deltas = rewards + gamma * not_terminated * next_values_from(values, last_values) - values
    decays = (gamma * gae_lambda) * not_done
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(last_values, dtype=dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + decays[t] * running
        advantages[t] = running
    return advantages, advantages + values


def discounted_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    next_values: Tensor,
    gamma: float,
) -> Tensor:
    """Monte-Carlo returns of the episode tails inside the window, bootstrapped where they are cut.

    ``next_values`` ``[T, E]`` holds ``V_{t+1}`` (build it with ``next_values_from``). With
    ``done_t = terminated_t or truncated_t`` and the window-end value ``G_T := next_values[T-1]``::

        G_t = r_t + gamma * ((1 - done_t) * G_{t+1} + truncated_t * V_{t+1})

    so an episode tail that terminates sums rewards only, one cut by a time limit adds
    ``gamma^k * V(s_final)``, and one cut by the end of the window adds ``gamma^k * V(s_T)``.
    With ``next_values = 0`` this is the plain Monte-Carlo return (REINFORCE, Williams 1992).
    """
    _check_time_major(
        rewards, next_values[-1], "next_values[-1]", terminated=terminated, truncated=truncated, next_values=next_values
    )
    dtype = rewards.dtype
    terminated, truncated = terminated.bool(), truncated.bool()
    not_done = (~(terminated | truncated)).to(dtype)
    time_limit_bootstrap = truncated.to(dtype) * next_values
    returns = torch.empty_like(rewards)
    running = next_values[-1].to(dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * (not_done[t] * running + time_limit_bootstrap[t])
        returns[t] = running
    return returns


# --------------------------------------------------------------------------------------------------
# Observation normalisation
# --------------------------------------------------------------------------------------------------


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
        """Merge a batch ``x`` of shape ``[..., *shape]`` (all leading dims are samples)."""
        batch = x.detach().to(device=self.mean.device, dtype=torch.float64).reshape(-1, *self.mean.shape)
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
        """Update the running return with this step's rewards and return the scaled rewards."""
        self.discounted_return = self.discounted_return * self.gamma + rewards
        self.return_stats.update(torch.from_numpy(self.discounted_return))
        self.discounted_return[done] = 0.0
        std = float((self.return_stats.var + self.return_stats.std_epsilon).sqrt())
        return np.clip(rewards / std, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"discounted_return": torch.from_numpy(self.discounted_return.copy()),
                "return_stats": self.return_stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discounted_return[:] = state["discounted_return"].numpy()
        self.return_stats.load_state_dict(state["return_stats"])


# --------------------------------------------------------------------------------------------------
# Rollout storage
# --------------------------------------------------------------------------------------------------


@dataclass
class RolloutBatch:
    """Flat samples ``[N, ...]`` for an update; row order is time-major (step, then env)."""

    obs: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]


class RolloutBuffer:
    """Preallocated ``[n_steps, num_envs, ...]`` storage for one rollout on ``device``.

    ``obs`` holds what the policy saw (normalised if a normaliser is used); ``actions`` the
    unclipped samples; ``valid`` is False on NEXT_STEP reset steps. ``last_obs`` / ``last_values``
    are the observation after the final step and its value (the GAE bootstrap).
    """

    def __init__(
        self,
        n_steps: int,
        num_envs: int,
        obs_dim: int,
        action_space: spaces.Discrete | spaces.Box,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.n_steps, self.num_envs, self.device = n_steps, num_envs, torch.device(device)
        steps_envs = (n_steps, num_envs)
        if isinstance(action_space, spaces.Discrete):
            action_shape, action_dtype = (), torch.int64
        else:
            action_shape, action_dtype = tuple(action_space.shape), dtype

        def alloc(shape: tuple[int, ...], tensor_dtype: torch.dtype) -> Tensor:
            return torch.zeros(shape, dtype=tensor_dtype, device=self.device)

        self.obs = alloc((*steps_envs, obs_dim), dtype)
        self.actions = alloc((*steps_envs, *action_shape), action_dtype)
        self.log_probs = alloc(steps_envs, dtype)
        self.values = alloc(steps_envs, dtype)
        self.rewards = alloc(steps_envs, dtype)
        self.terminated = alloc(steps_envs, torch.bool)
        self.truncated = alloc(steps_envs, torch.bool)
        self.valid = alloc(steps_envs, torch.bool)
        self.advantages = alloc(steps_envs, dtype)
        self.returns = alloc(steps_envs, dtype)
        self.last_obs = alloc((num_envs, obs_dim), dtype)
        self.last_values = alloc((num_envs,), dtype)

    def compute_gae(self, gamma: float, gae_lambda: float) -> None:
        """Fill ``advantages`` and ``returns`` with GAE(gamma, lambda) (see ``compute_gae``)."""
        advantages, returns = compute_gae(
            self.rewards, self.values, self.terminated, self.truncated, self.last_values, gamma, gae_lambda
        )
        self.advantages.copy_(advantages)
        self.returns.copy_(returns)

    def compute_discounted_returns(self, gamma: float, bootstrap: bool = True) -> None:
        """Fill ``returns`` with discounted Monte-Carlo returns and ``advantages = returns - values``.

        ``bootstrap=True`` adds ``gamma^k V`` where a tail is cut by a time limit or the window end;
        ``bootstrap=False`` gives plain Monte-Carlo returns (see ``discounted_returns``).
        """
        next_values = next_values_from(self.values, self.last_values)
        if not bootstrap:
            next_values = torch.zeros_like(next_values)
        returns = discounted_returns(self.rewards, self.terminated, self.truncated, next_values, gamma)
        self.returns.copy_(returns)
        torch.sub(self.returns, self.values, out=self.advantages)

    def flatten(self, valid_only: bool = True) -> RolloutBatch:
        """Flat ``[N, ...]`` view of the rollout; ``valid_only`` drops NEXT_STEP reset steps (a copy)."""
        num_rows = self.n_steps * self.num_envs
        mask = self.valid.reshape(num_rows) if valid_only else None

        def flat(tensor: Tensor) -> Tensor:
            rows = tensor.reshape(num_rows, *tensor.shape[2:])
            return rows if mask is None else rows[mask]

        return RolloutBatch(
            obs=flat(self.obs),
            actions=flat(self.actions),
            log_probs=flat(self.log_probs),
            values=flat(self.values),
            advantages=flat(self.advantages),
            returns=flat(self.returns),
        )


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
        self._valid = np.ones(self.num_envs, dtype=bool)
        self._valid_tensor = torch.from_numpy(self._valid)
        self._episode_returns = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = True
        if isinstance(self.action_space, spaces.Box):
            self._action_low = self.action_space.low
            self._action_high = self.action_space.high
            self._env_actions = np.empty((self.num_envs, *self.action_space.shape), dtype=self.action_space.dtype)

    def reset(self, seed: int | None = None) -> None:
        """Reset all envs (``reset(seed=seed)``) and drop partial episodes."""
        obs, _ = self.envs.reset(seed=seed)
        self._raw_obs.copy_(torch.from_numpy(np.asarray(obs)))
        self._prev_done[:] = False
        self._episode_returns[:] = 0.0
        self._episode_lengths[:] = 0
        self._needs_reset = False

    def _write_policy_obs(self, out: Tensor, update_normalizer: bool) -> None:
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

        ``act`` is called once per step on ``buffer.obs[t]`` (float32 ``[E, obs_dim]``) and returns
        ``(action [E] or [E, act_dim], log_prob [E], value [E])``; ``value`` is called once on
        ``buffer.last_obs``. Both should run under the caller's ``torch.no_grad()``.
        """
        if self._needs_reset:
            self.reset(self.seed)
        buffer, num_envs = self.buffer, self.num_envs
        finished_returns: list[float] = []
        finished_lengths: list[int] = []
        for t in range(self.n_steps):
            obs_t = buffer.obs[t]
            self._write_policy_obs(obs_t, update_normalizer=True)
            actions, log_probs, values = act(obs_t)
            buffer.actions[t].copy_(actions.reshape(buffer.actions.shape[1:]))
            buffer.log_probs[t].copy_(log_probs.reshape(num_envs))
            buffer.values[t].copy_(values.reshape(num_envs))
            # Step t of env e is a real transition unless e finished at t-1 (NEXT_STEP reset step).
            np.logical_not(self._prev_done, out=self._valid)
            buffer.valid[t].copy_(self._valid_tensor)

            next_obs, rewards, terminated, truncated, _ = self.envs.step(self._to_env_actions(actions))
            rewards, terminated, truncated = np.asarray(rewards), np.asarray(terminated), np.asarray(truncated)
            learning_rewards = rewards if self.reward_scaler is None else self.reward_scaler.scale(
                rewards, terminated | truncated
            )
            buffer.rewards[t].copy_(torch.from_numpy(learning_rewards))
            buffer.terminated[t].copy_(torch.from_numpy(terminated))
            buffer.truncated[t].copy_(torch.from_numpy(truncated))
            self._raw_obs.copy_(torch.from_numpy(np.asarray(next_obs)))

            # Episode bookkeeping on the host (rewards are numpy already): reset steps add
            # reward 0 and no length.
            self._episode_returns += rewards
            self._episode_lengths += self._valid
            done = np.logical_or(terminated, truncated, out=self._prev_done)
            if done.any():
                finished_returns.extend(self._episode_returns[done].tolist())
                finished_lengths.extend(self._episode_lengths[done].tolist())
                self._episode_returns[done] = 0.0
                self._episode_lengths[done] = 0

        # The normaliser sees this observation at the next collect's first step; don't count it twice.
        self._write_policy_obs(buffer.last_obs, update_normalizer=False)
        buffer.last_values.copy_(value(buffer.last_obs).reshape(num_envs))
        env_steps = self.n_steps * num_envs
        self.total_env_steps += env_steps
        return RolloutStats(env_steps=env_steps, episode_returns=finished_returns, episode_lengths=finished_lengths)

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
        self._prev_done[:] = state["prev_done"].numpy()
        self._episode_returns[:] = state["episode_returns"].numpy()
        self._episode_lengths[:] = state["episode_lengths"].numpy()
        self.total_env_steps = int(state["total_env_steps"])
        self._needs_reset = bool(state["needs_reset"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(saved_normalizer)
        if self.reward_scaler is not None and state.get("reward_scaler") is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
