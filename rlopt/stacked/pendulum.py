"""K seeds' Pendulum vector envs stepped as one numpy array (issue 17's env side).

Pendulum-v1 has no vector entry point: ``make_vec_env`` builds a ``SyncVectorEnv`` (autoreset
NEXT_STEP) of ``gym.make("Pendulum-v1")`` sub-envs -- ``TimeLimit(OrderEnforcing(
PassiveEnvChecker(PendulumEnv)))`` -- which steps each sub-env through three wrappers in Python
(≈ 20 µs a sub-env step). ``StackedPendulum`` steps the ``[K, N]`` sub-envs of K such envs as one
numpy computation: gymnasium's ``PendulumEnv.step`` (envs/classic_control/pendulum.py) with the
same float operations in the same order and the same dtypes, the ``TimeLimit`` truncation
(wrappers/common.py) and ``SyncVectorEnv.step``'s NEXT_STEP autoreset (vector/sync_vector_env.py:
a sub-env done at the previous step is reset -- drawing from its own ``np_random`` as
``PendulumEnv.reset`` does -- with reward 0 and both flags False). Per seed, obs, rewards and flags
are bit-identical to ``envs[k].step`` (tests/test_stacked_pendulum.py). Two scalar operations are
kept scalar-exact: numpy's scalar ``x ** 2`` is libm ``pow`` (not ``x * x``): ``np.float_power``
for float64, and the float32 torque's ``u ** 2`` (``powf``, which no numpy array loop reproduces)
element by element. The envs stay the source of truth between rollouts: :meth:`begin` gathers
their state, :meth:`end` writes it back (the sub-envs' state, ``last_u``, elapsed steps and the
vector env's autoreset flags and step buffers), so pickling, ``reset`` and lone use are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import repeat

import numpy as np
from gymnasium.envs.classic_control import pendulum as gym_pendulum
from gymnasium.envs.classic_control.pendulum import PendulumEnv, angle_normalize
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

_CONSTANTS = ("g", "m", "l", "dt", "max_speed", "max_torque", "render_mode")
"""The PendulumEnv attributes its ``step`` reads; they must be gymnasium's defaults."""
_METHODS = frozenset({"step", "reset", "_get_obs"})


@functools.cache
def _defaults() -> tuple[object, ...]:
    """A fresh ``PendulumEnv()``'s constants (value and type)."""
    env = PendulumEnv()
    return tuple((type(getattr(env, name)), getattr(env, name)) for name in _CONSTANTS)


def _chain(sub_env: object) -> tuple[TimeLimit, PassiveEnvChecker, PendulumEnv] | None:
    """``(TimeLimit, PassiveEnvChecker, PendulumEnv)`` of ``gym.make("Pendulum-v1")``'s exact
    wrapper stack with default constants, else ``None``."""
    order = getattr(sub_env, "env", None)
    checker = getattr(order, "env", None)
    env = getattr(checker, "env", None)
    if (type(sub_env), type(order), type(checker), type(env)) != (TimeLimit, OrderEnforcing, PassiveEnvChecker,
                                                                   PendulumEnv):  # fmt: skip
        return None
    if any(_METHODS & vars(layer).keys() for layer in (sub_env, order, checker, env)):  # patched instance
        return None
    constants = tuple((type(getattr(env, name)), getattr(env, name)) for name in _CONSTANTS)
    return (sub_env, checker, env) if constants == _defaults() else None  # type: ignore[return-value]


def fits(envs: Sequence[VectorEnv]) -> bool:
    """Whether ``envs`` are plain NEXT_STEP ``SyncVectorEnv`` s of one size over unmodified
    ``gym.make("Pendulum-v1")`` sub-envs (one time limit) -- the only case :class:`StackedPendulum`
    reproduces -- and this numpy's array operations reproduce its scalar ones."""
    if not envs or any(type(env) is not SyncVectorEnv for env in envs):
        return False
    limits = set()
    for env in envs:
        if env.autoreset_mode != AutoresetMode.NEXT_STEP or env.num_envs != envs[0].num_envs:
            return False
        for sub_env in env.envs:
            chain = _chain(sub_env)
            if chain is None:
                return False
            limits.add(chain[0]._max_episode_steps)
    return len(limits) == 1 and _kernel_matches_gymnasium()


