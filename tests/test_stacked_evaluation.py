"""All seeds of a stack evaluated together (rlopt.stacked.evaluation): each seed's result equals
its lone agent's ``evaluate_episodes`` exactly, also chunked, step-limited, during training, and
when a seed falls back to its own ``predict``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rlopt.evaluation
import rlopt.stacked.evaluation
from agents.stacked import build_stacked
from rlopt.config import load_config
from rlopt.evaluation import evaluate_during_training, evaluate_episodes
from rlopt.stacked import StackedTraining
from rlopt.stacked.evaluation import StackedPolicy, evaluate_stacked

SEEDS = (0, 1, 2)
PRESETS = {  # a few hundred env steps of training, so the policies are not the initial ones
    "a2c_cartpole": ([], 512),
    "cartpole_normalized": (["agent=ppo", "rollout.n_steps=32", "ppo.epochs=2", "env.normalize_obs=true"], 512),
    "a2c_pendulum": (["rollout.n_steps=8"], 256),
}


class Endless(gym.Env):
    """Never terminates and has no time limit: only the evaluation's step limit ends its episodes."""

    observation_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.np_random.normal(size=4).astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.np_random.normal(size=4).astype(np.float32), float(action) + 0.5, False, False, {}


gym.register("StackedEvalEndless-v0", entry_point=f"{__name__}:Endless")


def _trained(name: str, *overrides: str) -> StackedTraining:
    extra, steps = PRESETS[name]
    preset = "ppo_cartpole" if name == "cartpole_normalized" else name
    cfg = load_config(preset, [*extra, *overrides])
    training = StackedTraining(build_stacked(cfg, SEEDS))
    training.train(total_steps=steps, evaluate=False)
    return training


@pytest.fixture(scope="module", params=sorted(PRESETS))
def trained(request: pytest.FixtureRequest) -> StackedTraining:
    return _trained(request.param)


def _lone(training: StackedTraining, episodes: int, **kwargs: Any) -> list[dict[str, Any]]:
    return [evaluate_episodes(agent, episodes, agent.cfg.seed, **kwargs) for agent in training.learner.agents]


def test_stacked_evaluation_equals_each_lone_evaluation(trained: StackedTraining) -> None:
    results = evaluate_stacked(trained.learner, 12)
    assert results == _lone(trained, 12)
    assert len({r["return_mean"] for r in results}) == len(SEEDS)  # the seeds' policies differ


def test_chunked_stacked_evaluation_equals_lone_chunked(trained: StackedTraining) -> None:
    """Chunks of 5, 5 and 2 envs (on 2 rows CartPole's lone 2-output layer took another kernel here
    than the stacked one: those seeds act through their own predict)."""
    assert evaluate_stacked(trained.learner, 12, chunk=5) == _lone(trained, 12, chunk=5)


def test_a_seed_whose_stacked_forward_differs_acts_through_its_own_predict(
    trained: StackedTraining, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeds 0 and 2's stacked outputs corrupted: the first-step check catches it, their results stay the lone ones."""
    exact = StackedPolicy.mode_inputs

    def corrupted(self: StackedPolicy, obs: np.ndarray) -> torch.Tensor:
        out = exact(self, obs).clone()
        out[[0, 2]] = -out[[0, 2]]
        return out

    monkeypatch.setattr(StackedPolicy, "mode_inputs", corrupted)
    policy = StackedPolicy(trained.learner, range(len(SEEDS)))
    obs = np.zeros((len(SEEDS), 6, *trained.learner.agents[0].observation_space.shape), dtype=np.float32) + 0.1
    assert policy.differing(obs, policy.mode_inputs(obs)) == [True, False, True]
    assert evaluate_stacked(trained.learner, 6) == _lone(trained, 6)


def test_a_subset_of_seeds_with_its_own_evaluation_seeds() -> None:
    training = _trained("a2c_cartpole")
    agents = training.learner.agents
    results = evaluate_stacked(training.learner, 8, seeds=[40, 41], indices=[2, 0])
    assert results == [evaluate_episodes(agents[2], 8, 40), evaluate_episodes(agents[0], 8, 41)]
    none = evaluate_stacked(training.learner, 0)[1]  # NaN means: compared as text
    assert repr(none) == repr(evaluate_episodes(agents[1], 0, agents[1].cfg.seed)) and none["episodes"] == 0


def test_seeds_evaluated_in_groups_when_their_envs_exceed_the_cap(
    trained: StackedTraining, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rlopt.stacked.evaluation, "STACKED_EVAL_ENVS", 12)  # 6 envs a seed: groups of 2 and 1
    assert evaluate_stacked(trained.learner, 6) == _lone(trained, 6)


@pytest.mark.parametrize("limit", [None, 23])
def test_an_env_without_time_limit_is_cut_at_the_episode_step_limit(limit: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``eval.max_episode_steps`` the default limit applies (made small here)."""
    monkeypatch.setattr(rlopt.evaluation, "DEFAULT_MAX_EPISODE_STEPS", 31)
    cfg = load_config("a2c_cartpole", ["env.id=StackedEvalEndless-v0", f"eval.max_episode_steps={limit or 'null'}"])
    learner = build_stacked(cfg, SEEDS)
    results = evaluate_stacked(learner, 4)
    assert results == [evaluate_episodes(agent, 4, agent.cfg.seed) for agent in learner.agents]
    cut = limit or 31
    assert all(r["truncated_episodes"] == 4 and r["max_episode_steps"] == r["episode_length"] == cut for r in results)


def test_evaluation_during_training_is_each_lone_runs_and_skips_frozen_seeds() -> None:
    training = _trained("a2c_cartpole", "eval.episodes_during=4")
    training.learner.frozen[1] = True
    rng = torch.get_rng_state()
    training._evaluate_during_training()
    assert torch.equal(torch.get_rng_state(), rng)
    agents, steps = training.learner.agents, training.env_steps
    expected = [evaluate_during_training(agents[k], 4, agents[k].cfg.seed, steps)["return_mean"] for k in (0, 2)]
    assert [training.best_eval_return[k] for k in (0, 2)] == expected
    assert training.best_eval_return[1] == -float("inf") and training.best_eval_step == [steps, None, steps]


def test_a_seed_with_non_finite_weights_is_evaluated_as_its_lone_agent() -> None:
    """A frozen seed is still evaluated at the end (as alone); NaN weights must not touch the others."""
    learner = build_stacked(load_config("a2c_cartpole"), SEEDS)
    with torch.no_grad():
        learner.actor.leaves()[1].fill_(float("nan"))
    learner.frozen[1] = True
    results = evaluate_stacked(learner, 6)
    assert results == [evaluate_episodes(agent, 6, agent.cfg.seed) for agent in learner.agents]
