"""The stacked Pendulum (issue 17's env side): K seeds' Pendulum ``SyncVectorEnv`` s stepped as one
numpy array reproduce each seed's own ``envs.step`` bit for bit -- obs, rewards, flags, the
TimeLimit truncations and NEXT_STEP resets -- and leave the envs (their pickles, resets and lone
steps) exactly as stepping them alone would; ``fits`` takes only unmodified Pendulum vector envs;
a stacked PPO Pendulum rollout through it is the lone runs' rollouts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from rlopt.checkpoint import pickle_envs
from rlopt.envs import make_vec_env
from rlopt.stacked import pendulum
from rlopt.stacked.pendulum import StackedPendulum, fits
from rlopt.stacked.rollout import SeedEnvs
from tests.test_stacked_equivalence import _first_update

SEEDS, NUM_ENVS = (3, 4, 11), 4


def _envs(seeds=SEEDS, num_envs: int = NUM_ENVS, **kwargs) -> list[SyncVectorEnv]:
    """Each seed's vector env as the collector builds and resets it; the observation spaces'
    generators (entropy-seeded by gymnasium, never drawn from) seeded so that pickles compare."""
    envs = [make_vec_env("Pendulum-v1", num_envs, seed=seed, **kwargs) for seed in seeds]
    for seed, env in zip(seeds, envs):
        env.reset(seed=seed)
        env.single_observation_space.seed(1)
        env.observation_space.seed(2)
    return envs


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    want = np.asarray(want)
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_array_kernel_is_gymnasiums_scalar_step(dtype: type) -> None:
    """On many states (numpy's scalar ``x ** 2`` is libm's pow, which ``x * x`` misses about once
    in 3,000 rewards; ``u ** 2`` of a float32 torque is powf, missed by ``u * u`` about once in 80)."""
    gen, count = np.random.default_rng(7), 20_000
    state = np.stack((gen.uniform(-60, 60, count), gen.uniform(-9, 9, count)))
    actions = gen.uniform(-3, 3, (count, 1)).astype(dtype)
    env = pendulum.PendulumEnv()
    new_state, rewards, u = pendulum._dynamics(state, actions, env)
    obs = pendulum._observe(new_state)
    assert (obs.dtype, rewards.dtype, u.dtype) == (np.float32, np.float64, dtype)
    for i in range(count):
        env.state = state[:, i].copy()
        want_obs, want_reward, *_ = env.step(actions[i])
        assert _same(new_state[:, i], env.state) and _same(obs[i], want_obs), i
        assert _same(rewards[i], want_reward) and _same(u[i], env.last_u), i


def test_stacked_pendulum_reproduces_gymnasium_step_for_step() -> None:
    lone, mine = _envs(), _envs()
    stacked = StackedPendulum(mine)
    gen = np.random.default_rng(0)
    truncations = np.zeros((len(SEEDS), NUM_ENVS), dtype=int)
    for block, (steps, dtype) in enumerate([(170, np.float32), (160, np.float32), (150, np.float64)]):
        stacked.begin()  # begin/end between blocks: the envs hold the state in between
        for _ in range(steps):
            actions = (3.0 * gen.standard_normal((len(SEEDS), NUM_ENVS, 1))).astype(dtype)  # often clipped
            got = stacked.step(actions)
            for k, envs in enumerate(lone):
                want = envs.step(actions[k])[:4]
                assert all(_same(part[k], part_want) for part, part_want in zip(got, want)), (block, k)
            truncations += got[3]
            assert not got[2].any()
        assert stacked.settled  # the envs' first two steps went through their own wrappers
        stacked.end()
        if block == 1:  # lone steps of the written-back envs continue exactly too
            for theirs, ours in zip(lone, mine):
                actions = gen.uniform(-2.5, 2.5, (NUM_ENVS, 1)).astype(np.float32)
                assert all(_same(a, b) for a, b in zip(ours.step(actions)[:4], theirs.step(actions)[:4]))
    assert truncations.min() == 2  # every sub-env truncated at 200 twice and was reset after it
    for theirs, ours in zip(lone, mine):
        assert pickle_envs(theirs) == pickle_envs(ours)  # sub-env states, RNGs, wrappers, buffers
        for envs in (theirs, ours):
            envs.reset(seed=5)
        actions = gen.uniform(-2.0, 2.0, (NUM_ENVS, 1)).astype(np.float32)
        assert all(_same(a, b) for a, b in zip(ours.step(actions)[:4], theirs.step(actions)[:4]))
    with pytest.raises(ValueError, match="must have shape"):
        stacked.step(np.zeros((len(SEEDS), NUM_ENVS), dtype=np.float32))


def test_envs_written_back_mid_episode_pickle_and_step_as_lone_ones() -> None:
    """A rollout ending right after a truncation (the resets are due at the next step)."""
    lone, mine = _envs(), _envs()
    stacked = StackedPendulum(mine)
    gen = np.random.default_rng(1)
    stacked.begin()
    for _ in range(200):
        actions = gen.uniform(-3, 3, (len(SEEDS), NUM_ENVS, 1)).astype(np.float32)
        _, _, _, truncated = stacked.step(actions)
        for k, envs in enumerate(lone):
            envs.step(actions[k])
    stacked.end()
    assert truncated.all()
    for theirs, ours in zip(lone, mine):
        assert pickle_envs(theirs) == pickle_envs(ours)
        actions = gen.uniform(-3, 3, (NUM_ENVS, 1)).astype(np.float32)
        assert all(_same(a, b) for a, b in zip(ours.step(actions)[:4], theirs.step(actions)[:4]))
        assert ours.envs[0].unwrapped.last_u is None  # reset at that step, as the lone env
    stacked.begin()
    stacked.end()  # no step in between: nothing changes
    assert all(pickle_envs(theirs) == pickle_envs(ours) for theirs, ours in zip(lone, mine))


def test_a_state_gymnasium_never_makes_is_stepped_by_the_envs_themselves() -> None:
    """A float32 state (set by hand) would step in float32: those envs step seed by seed."""
    lone, mine = _envs(), _envs()
    for envs in (lone, mine):
        envs[1].envs[2].unwrapped.state = np.array([3.0, 0.5], dtype=np.float32)
    stacked = StackedPendulum(mine)
    gen = np.random.default_rng(2)
    stacked.begin()
    for _ in range(5):
        actions = gen.uniform(-3, 3, (len(SEEDS), NUM_ENVS, 1)).astype(np.float32)
        got = stacked.step(actions)
        for k, envs in enumerate(lone):
            assert all(_same(part[k], want) for part, want in zip(got, envs.step(actions[k])[:4]))
    assert not stacked.settled and mine[1].envs[2].unwrapped.state.dtype == np.float32
    stacked.end()
    assert all(pickle_envs(theirs) == pickle_envs(ours) for theirs, ours in zip(lone, mine))


def test_fits_only_unmodified_pendulum_vector_envs() -> None:
    envs = _envs()
    assert fits(envs)
    assert not fits([])
    assert not fits([*envs, *_envs([7], NUM_ENVS + 1)])  # another N
    assert not fits([*envs, *_envs([7], g=9.81)])  # another constant
    assert not fits(_envs(g=9.81))
    assert not fits([*envs, *_envs([7], max_episode_steps=100)])  # another time limit
    assert not fits([gym.wrappers.vector.RecordEpisodeStatistics(envs[0])])
    assert not fits([make_vec_env("CartPole-v1", NUM_ENVS)])
    same_step = gym.make_vec("Pendulum-v1", NUM_ENVS, vectorization_mode="sync",
                             vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})  # fmt: skip
    assert not fits([same_step])
    clipped = SyncVectorEnv([lambda: gym.wrappers.ClipAction(gym.make("Pendulum-v1"))] * NUM_ENVS)
    assert not fits([clipped])  # a sub-env with another wrapper stack
    envs[1].envs[2].unwrapped.max_speed = 9
    assert not fits(envs)
    with pytest.raises(ValueError, match="StackedPendulum needs"):
        StackedPendulum(envs)


def test_a_numpy_whose_array_ops_round_otherwise_is_not_stacked(monkeypatch: pytest.MonkeyPatch) -> None:
    envs = _envs()
    monkeypatch.setattr(pendulum, "_kernel_matches_gymnasium", lambda: False)
    assert not fits(envs)


def test_unreset_envs_are_refused() -> None:
    envs = [make_vec_env("Pendulum-v1", 2, seed=seed) for seed in (0, 1)]
    stacked = StackedPendulum(envs)
    with pytest.raises(RuntimeError, match="seed 0's Pendulum env 0 has not been reset"):
        stacked.begin()


def test_stacked_ppo_pendulum_rollout_is_the_lone_runs() -> None:
    """A first rollout of 256 steps (the episodes truncate at 200 and restart) through the stacked
    Pendulum: with ``stack_exact`` the buffers are the lone runs' bit for bit."""
    stack, training, _, _, lone_runs = _first_update("ppo_pendulum", overrides=("rollout.n_steps=256",
                                                                                "stack_exact=true"))  # fmt: skip
    assert type(training.collector.env_side()) is StackedPendulum
    assert training.collector.buffer.truncated.any()
    for k, (_, lone_buffer, _, _) in enumerate(lone_runs):
        buffer = training.collector.buffer.seeds[k]
        for name in ("obs", "actions", "log_probs", "values", "rewards", "valid", "terminated", "truncated",
                     "last_obs", "last_values"):  # fmt: skip
            assert torch.equal(getattr(buffer, name), getattr(lone_buffer, name)), name