def _dynamics(state: np.ndarray, actions: np.ndarray, env: PendulumEnv) -> tuple[np.ndarray, ...]:
    """``PendulumEnv.step`` on arrays: ``state [2, ...]`` float64 and ``actions [..., 1]`` ->
    (new state, reward, clipped torque ``u``), each element as the scalar code computes it."""
    th, thdot = state
    g, m, l, dt = env.g, env.m, env.l, env.dt
    u = np.clip(actions, -env.max_torque, env.max_torque)[..., 0]
    u_squared = np.fromiter(map(pow, u.flat, repeat(2)), dtype=u.dtype, count=u.size).reshape(u.shape)
    costs = np.float_power(angle_normalize(th), 2) + 0.1 * np.float_power(thdot, 2) + 0.001 * u_squared
    newthdot = thdot + (3 * g / (2 * l) * np.sin(th) + 3.0 / (m * l**2) * u) * dt
    newthdot = np.clip(newthdot, -env.max_speed, env.max_speed)
    newth = th + newthdot * dt
    return np.stack((newth, newthdot)), -costs, u


def _observe(state: np.ndarray) -> np.ndarray:
    """``PendulumEnv._get_obs`` on ``state [2, ...]``: ``[..., 3]`` float32."""
    th, thdot = state
    return np.stack((np.cos(th), np.sin(th), thdot), axis=-1).astype(np.float32)


def _scalar_ops_reproduced(values: np.ndarray) -> bool:
    """Whether numpy's array sin, cos, ``angle_normalize``, ``float_power(·, 2)`` and clip give
    what its scalar ones give on ``values`` (float64), bit for bit."""
    ops = (np.sin, np.cos, angle_normalize, lambda x: x**2, lambda x: np.clip(x, -8, 8))
    arrays = (np.sin, np.cos, angle_normalize, lambda x: np.float_power(x, 2), lambda x: np.clip(x, -8, 8))
    return all(
        array_op(values).tobytes() == np.array([scalar_op(v) for v in values]).tobytes()
        for scalar_op, array_op in zip(ops, arrays)
    )


@functools.cache
def _kernel_matches_gymnasium(probes: int = 2048) -> bool:
    """Whether this numpy's array operations reproduce its scalar ones (see
    :func:`_scalar_ops_reproduced`; a SIMD loop may round otherwise) and :func:`_dynamics` /
    :func:`_observe` gymnasium's ``PendulumEnv.step`` bit for bit (once per process, ≈ 50 ms)."""
    gen = np.random.default_rng(0)
    if not _scalar_ops_reproduced(np.concatenate((gen.uniform(-60, 60, probes), gen.uniform(-9, 9, probes)))):
        return False
    steps = probes // 16
    state = np.stack((gen.uniform(-60, 60, steps), gen.uniform(-9, 9, steps)))
    actions = gen.uniform(-3, 3, (steps, 1)).astype(np.float32)
    env = PendulumEnv()
    new_state, rewards, _ = _dynamics(state, actions, env)
    obs = _observe(new_state)
    for i in range(steps):
        env.state = state[:, i].copy()
        want_obs, want_reward, *_ = env.step(actions[i])
        if not (np.array_equal(env.state, new_state[:, i]) and want_obs.tobytes() == obs[i].tobytes()
                and np.float64(want_reward).tobytes() == rewards[i].tobytes()):  # fmt: skip
            return False
    return True


