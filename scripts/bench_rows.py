"""The benchmark rows: the same hyper-parameters written for rlopt and for Stable-Baselines3 / sb3-contrib
(rl-zoo's CartPole settings and the Pendulum presets), shared by ``scripts/bench_vs_sb3.py`` and
``scripts/bench_stacked.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Row:
    """One benchmark row: the same hyper-parameters written for each library."""

    name: str
    env_id: str
    total_steps: int
    rlopt: dict[str, Any]
    """rlopt config (written to a YAML file; ``total_steps``, seed and eval are added)."""
    sb3_algo: str
    """``PPO``, ``A2C`` (stable_baselines3) or ``TRPO`` (sb3_contrib)."""
    sb3: dict[str, Any]
    """Keyword arguments of the SB3 constructor; ``linear:<v>`` means a linear schedule from v to 0."""
    num_envs: int
    normalize_reward: bool = False
    gamma: float = 0.99
    floor: dict[str, int] = field(default_factory=dict)
    """Floor work: ``grad_steps`` Adam steps on batches of ``grad_batch`` (CartPole rows only)."""


def num_updates(total: int, batch: int) -> int:
    return -(-total // batch)  # both libraries stop at the first update that reaches total_steps


PPO_CARTPOLE = Row(
    name="ppo_cartpole", env_id="CartPole-v1", total_steps=100_000, num_envs=8, gamma=0.98,
    rlopt={
        "agent": "ppo", "gamma": 0.98, "gae_lambda": 0.8, "entropy_coef": 0.0,
        "env": {"id": "CartPole-v1", "num_envs": 8}, "rollout": {"n_steps": 32},
        "actor": {"optim": {"name": "adam", "lr": 1e-3, "eps": 1e-5}, "schedule": {"name": "linear"}, "max_grad_norm": 0.5},
        "critic": {"optim": {"name": "adam", "lr": 1e-3, "eps": 1e-5}, "schedule": {"name": "linear"}, "max_grad_norm": 0.5},
        "ppo": {"epochs": 20, "minibatch_size": 256, "clip": {"value": 0.2, "name": "linear"}, "normalize_advantage": True},
    },
    sb3_algo="PPO",
    sb3={"n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98, "gae_lambda": 0.8, "ent_coef": 0.0,
         "learning_rate": "linear:1e-3", "clip_range": "linear:0.2", "max_grad_norm": 0.5},
    floor={"grad_steps": num_updates(100_000, 256) * 20, "grad_batch": 256},
)  # fmt: skip
A2C_CARTPOLE = Row(
    name="a2c_cartpole", env_id="CartPole-v1", total_steps=100_000, num_envs=8,
    rlopt={
        "agent": "a2c", "gamma": 0.99, "gae_lambda": 1.0, "entropy_coef": 0.0,
        "env": {"id": "CartPole-v1", "num_envs": 8}, "rollout": {"n_steps": 5}, "pg": {"normalize_advantage": False},
        "actor": {"optim": {"name": "rmsprop", "lr": 7e-4, "alpha": 0.99, "eps": 1e-5}, "max_grad_norm": 0.5},
        "critic": {"optim": {"name": "rmsprop", "lr": 7e-4, "alpha": 0.99, "eps": 1e-5}, "max_grad_norm": 0.5},
    },
    sb3_algo="A2C",
    sb3={"n_steps": 5, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.0, "learning_rate": 7e-4,
         "max_grad_norm": 0.5, "rms_prop_eps": 1e-5, "normalize_advantage": False},
    floor={"grad_steps": num_updates(100_000, 40), "grad_batch": 40},
)  # fmt: skip
TRPO_CARTPOLE = Row(
    name="trpo_cartpole", env_id="CartPole-v1", total_steps=100_000, num_envs=2,
    rlopt={
        "agent": "trpo", "gamma": 0.99, "gae_lambda": 0.98,
        "env": {"id": "CartPole-v1", "num_envs": 2}, "rollout": {"n_steps": 512}, "pg": {"normalize_advantage": True},
        "actor": {"optim": {"name": "trust_region", "max_kl": 0.01, "cg_iters": 15, "cg_damping": 1e-3,
                            "line_search": True, "backtrack_coef": 0.8, "max_backtracks": 10}},
        "critic": {"optim": {"name": "adam", "lr": 1e-3}, "updates": 20, "minibatch_size": 512, "max_grad_norm": None},
    },
    sb3_algo="TRPO",
    sb3={"n_steps": 512, "batch_size": 512, "gamma": 0.99, "gae_lambda": 0.98, "learning_rate": 1e-3,
         "n_critic_updates": 20, "cg_max_steps": 15, "cg_damping": 1e-3, "target_kl": 0.01,
         "line_search_shrinking_factor": 0.8, "line_search_max_iter": 10, "normalize_advantage": True},
    # 20 critic epochs of 2 minibatches and one actor gradient per update.
    floor={"grad_steps": num_updates(100_000, 1024) * 41, "grad_batch": 512},
)  # fmt: skip
PPO_PENDULUM = Row(
    name="ppo_pendulum", env_id="Pendulum-v1", total_steps=200_000, num_envs=4, gamma=0.9,
    rlopt={
        "agent": "ppo", "gamma": 0.9, "gae_lambda": 0.95, "entropy_coef": 0.0,
        "env": {"id": "Pendulum-v1", "num_envs": 4}, "rollout": {"n_steps": 512},
        "actor": {"optim": {"name": "adam", "lr": 1e-3, "eps": 1e-5}, "schedule": {"name": "linear"},
                  "log_std_init": -0.5, "max_grad_norm": 0.5},
        "critic": {"optim": {"name": "adam", "lr": 1e-3, "eps": 1e-5}, "schedule": {"name": "linear"}, "max_grad_norm": 0.5},
        "ppo": {"epochs": 10, "minibatch_size": 64, "clip": 0.2, "normalize_advantage": True},
    },
    sb3_algo="PPO",
    sb3={"n_steps": 512, "batch_size": 64, "n_epochs": 10, "gamma": 0.9, "gae_lambda": 0.95, "ent_coef": 0.0,
         "learning_rate": "linear:1e-3", "clip_range": 0.2, "max_grad_norm": 0.5,
         "policy_kwargs": {"log_std_init": -0.5}},
)  # fmt: skip
TRPO_PENDULUM = Row(
    name="trpo_pendulum", env_id="Pendulum-v1", total_steps=200_000, num_envs=4, gamma=0.9, normalize_reward=True,
    rlopt={
        "agent": "trpo", "gamma": 0.9, "gae_lambda": 0.95,
        "env": {"id": "Pendulum-v1", "num_envs": 4, "normalize_reward": True, "reward_clip": 10.0},
        "rollout": {"n_steps": 512}, "pg": {"normalize_advantage": True},
        "actor": {"log_std_init": -0.5,
                  "optim": {"name": "trust_region", "max_kl": 0.02, "cg_iters": 15, "cg_damping": 0.1,
                            "line_search": True, "backtrack_coef": 0.8, "max_backtracks": 10}},
        "critic": {"optim": {"name": "adam", "lr": 1e-3}, "updates": 20, "minibatch_size": 256, "max_grad_norm": None},
    },
    sb3_algo="TRPO",
    sb3={"n_steps": 512, "batch_size": 256, "gamma": 0.9, "gae_lambda": 0.95, "learning_rate": 1e-3,
         "n_critic_updates": 20, "cg_max_steps": 15, "cg_damping": 0.1, "target_kl": 0.02,
         "line_search_shrinking_factor": 0.8, "line_search_max_iter": 10, "normalize_advantage": True,
         "policy_kwargs": {"log_std_init": -0.5}},
)  # fmt: skip
ROWS = {row.name: row for row in (PPO_CARTPOLE, A2C_CARTPOLE, TRPO_CARTPOLE, PPO_PENDULUM, TRPO_PENDULUM)}