def test_seed_envs_is_the_fallback() -> None:
    """Pendulum vector envs that do not fit (another constant per seed) step seed by seed."""
    from rlopt.config import load_config
    from rlopt.stacked.rollout import build_collectors

    stack = build_collectors(load_config("ppo_pendulum", ["rollout.n_steps=8"]), [0, 1])
    assert type(stack.env_side()) is StackedPendulum
    stack.collectors[1].envs = make_vec_env("Pendulum-v1", 4, seed=1, g=9.81)
    assert type(stack.env_side()) is SeedEnvs
    stack.close()


RUN = ["rollout.n_steps=100", "ppo.epochs=2", "total_steps=1200", "checkpoint.every_steps=800", "eval.episodes=1"]
"""Three rollouts of 100 steps on 4 envs: the episodes truncate at the last step of the second
rollout, where the interval checkpoint is written (the resets are due at the resumed first step)."""


def _weights(path) -> dict:
    return torch.load(path, weights_only=True)["agent"]


def _env_state(path) -> tuple:
    """What a pickled Pendulum vector env continues from (its bytes differ after any unpickling)."""
    from rlopt.checkpoint import load_envs

    envs = load_envs(path)
    subs = [(sub.unwrapped.state.tobytes(), repr(sub.unwrapped.last_u), sub._elapsed_steps,
             repr(sub.unwrapped.np_random.bit_generator.state)) for sub in envs.envs]  # fmt: skip
    return subs, envs._autoreset_envs.tolist(), envs._observations.tobytes(), envs._rewards.tobytes()