class StackedPendulum:
    """Steps K Pendulum ``SyncVectorEnv`` s (see :func:`fits`) as one: ``step(actions [K, N, 1])``
    returns ``obs [K, N, 3]`` float32, ``rewards [K, N]`` float64, ``terminated`` and
    ``truncated [K, N]`` -- what each seed's ``envs.step`` returns, stacked."""

    def __init__(self, envs: Sequence[SyncVectorEnv]) -> None:
        if not fits(envs):
            raise ValueError("StackedPendulum needs plain Pendulum SyncVectorEnvs of one size (see fits)")
        self.envs = list(envs)
        self.chains = [[_chain(sub_env) for sub_env in env.envs] for env in envs]
        shape = (len(envs), envs[0].num_envs)
        self.env = self.chains[0][0][2]  # the constants
        self.max_episode_steps = self.chains[0][0][0]._max_episode_steps
        self.state = np.zeros((2, *shape))
        self.steps = np.zeros(shape, dtype=np.int64)
        self.autoreset = np.zeros(shape, dtype=np.bool_)
        self.settled = False
        self._last: tuple[np.ndarray, ...] | None = None  # the last step's (u, reset, obs, rewards, flags)

    def begin(self) -> None:
        """Gather the envs' current state (call after any ``reset``, before the first ``step``).
        Until every sub-env's ``PassiveEnvChecker`` has seen its first two steps (it keeps the
        data of the first) -- or for a state that is not gymnasium's float64 pair -- each seed's
        envs step themselves (``settled`` is False)."""
        settled = True
        for k, (env, chains) in enumerate(zip(self.envs, self.chains)):
            for n, (limit, checker, pendulum) in enumerate(chains):
                state = getattr(pendulum, "state", None)
                if state is None or limit._elapsed_steps is None:
                    raise RuntimeError(f"seed {k}'s Pendulum env {n} has not been reset")
                plain = isinstance(state, np.ndarray) and state.dtype == np.float64 and state.shape == (2,)
                checked = checker.checked_reset and checker.checked_step and checker.checked_data_reuse
                settled = settled and plain and checked and limit.env._has_reset
                if settled:
                    self.state[:, k, n] = state
                    self.steps[k, n] = limit._elapsed_steps
            self.autoreset[k] = env._autoreset_envs
        self.settled = settled
        self._last = None

    def end(self) -> None:
        """Write the state back into the envs, as their own ``step`` would have left it (nothing
        while not ``settled``: the envs stepped themselves)."""
        if not self.settled:
            return
        last = self._last
        for k, (env, chains) in enumerate(zip(self.envs, self.chains)):
            for n, (limit, _, pendulum) in enumerate(chains):
                pendulum.state = self.state[:, k, n].copy()
                limit._elapsed_steps = int(self.steps[k, n])
            env._autoreset_envs = self.autoreset[k].copy()
        if last is None:  # no stacked step since begin(): the envs' step buffers are theirs
            return
        u, reset, obs, rewards, terminated, truncated = last
        for k, (env, chains) in enumerate(zip(self.envs, self.chains)):
            for n, (_, _, pendulum) in enumerate(chains):
                pendulum.last_u = None if reset[k, n] else u[k, n]
                env._env_obs[n] = obs[k, n].copy()
            np.copyto(env._observations, obs[k])
            np.copyto(env._rewards, rewards[k])
            np.copyto(env._terminations, terminated[k])
            np.copyto(env._truncations, truncated[k])
        self._last = None

    def _step_each(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every seed's ``envs.step`` itself (the envs' first steps), then gather again."""
        self.end()
        results = [env.step(seed_actions)[:4] for env, seed_actions in zip(self.envs, actions)]
        self.begin()
        obs, rewards, terminated, truncated = (np.stack(parts) for parts in zip(*results))
        return obs, rewards, terminated, truncated

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One step of every seed's envs: ``SyncVectorEnv.step`` (NEXT_STEP) over gymnasium's
        ``TimeLimit(PendulumEnv).step`` on ``[K, N]``."""
        if actions.shape != (*self.steps.shape, 1):
            raise ValueError(f"Pendulum actions must have shape {(*self.steps.shape, 1)}, got {actions.shape}")
        if not self.settled:
            return self._step_each(actions)
        state, rewards, u = _dynamics(self.state, actions, self.env)
        self.steps += 1
        terminated = np.zeros(self.steps.shape, dtype=np.bool_)
        truncated = self.steps >= self.max_episode_steps
        reset = self.autoreset
        if reset.any():  # NEXT_STEP resets: PendulumEnv.reset with default options, own generator
            high = np.array([gym_pendulum.DEFAULT_X, gym_pendulum.DEFAULT_Y])
            for k, n in zip(*np.nonzero(reset)):
                state[:, k, n] = self.chains[k][n][2].np_random.uniform(low=-high, high=high)
            self.steps[reset] = 0
            rewards[reset] = 0.0
            truncated[reset] = False
        self.state = state
        obs = _observe(state)
        self.autoreset = terminated | truncated
        self._last = (u, reset, obs, rewards, terminated, truncated)  # end() writes them into the envs
        return obs.copy(), rewards.copy(), terminated.copy(), truncated.copy()
