"""The layers read one way: the library (``rlopt``) never imports the agents, agents implement the
``Learner`` protocol and own their config rules, and building an agent has no process-wide side
effects (issue 9)."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import AGENTS, NPG, PPO, Agent, build_agent, check_config
from rlopt.config import load_config
from rlopt.errors import ConfigError
from rlopt.learner import Learner, UpdateStats

ROOT = Path(__file__).resolve().parents[1]
TOP_FLOOR = {"cli.py"}
"""The command line is the one module of rlopt that may import the agents."""


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import``/``from ... import`` anywhere in the file names (TYPE_CHECKING too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def test_no_library_module_imports_the_agents() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.split(".")[0] == "agents")
        for path in sorted((ROOT / "rlopt").rglob("*.py"))
        if path.name not in TOP_FLOOR
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
    assert any(m.split(".")[0] == "agents" for m in _imported_modules(ROOT / "rlopt" / "cli.py"))  # the test can fail


def test_the_registry_sits_under_the_agent_classes() -> None:
    """``Agent.from_config``/``Agent.load`` reach the registry without importing the package or a
    subclass (late imports included): the modules the package is made of never import it back."""
    parts = {m for m in _imported_modules(ROOT / "agents" / "__init__.py") if m.startswith("agents.")}
    assert {"agents.base", "agents.registry", "agents.actor_critic", "agents.ppo"} <= parts
    assert _imported_modules(ROOT / "agents" / "base.py") & parts == {"agents.registry"}
    assert not any(m.split(".")[0] == "agents" for m in _imported_modules(ROOT / "agents" / "registry.py"))
    assert not any("agents" in _imported_modules(ROOT / f"{m.replace('.', '/')}.py") for m in parts)


def test_the_ast_check_sees_imports_under_type_checking(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agents.base import Agent\n")
    assert "agents.base" in _imported_modules(module)


# --------------------------------------------------------------------------------- UpdateStats


def test_update_stats_extra_tags_join_the_common_tags() -> None:
    stats = UpdateStats(actor_loss=1.0, actor_lr=3e-4, critic_loss=2.0)
    stats.record({"actor_entropy": 0.5, "actor/cg_residual": 1e-3, "actor/step_accepted": 1.0})
    assert stats.actor_entropy == 0.5 and stats.extra == {"actor/cg_residual": 1e-3, "actor/step_accepted": 1.0}
    tags = stats.scalars()
    assert tags["actor/loss"] == 1.0 and tags["critic/loss"] == 2.0 and tags["actor/entropy"] == 0.5
    assert tags["actor/cg_residual"] == 1e-3 and tags["actor/step_accepted"] == 1.0
    assert "critic/lr" not in tags and "skipped" not in str(tags) and "extra" not in str(tags)
    assert math.isnan(tags["actor/kl"])  # common fields are always reported
    with pytest.raises(KeyError, match="actor_cg_residual"):
        stats.record({"actor_cg_residual": 1.0})  # an extra must be a full tag


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_is_a_learner(name: str) -> None:
    tiny = {"env": {"num_envs": 1}, "rollout": {"n_steps": 8}, "ppo": {"minibatch_size": 8}, "total_steps": 8}
    agent = AGENTS[name].from_config(None, **tiny)
    torch.set_num_threads(1)
    assert isinstance(agent, Learner)
    modules, optimizers = agent.trainables()
    assert modules[0] is agent.actor and optimizers[0] is agent.actor_optimizer
    assert len(modules) == len(optimizers) == (2 if agent.critic is not None else 1)


# --------------------------------------------------------------------------------- check_config


@pytest.mark.parametrize(
    ("name", "bad", "key"),
    [
        ("reinforce", ["actor.optim={name: trust_region}"], "actor.optim.name"),
        ("a2c", ["actor.optim={name: adam, lr: 0.1, foo: 1}"], "actor.optim.foo"),
        ("npg", ["actor.optim={name: sgd, lr: 0.1}"], "actor.optim.name"),
        ("trpo", ["actor.optim.cg_iters=0"], "actor.optim.cg_iters"),
        ("ppo", ["ppo.minibatch_size=4096"], "ppo.minibatch_size"),
        ("ppo", ["ppo.epochs=0"], "ppo.epochs"),
        ("ppo", ["ppo.target_kl=-0.1"], "ppo.target_kl"),
        ("reinforce", ["reinforce.baseline=critic"], "reinforce.baseline"),
    ],
)
def test_each_agent_class_checks_its_own_rules(name: str, bad: list[str], key: str) -> None:
    cls = AGENTS[name]
    good = load_config(None, [f"agent={name}", "rollout.n_steps=64", "env.num_envs=2"])
    assert cls.check_config(good) == check_config(good)
    with pytest.raises(ConfigError, match=f"^{key}"):
        cls.check_config(load_config(None, [f"agent={name}", "rollout.n_steps=64", "env.num_envs=2", *bad]))


def test_ppo_minibatch_rule_is_ppo_s_own() -> None:
    """Other agents ignore the ppo section, so its minibatch size is no error for them."""
    cfg = load_config(None, ["agent=a2c", "ppo.minibatch_size=100000"])
    assert check_config(cfg).ppo.minibatch_size == 100000
    with pytest.raises(ConfigError, match="^ppo.minibatch_size"):
        PPO.check_config(cfg)


@pytest.mark.parametrize(("section", "bad"), [("ppo", "ppo.epochs=0"), ("reinforce", "reinforce.baseline=critic")])
def test_an_agent_section_is_checked_by_its_agent_alone(section: str, bad: str) -> None:
    """The schema checks no agent section; the agent that reads it does (``check_config``)."""
    cfg = load_config(None, ["agent=a2c", bad])  # validate() accepts it
    check_config(cfg)  # a2c reads neither section
    with pytest.raises(ConfigError, match=f"^{bad.split('=')[0]}"):
        check_config(load_config(None, [f"agent={section}", bad]))


# --------------------------------------------------------------------------------- side effects


def _spaces() -> tuple[gym.Space, gym.Space]:
    env = gym.make("CartPole-v1")
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def test_constructing_an_agent_neither_reseeds_nor_sets_threads() -> None:
    cfg = check_config(load_config(None, ["agent=ppo", "seed=5", "threads=3"]))
    torch.set_num_threads(1)
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    first, second = (PPO(cfg, *_spaces()) for _ in range(2))
    assert torch.get_num_threads() == 1
    assert random.getstate() == python_state and np.array_equal(np.random.get_state()[1], numpy_state)
    # Weights come from torch's global RNG, as for any nn.Module: not reseeded in between.
    assert not torch.equal(first.actor.body[0].weight, second.actor.body[0].weight)
    torch.manual_seed(11)
    assert torch.equal(PPO(cfg, *_spaces()).actor.body[0].weight, first.actor.body[0].weight)


def test_build_agent_is_where_a_run_seeds_and_sets_threads() -> None:
    cfg = load_config(None, ["agent=npg", "seed=5", "threads=2"])
    try:
        torch.manual_seed(99)
        a = build_agent(cfg)
        assert torch.get_num_threads() == 2
        torch.manual_seed(123)
        b = build_agent(cfg)
    finally:
        torch.set_num_threads(1)
    for x, y in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(x, y)  # cfg.seed, not whatever the process held before, fixes the weights
    assert isinstance(a, NPG) and isinstance(a, Agent)