def test_stacked_ppo_run_is_the_seed_by_seed_run_and_resumes_exactly(tmp_path, monkeypatch, capsys) -> None:
    """A whole stacked PPO Pendulum run (three rollouts and updates) ends with the weights the
    seed-by-seed env side (``SeedEnvs``) gives, bit for bit, and one killed after its checkpoint
    resumes to them."""
    import shutil

    import rlopt.stacked.rollout as rollout
    from agents.stacked import build_stacked
    from rlopt.cli import main
    from rlopt.config import load_config
    from rlopt.run_files import list_checkpoints
    from rlopt.stacked import StackedTraining

    cfg = load_config("ppo_pendulum", RUN)
    ours = StackedTraining(build_stacked(cfg, [0, 1]), run_dir=tmp_path / "stack")
    assert type(ours.collector.env_side()) is StackedPendulum
    ours.train(evaluate=False)
    with monkeypatch.context() as patch:
        patch.setattr(rollout, "pendulum_fits", lambda envs: False)
        theirs = StackedTraining(build_stacked(cfg, [0, 1]))
        assert type(theirs.collector.env_side()) is SeedEnvs
        theirs.train(evaluate=False)
    for a, b in zip(ours.learner.agents, theirs.learner.agents):
        for name in ("actor", "critic"):
            assert all(torch.equal(x, y) for x, y in zip(getattr(a, name).state_dict().values(),
                                                         getattr(b, name).state_dict().values()))  # fmt: skip
    assert ours.recent_returns == theirs.recent_returns
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "stack", killed)
    for seed in (0, 1):  # killed before its final checkpoint: the last one is the interval one at 800
        (killed / f"seed_{seed}" / "summary.json").unlink()
        for path in (killed / f"seed_{seed}" / "checkpoints").glob("step_000000001200.*"):
            path.unlink()
    assert _env_state(killed / "seed_0" / "checkpoints" / "step_000000000800.pt")[1] == [True] * 4  # resets due
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    assert "from 800 env steps" in capsys.readouterr().err
    for seed in (0, 1):
        resumed, uninterrupted = (list_checkpoints(d / f"seed_{seed}")[-1] for d in (killed, tmp_path / "stack"))
        assert resumed.name == uninterrupted.name == "step_000000001200.pt"
        a, b = _weights(resumed), _weights(uninterrupted)
        assert all(torch.equal(a[name][k], b[name][k]) for name in ("actor", "critic") for k in b[name])
        assert _env_state(resumed) == _env_state(uninterrupted)
