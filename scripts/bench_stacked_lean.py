"""A lean stack (issue 17): K seeds of a CartPole row in plain eager PyTorch, whole process, next to rlopt.

The issue's prototype rebuilt as a yardstick for ``rlopt train --seeds``: what a stack costs without
rlopt's per-seed machinery, timed as the stacks are (a fresh process, one torch thread, wall from
launch to exit, imports included) next to a lone ``rlopt train`` of the row and rlopt's own stack
(``rlopt train --seeds 0-(K-1)``), alternately:

* **bare**: K × ``num_envs`` CartPoles stepped as one numpy array (:class:`rlopt.stacked.cartpole.StackedCartPole`),
  one stacked actor and critic forward per env step (``baddbmm`` on ``[K, ...]`` weights, one leaf per
  layer, tanh as 2σ(2x) − 1), one ``multinomial`` for every seed's actions, GAE on ``[K, N]``, then the
  row's gradient steps through autograd's graph (A2C: one RMSprop step of actor and critic on the
  40-row batch; PPO: 20 Adam steps on the 256-row batch, clipped surrogate) with per-seed clipping.
  No per-seed random streams, no statistics, no files, no rollback, no resume.
* **+ logs**: bare, plus what a run directory holds per update and seed -- the KL and explained
  variance after the update (one more actor and critic forward) and the 14 scalars of a lone run's
  TensorBoard events (``SummaryWriter``'s file, each seed's events appended in bursts as rlopt's stacks
  write them: :func:`rlopt.event_crc.append_events`) -- then each seed's final weights.
* **+ streams**: + logs, plus each seed's own random stream, as the issue asks of a stack: every seed's
  actions drawn from its own generator (``multinomial``'s draw, argmax p/q with q ~ Exp(1): one
  ``exponential_`` per seed and step, one ``argmax`` for all, as rlopt's stacks draw) and, per epoch, each
  seed's minibatch permutation (one ``randperm`` per seed). The cheapest eager form of the issue's
  requirements that this script knows, short of rollback, resume and checkpoints.

For PPO it is no floor: rlopt's own PPO stack is faster than the bare PPO here (its one-node tanh MLP
backward and fused Adam beat the plain graph). A2C's tiny updates are where the per-seed machinery shows:
there **+ streams** is the cheapest form of the issue's per-seed work this script knows
(``docs/performance.md#stacked``, "A2C's floor").

    python scripts/bench_stacked_lean.py [--rows a2c_cartpole,ppo_cartpole] [--ks 1,10] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_rows import ROWS, Row, num_updates  # noqa: E402

MAX_K = 64
"""At most this many seeds per lean stack (each seed holds its envs and networks)."""
SCALARS_PER_UPDATE = 14
"""TensorBoard scalars a lone A2C / PPO run writes per update (``actor/*``, ``critic/*``, ``time/sps``, ...)."""


VARIANTS = ("bare", "+ logs", "+ streams")
"""The lean stacks, each the one before plus more of a run's work (module docstring)."""


def lean_child(row: Row, k: int, level: int, work: str) -> None:
    """Train K seeds of ``row`` the lean way (module docstring); ``level``: index into :data:`VARIANTS`."""
    logs, streams = level >= 1, level >= 2
    import gymnasium as gym
    import numpy as np
    import torch

    from rlopt.stacked.cartpole import StackedCartPole

    torch.set_num_threads(1)
    torch.manual_seed(0)
    generators = [torch.Generator().manual_seed(seed) for seed in range(k)]
    n, steps = row.num_envs, int(row.rlopt["rollout"]["n_steps"])
    envs = [gym.make_vec(row.env_id, num_envs=n, vectorization_mode="vector_entry_point") for _ in range(k)]
    obs = np.stack([env.reset(seed=seed)[0] for seed, env in enumerate(envs)]).astype(np.float32)
    stacked_env = StackedCartPole(envs)
    stacked_env.begin()

    def layer(n_in: int, n_out: int) -> list[torch.Tensor]:
        return [(torch.randn(k, n_in, n_out) / n_in**0.5).requires_grad_(), torch.zeros(k, 1, n_out, requires_grad=True)]

    actor = layer(4, 64) + layer(64, 64) + layer(64, 2)
    critic = layer(4, 64) + layer(64, 64) + layer(64, 1)

    def mlp(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        for i in (0, 2):
            x = torch.baddbmm(params[i + 1], x, params[i], beta=2.0, alpha=2.0).sigmoid_().mul(2.0).sub(1.0)
        return torch.baddbmm(params[5], x, params[4])

    spec = row.rlopt["actor"]["optim"]
    if spec["name"] == "rmsprop":
        optimizer = torch.optim.RMSprop(actor + critic, lr=spec["lr"], alpha=spec["alpha"], eps=spec["eps"])
    else:
        optimizer = torch.optim.Adam(actor + critic, lr=spec["lr"], eps=spec["eps"])
    epochs = int(row.rlopt.get("ppo", {}).get("epochs", 1))
    gamma, lam = row.gamma, float(row.rlopt["gae_lambda"])
    writers = []
    if logs:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter

        from rlopt import event_crc

        event_crc.install()  # rlopt's numpy CRC-32C: the cheapest checksum of the event records
        writers = [SummaryWriter(os.path.join(work, f"seed_{seed}")) for seed in range(k)]
        pending: list[list[tuple[Any, int, float]]] = [[] for _ in range(k)]
    for update in range(num_updates(row.total_steps, n)):
        if update * n * steps >= row.total_steps:
            break
        batch_obs, batch_actions, batch_rewards, batch_values, batch_done = [], [], [], [], []
        with torch.no_grad():
            for _ in range(steps):
                x = torch.from_numpy(obs)
                logits, values = mlp(actor, x), mlp(critic, x).squeeze(-1)
                probs = torch.softmax(logits, -1)
                if streams:  # each seed's actions from its own generator: multinomial's own draw, argmax p / q
                    noise = torch.empty_like(probs)  # with q ~ Exp(1), one exponential_ per seed, one argmax for all
                    for s in range(k):
                        noise[s].exponential_(generator=generators[s])
                    actions = (probs / noise).argmax(-1)
                else:
                    actions = torch.multinomial(probs.view(-1, 2), 1).view(k, n)
                next_obs, rewards, terminated, truncated = stacked_env.step(actions.numpy())
                batch_obs.append(x), batch_actions.append(actions), batch_values.append(values)
                batch_rewards.append(torch.from_numpy(rewards)), batch_done.append(torch.from_numpy(terminated | truncated))
                obs = next_obs
            last = mlp(critic, torch.from_numpy(obs)).squeeze(-1)
            advantages, running = [], torch.zeros(k, n)
            for t in reversed(range(steps)):  # GAE (Schulman et al. 2016), eq. 16
                next_value = last if t == steps - 1 else batch_values[t + 1]
                not_done = (~batch_done[t]).float()
                delta = batch_rewards[t] + gamma * next_value * not_done - batch_values[t]
                running = delta + gamma * lam * not_done * running
                advantages.append(running)
            advantages = torch.stack(advantages[::-1], 1).reshape(k, -1)
            values = torch.stack(batch_values, 1).reshape(k, -1)
            returns = advantages + values
        x = torch.stack(batch_obs, 1).reshape(k, -1, 4)
        actions = torch.stack(batch_actions, 1).reshape(k, -1, 1)
        with torch.no_grad():
            old_log_probs = torch.log_softmax(mlp(actor, x), -1).gather(-1, actions).squeeze(-1)
        for _ in range(epochs):
            if streams:  # each seed's minibatch permutation (one minibatch: the batch in place, as rlopt's stacks)
                for generator in generators:
                    torch.randperm(x.shape[1], generator=generator)
            log_probs = torch.log_softmax(mlp(actor, x), -1).gather(-1, actions).squeeze(-1)
            if epochs > 1:  # PPO's clipped surrogate (Schulman et al. 2017), eq. 7
                ratio = (log_probs - old_log_probs).exp()
                adv = (advantages - advantages.mean(1, keepdim=True)) / (advantages.std(1, keepdim=True) + 1e-8)
                actor_loss = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean(1)
            else:
                actor_loss = -(log_probs * advantages).mean(1)
            critic_loss = (mlp(critic, x).squeeze(-1) - returns).square().mean(1)
            optimizer.zero_grad(set_to_none=True)
            (actor_loss + critic_loss).sum().backward()
            for params in (actor, critic):  # per-seed clipping to norm 0.5
                grads = [p.grad for p in params]
                norms = torch.stack([g.square().flatten(1).sum(1) for g in grads]).sum(0).sqrt()
                scale = (0.5 / (norms + 1e-6)).clamp(max=1.0)
                torch._foreach_mul_(grads, [scale.view(k, 1, 1)] * len(grads))
            optimizer.step()
        if logs:
            with torch.no_grad():
                new = torch.log_softmax(mlp(actor, x), -1)
                kl = (old_log_probs - new.gather(-1, actions).squeeze(-1)).mean(1)
                variance = 1 - (returns - mlp(critic, x).squeeze(-1)).var(1) / returns.var(1)
            table = torch.stack([actor_loss, critic_loss, kl, variance]).tolist()
            for seed, writer in enumerate(writers):
                values = [table[i % 4][seed] for i in range(SCALARS_PER_UPDATE)]
                summary = Summary(value=[Summary.Value(tag=f"lean/{i}", simple_value=v) for i, v in enumerate(values)])
                pending[seed].append((summary, (update + 1) * n * steps, time.time()))
                if len(pending[seed]) >= 1000:  # in bursts, as rlopt.stacked.runs writes them
                    write_events(writer, pending[seed])
    for seed, writer in enumerate(writers):
        write_events(writer, pending[seed])
        torch.save({"actor": [p[seed] for p in actor], "critic": [p[seed] for p in critic]},
                   os.path.join(work, f"seed_{seed}", "final.pt"))  # fmt: skip
        writer.close()


def write_events(writer: Any, pending: list[tuple[Any, int, float]]) -> None:
    """Append the ``(summary, step, wall_time)`` events to the writer's file and forget them."""
    from rlopt.event_crc import append_summaries

    append_summaries(writer.file_writer, pending)
    pending.clear()


def run(argv: list[str]) -> float:
    """Whole-process wall seconds of ``argv`` (raises on failure)."""
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def rlopt_wall(row: Row, work: Path, k: int = 0) -> float:
    """``rlopt train`` of ``row``, whole process: lone (``k = 0``, seed 0) or a stack of seeds 0..k-1
    (``--seeds``), progress bar and run directories on."""
    import yaml

    from bench_vs_sb3 import rlopt_config

    config = work / f"{row.name}-{len(list(work.iterdir()))}.yaml"
    config.write_text(yaml.safe_dump(rlopt_config(row, 0)))
    seeds = ["--seeds", f"0-{k - 1}"] if k else []
    return run([sys.executable, "-m", "rlopt", "train", str(config), *seeds, "--run-dir", str(config.with_suffix(""))])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="a2c_cartpole,ppo_cartpole", help="CartPole rows of bench_rows.py")
    parser.add_argument("--ks", default="1,10", help=f"stack sizes (1..{MAX_K})")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (1..20), alternating lone and lean runs")
    parser.add_argument("--child", nargs=3, metavar=("ROW", "K", "LEVEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, k, level = args.child
        with tempfile.TemporaryDirectory() as work:
            lean_child(ROWS[name], int(k), int(level), work)
        return
    rows = [name.strip() for name in args.rows.split(",") if name.strip()]
    for name in rows:
        if name not in ROWS or ROWS[name].env_id != "CartPole-v1":
            parser.error(f"--rows: {name!r} is not a CartPole row of bench_rows.py")
    ks = [int(k) for k in args.ks.split(",")]
    if any(not 1 <= k <= MAX_K for k in ks):
        parser.error(f"--ks: every K must be in 1..{MAX_K}, got {args.ks}")
    if not 1 <= args.reps <= 20:
        parser.error(f"--reps: must be in 1..20, got {args.reps}")
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        for rep in range(args.reps):
            for name in rows:
                results.setdefault((name, "lone"), []).append(rlopt_wall(ROWS[name], Path(work)))
                for k in ks if rep % 2 == 0 else ks[::-1]:
                    results.setdefault((name, f"{k}:rlopt"), []).append(rlopt_wall(ROWS[name], Path(work), k))
                    for level in range(len(VARIANTS)):
                        wall = run([sys.executable, __file__, "--child", name, str(k), str(level)])
                        results.setdefault((name, f"{k}:{level}"), []).append(wall)
    print("| row | run | process wall s | wall s per seed | lone / per seed |\n|---|---|---:|---:|---:|")
    for name in rows:
        lone = statistics.median(results[(name, "lone")])
        print(f"| {name} | lone rlopt | {lone:.1f} | {lone:.1f} | 1.00× |")
        for k in ks:
            wall = statistics.median(results[(name, f"{k}:rlopt")])
            print(f"| {name} | rlopt stack K={k} | {wall:.1f} | {wall / k:.2f} | **{lone / (wall / k):.2f}×** |")
            for level, label in enumerate(VARIANTS):
                wall = statistics.median(results[(name, f"{k}:{level}")])
                print(f"| {name} | lean K={k} {label} | {wall:.1f} | {wall / k:.2f} | **{lone / (wall / k):.2f}×** |")


if __name__ == "__main__":
    main()
