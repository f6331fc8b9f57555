"""Numerical faults never reach the weights, and trust-region steps stay inside the trust region.

Issue "Runs you can trust", requirements 5 and 6. A non-finite observation, reward, loss or
gradient makes the update a no-op (networks and optimizer states bit-identical, the update
counted in ``health/skipped_updates``); ``health.max_consecutive_faults`` such updates in a row
stop the run (CLI exit code 3) and leave the last good checkpoint in place. TRPO never accepts
a step with KL above ``max_kl``, and a rejected step leaves the actor bit-identical.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import agents.npg
import agents.ppo
from agents import PPO, TRPO, Agent, UpdateStats
from rlopt.checkpoint import list_checkpoints, load_checkpoint
from rlopt.cli import EXIT_FAULT, main
from rlopt.errors import NumericalFault
from rlopt.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
NUM_ENVS, N_STEPS = 4, 32
BATCH = NUM_ENVS * N_STEPS  # 128 env steps per update; sub-env step k lies in update (k - 1) // 32
GLITCH_STEP = 40  # -> update 1
PERSISTENT_FROM = 100  # -> updates 3, 4, 5, ...


class GlitchyCartPole(CartPoleEnv):
    """CartPole that reports a non-finite observation or reward at chosen step counts.

    The physics stay finite: only the returned value is corrupted (a sensor glitch). Steps are
    counted over the life of the instance, across episodes.
    """

    def __init__(self, corrupt: str, value: float, at_step: int, forever: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.corrupt, self.value, self.at_step, self.forever = corrupt, value, at_step, forever
        self.steps_taken = 0

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps_taken += 1
        if self.steps_taken == self.at_step or (self.forever and self.steps_taken >= self.at_step):
            if self.corrupt == "obs":
                obs = obs.copy()
                obs[2] = self.value
            else:
                reward = self.value
        return obs, reward, terminated, truncated, info


GLITCHES = {
    "NaNObsOnce-v0": dict(corrupt="obs", value=math.nan, at_step=GLITCH_STEP),
    "InfObsOnce-v0": dict(corrupt="obs", value=math.inf, at_step=GLITCH_STEP),
    "NaNRewardOnce-v0": dict(corrupt="reward", value=math.nan, at_step=GLITCH_STEP),
    "NaNObsForever-v0": dict(corrupt="obs", value=math.nan, at_step=PERSISTENT_FROM, forever=True),
}
for env_name, kwargs in GLITCHES.items():
    gym.register(env_name, entry_point=f"{__name__}:GlitchyCartPole", kwargs=kwargs, max_episode_steps=500)


def env_id(name: str) -> str:
    return f"{__name__}:{name}"


def make_agent(cls: type[Agent], env_name: str, normalize_obs: bool = False, **values: Any) -> Agent:
    preset = {"ppo": "ppo_cartpole.yaml", "trpo": "trpo_cartpole.yaml"}[cls.name]
    overrides: dict[str, Any] = {
        "total_steps": 5 * BATCH,
        "env": {"id": env_name, "num_envs": NUM_ENVS, "normalize_obs": normalize_obs},
        "rollout": {"n_steps": N_STEPS},
        "critic": {"minibatch_size": 64},
        "ppo": {"epochs": 2, "minibatch_size": 64},
        "eval": {"episodes": 2},
    }
    overrides.update(values)
    return cls.from_config(ROOT / "configs" / preset, **overrides)


def training_state(agent: Agent) -> dict[str, torch.Tensor]:
    """Copies of every parameter and every optimizer state tensor of the agent."""
    out = {f"actor.{k}": v.detach().clone() for k, v in agent.actor.state_dict().items()}
    out.update({f"critic.{k}": v.detach().clone() for k, v in agent.critic.state_dict().items()})
    for name in ("actor_optimizer", "critic_optimizer"):
        for index, entry in getattr(agent, name).state_dict()["state"].items():
            out.update({f"{name}.{index}.{k}": torch.as_tensor(v).clone() for k, v in entry.items()})
    return out


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} changed"


class UpdateRecorder:
    """Wraps ``agent.update``: the training state at each call's entry, and each call's stats."""

    def __init__(self, agent: Agent, before_update: Callable[[int], None] | None = None) -> None:
        self.agent = agent
        self.states_before: list[dict[str, torch.Tensor]] = []
        self.stats: list[UpdateStats] = []
        original = agent.update

        def update(batch: Any) -> UpdateStats:
            self.states_before.append(training_state(agent))
            if before_update is not None:
                before_update(len(self.stats))
            self.stats.append(original(batch))
            return self.stats[-1]

        agent.update = update  # type: ignore[method-assign]

    @property
    def skipped(self) -> list[bool]:
        return [s.skipped for s in self.stats]


def logged(run_dir: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def assert_only_update_one_skipped(recorder: UpdateRecorder, trainer: Trainer, run_dir: Path) -> None:
    assert recorder.skipped == [False, True, False, False, False]
    # The skipped update (index 1) left networks and optimizer states exactly as it found them.
    assert_same_state(recorder.states_before[1], recorder.states_before[2])
    with pytest.raises(AssertionError):  # while a healthy update does move them
        assert_same_state(recorder.states_before[0], recorder.states_before[1])
    assert logged(run_dir, "health/skipped_updates") == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert trainer.skipped_updates == 1 and trainer.consecutive_faults == 0


@pytest.mark.parametrize("cls", [PPO, TRPO], ids=["ppo", "trpo"])
@pytest.mark.parametrize("glitch", ["NaNObsOnce-v0", "InfObsOnce-v0", "NaNRewardOnce-v0"])
def test_non_finite_observation_or_reward_skips_exactly_that_update(
    cls: type[Agent], glitch: str, tmp_path: Path
) -> None:
    agent = make_agent(cls, env_id(glitch))
    recorder = UpdateRecorder(agent)
    trainer = Trainer(agent, run_dir=tmp_path, progress=False)
    summary = trainer.train()
    assert summary["skipped_updates"] == 1
    assert_only_update_one_skipped(recorder, trainer, tmp_path)


@pytest.mark.parametrize("fault", ["gradient", "loss"])
def test_non_finite_gradient_or_loss_mid_update_is_rolled_back(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PPO has already stepped two minibatches when the third actor backward goes non-finite."""
    agent = make_agent(PPO, "CartPole-v1")
    calls = {"update": -1, "count": 0}  # actor losses/backward passes within the current update

    def arm(update_index: int) -> None:
        calls.update(update=update_index, count=0)

    def third_call_of_update_one() -> bool:
        calls["count"] += 1
        return calls["update"] == 1 and calls["count"] == 3

    if fault == "gradient":  # finite loss, infinite gradient of one weight matrix
        first_weight = next(agent.actor.parameters())
        first_weight.register_hook(lambda grad: grad * math.inf if third_call_of_update_one() else grad)
    else:
        original_loss = agents.ppo.ppo_clip_loss

        def nan_loss(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, dict]:
            loss, info = original_loss(*args, **kwargs)
            return (loss * math.nan if third_call_of_update_one() else loss), info

        monkeypatch.setattr(agents.ppo, "ppo_clip_loss", nan_loss)
    recorder = UpdateRecorder(agent, before_update=arm)
    trainer = Trainer(agent, run_dir=tmp_path, progress=False)
    trainer.train()
    assert calls["count"] == 4  # 2 epochs x 2 minibatches per update: the hook really ran
    assert_only_update_one_skipped(recorder, trainer, tmp_path)


