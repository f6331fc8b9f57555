"""rlopt.envs: building and validating NEXT_STEP vector envs (vector entry point, sync fallback,
module-prefixed ids, seeding, ConfigError on bad ids, counts, spaces and keywords)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from rlopt.envs import make_vec_env
from rlopt.errors import ConfigError


def test_make_vec_env_uses_vector_entry_point_for_cartpole() -> None:
    envs = make_vec_env("CartPole-v1", 3, seed=0)
    assert isinstance(envs, CartPoleVectorEnv)
    assert envs.num_envs == 3
    assert envs.single_action_space == spaces.Discrete(2)
    assert envs.single_observation_space.shape == (4,)
    envs.close()


def test_make_vec_env_falls_back_to_sync_and_forwards_kwargs() -> None:
    envs = make_vec_env("Pendulum-v1", 2, g=3.5)
    assert isinstance(envs, gym.vector.SyncVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert [env.unwrapped.g for env in envs.envs] == [3.5, 3.5]
    envs.close()


def test_make_vec_env_accepts_module_prefixed_id() -> None:
    envs = make_vec_env("gymnasium.envs.classic_control:CartPole-v1", 2)
    assert isinstance(envs, CartPoleVectorEnv)
    envs.close()


def test_make_vec_env_seeds_action_space() -> None:
    samples = [make_vec_env("Pendulum-v1", 2, seed=5).action_space.sample() for _ in range(2)]
    np.testing.assert_array_equal(samples[0], samples[1])


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "no_such_module_rlopt:CartPole-v1"])
def test_make_vec_env_rejects_unknown_id(env_id: str) -> None:
    with pytest.raises(ConfigError, match=f"^env.id: unknown environment '{env_id}' \\("):
        make_vec_env(env_id, 2)


def test_make_vec_env_rejects_zero_envs() -> None:
    with pytest.raises(ConfigError, match="^env.num_envs must be >= 1, got 0$"):
        make_vec_env("CartPole-v1", 0)


def test_make_vec_env_rejects_unsupported_spaces_and_kwargs() -> None:
    with pytest.raises(ConfigError, match="observation space must be a 1-D Box"):
        make_vec_env("FrozenLake-v1", 2)
    with pytest.raises(ConfigError, match="env.kwargs"):
        make_vec_env("Pendulum-v1", 2, no_such_kwarg=1)
