"""K seeds' CartPole vector envs stepped as one numpy array (issue 17's env side).

gymnasium's ``CartPoleVectorEnv`` steps its N sub-envs with numpy on a ``[4, N]`` state, but a
call costs ≈ 40 µs whatever N (an action-space check, a dozen small array ops), so K seeds' envs
stepped one by one cost K of those per vector step. ``StackedCartPole`` steps the ``[4, K, N]``
state of K such envs in one go -- the same float64 arithmetic, elementwise, in the same order as
gymnasium's ``step`` -- and draws each seed's NEXT_STEP resets from that seed's own env generator
(``envs[k].np_random``), exactly the draws its lone env makes. Per seed, obs, rewards and flags
are bit-identical to stepping ``envs[k]`` itself (tests/test_stacked_rollout.py checks it step by
step). The envs stay the source of truth between rollouts: :meth:`begin` gathers their state,
:meth:`end` writes it back, so pickling, ``reset`` and lone use of each env work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import VectorEnv

# The constants gymnasium's CartPoleVectorEnv reads in step(); all K envs must agree on them.
_CONSTANTS = ("gravity", "masspole", "total_mass", "length", "polemass_length", "force_mag", "tau",
              "kinematics_integrator", "theta_threshold_radians", "x_threshold", "max_episode_steps",
              "_sutton_barto_reward")  # fmt: skip


def fits(envs: Sequence[VectorEnv]) -> bool:
    """Whether ``envs`` are plain ``CartPoleVectorEnv`` s (no wrapper, no subclass) of one size
    and one set of constants -- the only case :class:`StackedCartPole` reproduces."""
    if not envs or any(type(env) is not CartPoleVectorEnv for env in envs):
        return False
    first = envs[0]
    try:
        return all(
            env.num_envs == first.num_envs and all(getattr(env, name) == getattr(first, name) for name in _CONSTANTS)
            for env in envs
        )
    except AttributeError:  # another gymnasium's CartPoleVectorEnv: step seed by seed instead
        return False


class StackedCartPole:
    """Steps K ``CartPoleVectorEnv`` s (see :func:`fits`) as one: ``step(actions [K, N])`` returns
    ``obs [K, N, 4]`` float32, ``rewards [K, N]`` float32, ``terminated`` and ``truncated [K, N]``."""

    def __init__(self, envs: Sequence[CartPoleVectorEnv]) -> None:
        if not fits(envs):
            raise ValueError("StackedCartPole needs plain CartPoleVectorEnvs of one size and one set of constants")
        self.envs = list(envs)
        self.env = envs[0]  # the constants
        self.state = np.zeros((4, len(envs), envs[0].num_envs))
        self.steps = np.zeros((len(envs), envs[0].num_envs), dtype=np.int32)
        self.prev_done = np.zeros((len(envs), envs[0].num_envs), dtype=np.bool_)

    def begin(self) -> None:
        """Gather the envs' current state (call after any ``reset``, before the first ``step``)."""
        for k, env in enumerate(self.envs):
            if env.state is None:
                raise RuntimeError(f"seed {k}'s CartPole env has not been reset")
            self.state[:, k] = env.state
            self.steps[k] = env.steps
            self.prev_done[k] = env.prev_done

    def end(self) -> None:
        """Write the state back into the envs (as their own ``step`` would have left it)."""
        for k, env in enumerate(self.envs):
            env.state = self.state[:, k].copy()
            env.steps = self.steps[k].copy()
            env.prev_done = self.prev_done[k].copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One step of every seed's envs: gymnasium's ``CartPoleVectorEnv.step`` on ``[K, N]``."""
        if actions.dtype.kind not in "iu" or actions.min() < 0 or actions.max() > 1:
            raise ValueError(f"CartPole actions must be 0 or 1, got {np.unique(actions).tolist()}")
        env = self.env
        x, x_dot, theta, theta_dot = self.state
        # Gymnasium's cartpole.py, line for line (Florian 2007, "Correct equations for the
        # dynamics of the cart-pole system"); the same float64 operations in the same order.
        force = np.sign(actions - 0.5) * env.force_mag
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + env.polemass_length * np.square(theta_dot) * sintheta) / env.total_mass
        thetaacc = (env.gravity * sintheta - costheta * temp) / (
            env.length * (4.0 / 3.0 - env.masspole * np.square(costheta) / env.total_mass)
        )
        xacc = temp - env.polemass_length * thetaacc * costheta / env.total_mass
        if env.kinematics_integrator == "euler":
            x = x + env.tau * x_dot
            x_dot = x_dot + env.tau * xacc
            theta = theta + env.tau * theta_dot
            theta_dot = theta_dot + env.tau * thetaacc
        else:  # semi-implicit euler
            x_dot = x_dot + env.tau * xacc
            x = x + env.tau * x_dot
            theta_dot = theta_dot + env.tau * thetaacc
            theta = theta + env.tau * theta_dot
        self.state = state = np.stack((x, x_dot, theta, theta_dot))
        terminated = (
            (x < -env.x_threshold) | (x > env.x_threshold)
            | (theta < -env.theta_threshold_radians) | (theta > env.theta_threshold_radians)
        )  # fmt: skip
        self.steps += 1
        truncated = self.steps >= env.max_episode_steps
        if env._sutton_barto_reward:
            reward = -np.array(terminated, dtype=np.float32)
        else:
            reward = np.ones_like(terminated, dtype=np.float32)
        prev_done = self.prev_done
        if prev_done.any():  # NEXT_STEP resets, each from its own seed's generator
            for k in np.flatnonzero(prev_done.any(axis=1)):
                seed_env, rows = self.envs[k], prev_done[k]
                state[:, k, rows] = seed_env.np_random.uniform(low=seed_env.low, high=seed_env.high,
                                                               size=(4, int(rows.sum())))  # fmt: skip
            self.steps[prev_done] = 0
            reward[prev_done] = 0.0
            terminated[prev_done] = False
            truncated[prev_done] = False
        self.prev_done = np.logical_or(terminated, truncated)
        return state.transpose(1, 2, 0).astype(np.float32), reward, terminated, truncated