def test_consecutive_faults_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path: Path) -> None:
    agent = make_agent(
        PPO, env_id("NaNObsForever-v0"), total_steps=10 * BATCH,
        health={"max_consecutive_faults": 3}, checkpoint={"every_steps": BATCH, "keep": 2},
    )  # fmt: skip
    recorder = UpdateRecorder(agent)
    trainer = Trainer(agent, run_dir=tmp_path, progress=False)
    with pytest.raises(NumericalFault, match=r"health.max_consecutive_faults=3"):
        trainer.train()
    # Updates 0-2 are healthy; 3, 4, 5 see NaN observations (sub-env step >= 100) and are skipped.
    assert recorder.skipped == [False, False, False, True, True, True]
    last_good = list_checkpoints(tmp_path)[-1]
    assert last_good.name == f"step_{3 * BATCH:012d}.pt"
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"step_{2 * BATCH:012d}.pt", last_good.name]
    saved = load_checkpoint(last_good)
    assert saved["consecutive_faults"] == 0
    state_after_last_healthy_update = recorder.states_before[3]
    for net in ("actor", "critic"):
        for key, tensor in saved["agent"][net].items():
            assert torch.equal(tensor, state_after_last_healthy_update[f"{net}.{key}"])
    assert_same_state(recorder.states_before[3], training_state(agent))  # the faults moved nothing
    assert not (tmp_path / "summary.json").exists()


