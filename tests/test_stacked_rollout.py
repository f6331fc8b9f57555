"""Stacked rollouts (issue 17): K seeds' collectors driven by one policy call per step fill each
seed's buffer exactly as that seed's lone ``RolloutCollector.collect`` does with the same actions --
CartPole (vector entry point, Discrete) and Pendulum (SyncVectorEnv, Box), obs normalisation and
reward scaling on, several rollouts with episode ends; seeds are independent of their stack mates;
non-finite rows, state round trip, the builder against the trainer's, storage-backed buffers, host
state bound to stacked rows; the stacked CartPole against gymnasium's step for step."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from torch import Tensor

from agents import build_agent
from rlopt.config import load_config
from rlopt.envs import make_vec_env
from rlopt.rollout import ActFn, RolloutBuffer, RolloutCollector, RolloutStats
from rlopt.stacked.cartpole import StackedCartPole, fits
from rlopt.stacked.pendulum import StackedPendulum
from rlopt.stacked.rollout import StackedCollector, build_collector, build_collectors
from rlopt.trainer import Trainer

FIELDS = tuple(RolloutBuffer.layout(1, 1, 1, spaces.Discrete(2)))


def seed_act(seed: int, action_space: spaces.Space) -> ActFn:
    """A lone policy for one seed: random actions from the seed's own generator (Box actions
    ``3 * N(0, 1)``, often outside the bounds); log-prob and value are functions of the obs."""
    gen = torch.Generator().manual_seed(1000 + seed)

    def act(obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        num_envs = obs.shape[0]
        if isinstance(action_space, spaces.Discrete):
            actions = torch.randint(int(action_space.n), (num_envs,), generator=gen)
        else:
            actions = 3.0 * torch.randn(num_envs, *action_space.shape, generator=gen)
        return actions, obs[:, 0] - obs[:, -1], obs.sum(dim=1)

    act.generator = gen  # type: ignore[attr-defined]
    return act


def lone_value(obs: Tensor) -> Tensor:
    return obs.square().sum(dim=-1)


def stacked_act(lone_acts: Sequence[ActFn]) -> Any:
    """The stack of lone policies: seed k's slice goes through seed k's own act."""
    calls: list[int] = []

    def act(obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        assert obs.shape[0] == len(lone_acts) and obs.dim() == 3
        calls.append(1)
        outs = [lone(obs[k]) for k, lone in enumerate(lone_acts)]
        return tuple(torch.stack(parts) for parts in zip(*outs))  # type: ignore[return-value]

    act.calls = calls  # type: ignore[attr-defined]
    return act


def bits(tensor: Tensor) -> tuple[Any, ...]:
    """Exact identity, NaNs included."""
    return tensor.dtype, tuple(tensor.shape), tensor.contiguous().numpy().tobytes()


def assert_same_buffer(stacked: RolloutBuffer, lone: RolloutBuffer) -> None:
    for name in FIELDS:
        assert bits(getattr(stacked, name)) == bits(getattr(lone, name)), name


def assert_same_state(stacked: RolloutCollector, lone: RolloutCollector) -> None:
    stacked_state, lone_state = stacked.state_dict(), lone.state_dict()
    assert stacked_state.keys() == lone_state.keys()
    assert repr(stacked_state) == repr(lone_state)


def config(env_id: str, num_envs: int, n_steps: int) -> Any:
    return load_config("ppo_cartpole", [f"env.id={env_id}", f"env.num_envs={num_envs}", f"rollout.n_steps={n_steps}",
                                        "env.normalize_obs=true", "env.normalize_reward=true"])  # fmt: skip


def run_lone(cfg: Any, seed: int, rollouts: int) -> tuple[RolloutCollector, list[RolloutStats], list[dict]]:
    collector = build_collector(cfg, seed, None)
    space = collector.action_space
    act = seed_act(seed, space)
    stats, buffers = [], []
    for _ in range(rollouts):
        stats.append(collector.collect(act, lone_value))
        buffers.append({name: getattr(collector.buffer, name).clone() for name in FIELDS})
    return collector, stats, buffers


def run_stacked(
    cfg: Any, seeds: Sequence[int], rollouts: int
) -> tuple[StackedCollector, list[list[RolloutStats]], list[list[dict]]]:
    stack = build_collectors(cfg, seeds)
    act = stacked_act([seed_act(seed, stack.collectors[0].action_space) for seed in seeds])
    stats, buffers = [], []
    for _ in range(rollouts):
        stats.append(stack.collect(act, lone_value))
        buffers.append([{name: getattr(c.buffer, name).clone() for name in FIELDS} for c in stack.collectors])
    assert len(act.calls) == rollouts * cfg.rollout.n_steps  # one policy call per vector step
    return stack, stats, buffers


@pytest.mark.parametrize("env_id, num_envs, n_steps", [("CartPole-v1", 4, 40), ("Pendulum-v1", 3, 90)])
def test_stacked_collect_equals_lone_collects(env_id: str, num_envs: int, n_steps: int) -> None:
    cfg, seeds, rollouts = config(env_id, num_envs, n_steps), [0, 1, 2], 3
    stack, stacked_stats, stacked_buffers = run_stacked(cfg, seeds, rollouts)
    assert stack.buffer.obs.shape == (3, n_steps, num_envs, stack.collectors[0].obs_dim)
    # CartPole's and Pendulum's K vector envs step as one numpy array; the normalisers are updated
    # as [K, ...] statistics.
    assert type(stack.env_side()) is (StackedCartPole if env_id == "CartPole-v1" else StackedPendulum)
    assert all(stats is not None for stats in stack._stacked_statistics())
    ended = 0
    for k, seed in enumerate(seeds):
        lone, lone_stats, lone_buffers = run_lone(cfg, seed, rollouts)
        for r in range(rollouts):
            assert stacked_stats[r][k] == lone_stats[r], (seed, r)
            for name in FIELDS:
                assert bits(stacked_buffers[r][k][name]) == bits(lone_buffers[r][name]), (seed, r, name)
            ended += len(lone_stats[r].episode_returns)
        assert_same_state(stack.collectors[k], lone)
        assert stack.collectors[k].obs_normalizer is not None and stack.collectors[k].reward_scaler is not None
        lone.envs.close()
    assert ended >= 3  # episodes end inside the rollouts (CartPole terminates, Pendulum truncates at 200)
    # The seeds differ from each other; seed k's buffer is its slice of the stacked storage.
    assert not torch.equal(stack.buffer.obs[0], stack.buffer.obs[1])
    assert stack.collectors[1].buffer.obs.data_ptr() == stack.buffer.obs[1].data_ptr()
    stack.close()


def test_seed_is_independent_of_its_stack_mates() -> None:
    cfg = config("CartPole-v1", 4, 32)
    _, with_one, buffers_one = run_stacked(cfg, [0, 1], 3)
    _, with_five, buffers_five = run_stacked(cfg, [0, 5], 3)
    for r in range(3):
        assert with_one[r][0] == with_five[r][0]
        for name in FIELDS:
            assert bits(buffers_one[r][0][name]) == bits(buffers_five[r][0][name]), name
    assert not torch.equal(buffers_one[0][1]["obs"], buffers_five[0][1]["obs"])


class NanAfterEnv(gym.Env):
    """obs = [step, seed]; from step 3 on, the env reset with seed 10 observes NaN in its first
    entry (a broken simulator) and gets reward inf at step 4; the others stay finite. Episodes
    last 5 steps."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._seed, self._step = -1, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._seed = self._seed if seed is None else seed
        self._step = 0
        return np.array([0.0, self._seed], dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._step += 1
        broken = self._seed == 10 and self._step >= 3
        first = math.nan if broken else float(self._step + action)
        reward = math.inf if broken and self._step == 4 else 1.0
        return np.array([first, self._seed], dtype=np.float32), reward, self._step >= 5, False, {}


NAN_ID = "RloptTest/NanAfter-v0"
if NAN_ID not in gym.registry:
    gym.register(id=NAN_ID, entry_point=NanAfterEnv)


def test_non_finite_rows_get_the_lone_treatment_and_spare_other_seeds() -> None:
    cfg, seeds = config(NAN_ID, 2, 8), [4, 10]  # sub-env e is reset with seed + e
    _, stacked_stats, stacked_buffers = run_stacked(cfg, seeds, 2)
    for k, seed in enumerate(seeds):
        _, lone_stats, lone_buffers = run_lone(cfg, seed, 2)
        for r in range(2):
            assert stacked_stats[r][k] == lone_stats[r]
            for name in FIELDS:
                assert bits(stacked_buffers[r][k][name]) == bits(lone_buffers[r][name]), (seed, name)
    assert torch.isnan(stacked_buffers[0][1]["values"]).any()  # seed 10's env 0 went NaN
    assert torch.isfinite(stacked_buffers[0][0]["values"]).all()  # seed 4's envs never did
    assert math.inf in stacked_stats[0][1].episode_returns  # seed 10's inf reward went per seed


def test_state_round_trip_resumes_every_seed() -> None:
    cfg, seeds = config("CartPole-v1", 3, 25), [2, 9]
    reference = build_collectors(cfg, seeds)
    lone_acts = [seed_act(seed, reference.collectors[0].action_space) for seed in seeds]
    reference.collect(stacked_act(lone_acts), lone_value)
    states = reference.state_dict()
    envs = [copy.deepcopy(c.envs) for c in reference.collectors]  # what a checkpoint pickles per seed
    generator_states = [lone.generator.get_state() for lone in lone_acts]
    expected = reference.collect(stacked_act(lone_acts), lone_value)

    resumed = build_collectors(cfg, [100, 101])  # the seeds are unused: the states say "already reset"
    resumed.load_state_dict(states)
    for collector, env in zip(resumed.collectors, envs):
        collector.envs.close()
        collector.envs = env
    resumed_acts = [seed_act(seed, reference.collectors[0].action_space) for seed in seeds]
    for lone, state in zip(resumed_acts, generator_states):
        lone.generator.set_state(state)
    assert resumed.collect(stacked_act(resumed_acts), lone_value) == expected
    for mine, theirs in zip(resumed.collectors, reference.collectors):
        assert_same_buffer(mine.buffer, theirs.buffer)
    with pytest.raises(ValueError, match="3 collector states for 2 seeds"):
        resumed.load_state_dict(states + states[:1])


def test_build_collector_matches_the_trainers() -> None:
    cfg = load_config("a2c_pendulum", ["seed=4", "env.num_envs=2", "rollout.n_steps=30", "env.normalize_obs=true"])
    trainer = Trainer(build_agent(cfg), run_dir=None, progress=False)
    mine = build_collector(cfg, 4, None)
    theirs = trainer.collector
    assert type(mine.envs) is type(theirs.envs) and mine.seed == theirs.seed == 4
    assert (mine.obs_clip, mine.n_steps) == (theirs.obs_clip, theirs.n_steps)
    for _ in range(2):
        acts = [seed_act(4, mine.action_space), seed_act(4, mine.action_space)]
        assert mine.collect(acts[0], lone_value) == theirs.collect(acts[1], lone_value)
        assert_same_buffer(mine.buffer, theirs.buffer)
    assert_same_state(mine, theirs)


def test_mismatched_or_shared_collectors_are_refused() -> None:
    envs = make_vec_env("CartPole-v1", 2)
    with pytest.raises(ValueError, match="differs from collector 0 in n_steps"):
        StackedCollector([RolloutCollector(envs, 8), RolloutCollector(make_vec_env("CartPole-v1", 2), 9)])
    with pytest.raises(ValueError, match="shares its vector env"):
        StackedCollector([RolloutCollector(envs, 8), RolloutCollector(envs, 8)])
    with pytest.raises(ValueError, match="seeds must be distinct"):
        build_collectors(config("CartPole-v1", 2, 8), [3, 3])


def test_buffer_on_preallocated_storage_uses_it_and_checks_it() -> None:
    layout = RolloutBuffer.layout(5, 2, 3, spaces.Box(-1, 1, (2,)))
    storage = {name: torch.zeros((4, *shape), dtype=dtype) for name, (shape, dtype) in layout.items()}
    buffer = RolloutBuffer(5, 2, 3, spaces.Box(-1, 1, (2,)), storage={name: t[1] for name, t in storage.items()})
    buffer.actions[4, 1] = 7.0
    assert storage["actions"][1, 4, 1].tolist() == [7.0, 7.0] and storage["actions"][0].abs().sum() == 0
    wrong = {name: t[1] for name, t in storage.items()} | {"values": torch.zeros(5, 3)}
    with pytest.raises(ValueError, match=r"storage\['values'\] is \(5, 3\)"):
        RolloutBuffer(5, 2, 3, spaces.Box(-1, 1, (2,)), storage=wrong)


# ------------------------------------------------------------------------------------------------
# The stacked CartPole against gymnasium's CartPoleVectorEnv, step for step
# ------------------------------------------------------------------------------------------------


def test_stacked_cartpole_reproduces_gymnasium_step_for_step() -> None:
    seeds, num_envs = [3, 4, 11], 5
    lone = [CartPoleVectorEnv(num_envs, max_episode_steps=17) for _ in seeds]  # truncations too
    mine = [CartPoleVectorEnv(num_envs, max_episode_steps=17) for _ in seeds]
    for envs, seed in [*zip(lone, seeds), *zip(mine, seeds)]:
        envs.reset(seed=seed)
    stacked = StackedCartPole(mine)
    gen = np.random.default_rng(0)
    counts = np.zeros(2, dtype=int)
    for block in range(3):  # begin/end between blocks: the envs hold the state in between
        stacked.begin()
        for _ in range(40):
            actions = gen.integers(0, 2, size=(len(seeds), num_envs))
            got = stacked.step(actions)
            for k, envs in enumerate(lone):
                want = envs.step(actions[k])[:4]
                for part_got, part_want in zip(got, want):
                    assert bits(torch.from_numpy(np.ascontiguousarray(part_got[k]))) == bits(
                        torch.from_numpy(part_want)
                    )
            counts += [got[2].sum(), got[3].sum()]
        stacked.end()
        if block == 1:  # lone steps of the written-back envs continue exactly too
            for k, envs in enumerate(lone):
                a = gen.integers(0, 2, size=num_envs)
                assert np.array_equal(envs.step(a)[0], mine[k].step(a)[0])
    assert counts.min() > 5  # both terminations and truncations happened
    for theirs, ours in zip(lone, mine):
        assert np.array_equal(theirs.state, ours.state) and np.array_equal(theirs.steps, ours.steps)
        assert theirs.np_random.bit_generator.state == ours.np_random.bit_generator.state
    with pytest.raises(ValueError, match="must be 0 or 1"):
        stacked.step(np.full((len(seeds), num_envs), 2))
    assert not fits([*mine, CartPoleVectorEnv(num_envs + 1)])
    assert not fits([*mine, CartPoleVectorEnv(num_envs, max_episode_steps=500)])
    assert not fits([gym.wrappers.vector.RecordEpisodeStatistics(mine[0])])
    assert not fits([make_vec_env("Pendulum-v1", 2)])


def test_bind_host_state_copies_the_state_in_and_checks_the_arrays() -> None:
    collector = RolloutCollector(make_vec_env("CartPole-v1", 2), 4, seed=0)
    collector.reset(0)
    before = {name: (value.clone() if isinstance(value, Tensor) else value.copy())
              for name, value in collector.host_arrays().items()}  # fmt: skip
    rows = {
        name: torch.full((3, *v.shape), 9, dtype=v.dtype) if isinstance(v, Tensor)
        else np.full((3, *v.shape), 9, v.dtype)
        for name, v in before.items()
    }
    collector.bind_host_state({name: array[1] for name, array in rows.items()})
    assert torch.equal(rows["raw_obs"][1], before["raw_obs"]) and (rows["raw_obs"][0] == 9).all()
    collector.collect(seed_act(0, collector.action_space), lone_value)
    assert np.array_equal(rows["valid"][1], collector.buffer.valid.numpy())  # the loop wrote into the rows
    with pytest.raises(ValueError, match="host array 'prev_done' is \\(3,\\) bool"):
        collector.bind_host_state({"prev_done": np.zeros(3, dtype=bool)})
