"""Vector environments: the bottom layer, between gymnasium and the rollout collector.

In: an env id (``Env-v0`` or ``module:Env-v0``), a number of copies, a seed and env-constructor
keywords. Out: one gymnasium ``VectorEnv`` that autoresets ``NEXT_STEP``, observes a 1-D Box and
acts in a Discrete or 1-D Box space -- the layout ``rlopt.rollout.RolloutCollector`` stores (its
docstring explains the autoreset convention). Bad input raises ``ConfigError``. No torch here.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from gymnasium.envs.registration import VectorizeMode
from gymnasium.vector import AutoresetMode, VectorEnv

from rlopt.errors import ConfigError


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


resolve_spec = _resolve_spec
"""Public name of the spec lookup (the evaluation reads an env's own time limit from it)."""


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


def is_single_observation(obs: Any, expected: tuple[int, ...], env_id: str) -> bool:
    """Whether ``obs`` (an array) is one observation of shape ``expected`` rather than a batch
    ``(n, *expected)``; any other shape is a one-line ConfigError naming the shape the policy takes
    (``agent.predict(np.zeros(3))`` on CartPole)."""
    expected = tuple(expected)
    if tuple(obs.shape) == expected:
        return True
    if obs.ndim != len(expected) + 1 or tuple(obs.shape[1:]) != expected:
        raise ConfigError(f"predict: observations of shape {obs.shape}; the policy of {env_id} takes one observation "
                          f"of shape {expected} or a batch of shape (n, {', '.join(map(str, expected))})")  # fmt: skip
    return False


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


def probe_env(env_id: str, seed: int) -> None:
    """Reset and step one fresh instance of ``env_id`` and check the observations it returns
    against its observation space, before anything is written (a misbehaving env would otherwise
    fail at the first rollout and leave an unusable run directory behind; ``rlopt train`` calls it).
    Gymnasium's env-checker warnings are silenced: the ConfigError says what is wrong in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = make_vec_env(env_id, 1)
        try:
            expected = (1, *probe.single_observation_space.shape)
            for call in ("reset", "step"):
                try:
                    out = probe.reset(seed=seed) if call == "reset" else probe.step(probe.action_space.sample())
                    shape = getattr(out[0], "shape", None)
                except Exception as err:  # an env whose reset/step raises, or returns the wrong shape
                    raise ConfigError(f"env.id: {env_id!r} {call}() failed ({type(err).__name__}: "
                                      f"{' '.join(str(err).split())[:200]})") from None  # fmt: skip
                if shape != expected:
                    raise ConfigError(f"env.id: {env_id!r} {call}() returned observations of shape {shape}; "
                                      f"its observation space says {expected}")  # fmt: skip
        finally:
            probe.close()