def test_cli_exits_3_with_a_clear_message_on_persistent_faults(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main([
        "train", str(ROOT / "configs" / "ppo_cartpole.yaml"), f"env.id={env_id('NaNObsForever-v0')}",
        f"env.num_envs={NUM_ENVS}", f"rollout.n_steps={N_STEPS}", "ppo.epochs=1", "ppo.minibatch_size=64",
        f"total_steps={10 * BATCH}", f"checkpoint.every_steps={BATCH}", "health.max_consecutive_faults=2",
        "--run-dir", str(tmp_path), "--no-progress",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_FAULT
    assert "numerical fault" in err and "max_consecutive_faults=2" in err
    assert f"last good checkpoint: {tmp_path / 'checkpoints' / f'step_{3 * BATCH:012d}.pt'}" in err
    assert "Traceback" not in err


def test_one_non_finite_observation_does_not_poison_the_obs_normaliser(tmp_path: Path) -> None:
    agent = make_agent(PPO, env_id("NaNObsOnce-v0"), normalize_obs=True)
    recorder = UpdateRecorder(agent)
    Trainer(agent, run_dir=tmp_path, progress=False).train()
    assert recorder.skipped == [False, True, False, False, False]


# --------------------------------------------------------------------------------------------------
# Trust-region safety (TRPO)
# --------------------------------------------------------------------------------------------------


def test_trpo_never_accepts_a_step_outside_the_trust_region() -> None:
    max_kl = 0.005
    agent = make_agent(
        TRPO, "CartPole-v1", total_steps=8 * BATCH,
        actor={"optim": {"name": "trust_region", "max_kl": max_kl, "cg_iters": 10, "max_backtracks": 10}},
    )  # fmt: skip
    recorder = UpdateRecorder(agent)
    Trainer(agent, run_dir=None, progress=False).train()
    accepted = [s for s in recorder.stats if s.extra["actor/step_accepted"] == 1.0]
    assert len(accepted) >= 4, "the test needs accepted steps to mean anything"
    for stats in accepted:
        assert 0.0 < stats.actor_kl <= max_kl * (1 + 1e-6)
    # The steps are scaled to the radius: the accepted KLs are not all far inside it.
    assert max(s.actor_kl for s in accepted) > 0.1 * max_kl


def test_trpo_rejected_step_leaves_the_actor_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every line-search trial sees a worse surrogate, so every step must be rejected."""
    original_loss = agents.npg.surrogate_loss

    def never_improves(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, dict]:
        loss, info = original_loss(*args, **kwargs)
        return (loss if torch.is_grad_enabled() else loss + 1.0), info  # trials run under no_grad

    monkeypatch.setattr(agents.npg, "surrogate_loss", never_improves)
    agent = make_agent(TRPO, "CartPole-v1", total_steps=3 * BATCH)
    actor_before: list[dict[str, torch.Tensor]] = []

    def remember_actor(_: int) -> None:
        actor_before.append({k: v.clone() for k, v in agent.actor.state_dict().items()})

    recorder = UpdateRecorder(agent, before_update=remember_actor)
    Trainer(agent, run_dir=None, progress=False).train()
    assert [s.extra["actor/step_accepted"] for s in recorder.stats] == [0.0, 0.0, 0.0]
    assert all(not s.skipped and s.extra["actor/line_search_steps"] == 10 for s in recorder.stats)
    assert all(s.actor_kl == 0.0 for s in recorder.stats)
    for name, tensor in agent.actor.state_dict().items():
        for before in actor_before:
            assert torch.equal(before[name], tensor), name


# --------------------------------------------------------------------------------------------------
# Running statistics never see a non-finite value (issue 12, item 2)
# --------------------------------------------------------------------------------------------------


def test_one_non_finite_reward_does_not_poison_the_reward_scaler(tmp_path: Path) -> None:
    agent = make_agent(PPO, env_id("NaNRewardOnce-v0"), env={"id": env_id("NaNRewardOnce-v0"), "num_envs": NUM_ENVS,
                                                              "normalize_reward": True})  # fmt: skip
    recorder = UpdateRecorder(agent)
    trainer = Trainer(agent, run_dir=tmp_path, progress=False)
    summary = trainer.train()
    assert recorder.skipped == [False, True, False, False, False]
    assert summary["skipped_updates"] == 1
    stats = trainer.collector.reward_scaler.return_stats
    assert math.isfinite(stats.count) and bool(torch.isfinite(stats.var).all() & torch.isfinite(stats.mean).all())


def test_running_mean_std_skips_non_finite_rows() -> None:
    from rlopt.normalization import RewardScaler, RunningMeanStd

    stats = RunningMeanStd(2, epsilon=0.0)
    stats.update(torch.tensor([[1.0, 2.0], [math.nan, 0.0], [3.0, math.inf], [3.0, 4.0]]))
    assert stats.count == 2.0  # only the two finite rows
    assert torch.equal(stats.mean, torch.tensor([2.0, 3.0], dtype=torch.float64))
    assert torch.equal(stats.var, torch.tensor([1.0, 1.0], dtype=torch.float64))
    scaler = RewardScaler(num_envs=2, gamma=0.5, epsilon=0.0)
    scaled = scaler.scale(np.array([1.0, math.nan]), np.array([False, False]))
    assert math.isnan(scaled[1]) and math.isfinite(scaled[0])  # the bad step stays bad (its update is skipped)
    assert scaler.return_stats.count == 1.0 and np.isfinite(scaler.discounted_return).all()
    scaler.scale(np.array([1.0, 2.0]), np.array([False, False]))
    assert scaler.discounted_return.tolist() == [1.5, 2.0]  # env 1's return restarts after the bad step
