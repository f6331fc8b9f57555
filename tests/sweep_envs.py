"""Environments for the sweep tests, importable by the ``rlopt train`` subprocesses as
``tests.sweep_envs:<Env-v0>`` (the tests put the repository root on PYTHONPATH).

* ``ThreadProbe-v0``: CartPole that, at its first step, records the process's torch threads and
  ``OMP_NUM_THREADS`` into ``$RLOPT_SWEEP_PROBE_DIR/<pid>.json``.
* ``CrashAfter-v0``: CartPole whose step raises after ``CRASH_AFTER_STEPS`` steps (a run that fails).
* ``NanFromSeed-v0``: CartPole whose rewards are NaN when it was first reset with a seed of at least
  ``NAN_SEEDS_FROM`` (a run whose updates are all skipped; the smaller seeds learn normally).
* ``SlowCartPole-v0``: CartPole that sleeps ``STEP_SLEEP_SECONDS`` at each step, so a run lasts seconds of
  wall time whatever the machine's speed or load (a run a test must catch while it is going).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.registration import register, registry

PROBE_DIR_VARIABLE = "RLOPT_SWEEP_PROBE_DIR"
CRASH_AFTER_STEPS = 40
STEP_SLEEP_SECONDS = 0.002
"""Per env step of ``SlowCartPole-v0``: 2,048 steps of 8 envs take >= 4 s."""


class ThreadProbe(CartPoleEnv):
    """CartPole recording the threads its process trains with (once per process)."""

    recorded = False

    def step(self, action: Any) -> Any:
        if not ThreadProbe.recorded and os.environ.get(PROBE_DIR_VARIABLE):
            ThreadProbe.recorded = True
            record = {"torch_threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}
            (Path(os.environ[PROBE_DIR_VARIABLE]) / f"{os.getpid()}.json").write_text(json.dumps(record))
        return super().step(action)


class CrashAfter(CartPoleEnv):
    """CartPole that raises after a few steps."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps_taken = 0

    def step(self, action: Any) -> Any:
        self.steps_taken += 1
        if self.steps_taken > CRASH_AFTER_STEPS:
            raise RuntimeError("CrashAfter-v0: deliberate failure")
        return super().step(action)


NAN_SEEDS_FROM = 100


class NanFromSeed(CartPoleEnv):
    """CartPole with NaN rewards when first reset with a seed >= ``NAN_SEEDS_FROM``."""

    poisoned: bool | None = None

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        if self.poisoned is None and seed is not None:
            self.poisoned = seed >= NAN_SEEDS_FROM
        return super().reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float("nan") if self.poisoned else reward, terminated, truncated, info


class SlowCartPole(CartPoleEnv):
    """CartPole that sleeps at each step (wall time, not CPU)."""

    def step(self, action: Any) -> Any:
        time.sleep(STEP_SLEEP_SECONDS)
        return super().step(action)


for _name, _cls in (("ThreadProbe-v0", ThreadProbe), ("CrashAfter-v0", CrashAfter), ("NanFromSeed-v0", NanFromSeed),
                    ("SlowCartPole-v0", SlowCartPole)):
    if _name not in registry:
        register(id=_name, entry_point=_cls, max_episode_steps=500)
