"""rlopt against Stable-Baselines3 / sb3-contrib at identical hyper-parameters, side by side (issue 13).

Every row is trained by both libraries in fresh processes, alternately (rlopt first on even
repetitions, SB3 first on odd ones), one torch thread each, with the same number of deterministic
evaluation episodes. Measured per run:

* ``wall``: the whole process, from launch to exit (imports, env creation, training, evaluation);
* ``learn``: the training loop only (SB3: around ``model.learn``; rlopt: ``summary.json``'s
  ``learn_seconds`` if present, else its ``wall_seconds`` = rollouts + updates, without TensorBoard
  writes, progress bar and checkpoints), and SPS = env steps / learn;
* ``rss``: the child's peak resident set size (``wait4``'s ``ru_maxrss``);
* ``return``: mean return of the final deterministic evaluation.

rlopt runs as ``python -m rlopt train CONFIG`` with its defaults (progress bar and TensorBoard
logging on); SB3 runs with its own defaults (no progress bar, no TensorBoard).

**The floor** (CartPole rows): the work no implementation can avoid, in one process after its
imports — stepping rlopt's vector env with random actions for the same number of env steps, one
forward of the actor per vector step, and the same number of Adam steps (forward, backward, step)
on the same network sizes and batch sizes as the algorithm's gradient steps. The table reports
rlopt's learn loop as a multiple of it.

``--scaling`` adds rlopt's PPO-CartPole SPS against ``env.num_envs`` at a fixed batch of 256 and
against the hidden width.

**Stacked seeds** (issue 17, ``--stacked-ks``/``--stacked-rows``): per K, ``rlopt train CONFIG --seeds``
next to the lone run and SB3 (``scripts/bench_stacked.py``'s ``measure_stacked``; "refused" if the stack refuses).

    pip install -e ".[bench]"
    python scripts/bench_vs_sb3.py [--reps 3] [--rows ppo_cartpole,a2c_cartpole] [--scaling] [--stacked-ks 1,4,10,20]
        [--stacked-rows ppo_cartpole,a2c_cartpole,trpo_cartpole | none] [--out benchmarks/speed.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_rows import PPO_CARTPOLE, ROWS, Row, num_updates  # noqa: E402 (ROWS, Row: also this script's interface)
from bench_stacked import STACKED_KS, measure_stacked, stacked_arguments, stacked_section  # noqa: E402

EVAL_EPISODES = 10
"""Deterministic evaluation episodes at the end of every run, on both sides (``--eval-episodes``; 10
leave Pendulum's returns to chance: seeds 0–3 of PPO score −118…−218 on SB3's side with 10 and −164…−204 with 100)."""


# ----------------------------------------------------------------------------- children
class LinearSchedule:
    """SB3 schedule: ``value · progress_remaining`` (1 → 0), i.e. rlopt's ``{name: linear}``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, progress_remaining: float) -> float:
        return self.value * progress_remaining


def sb3_child(row: Row, seed: int, episodes: int = EVAL_EPISODES) -> dict[str, Any]:
    """Train and evaluate ``row`` with SB3 in this process; returns the measurements."""
    import torch

    torch.set_num_threads(1)
    import sb3_contrib
    import stable_baselines3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    algo = getattr(sb3_contrib if row.sb3_algo == "TRPO" else stable_baselines3, row.sb3_algo)
    kwargs = {key: LinearSchedule(float(value.split(":")[1])) if isinstance(value, str) and value.startswith("linear:")
              else value for key, value in row.sb3.items()}  # fmt: skip
    env = make_vec_env(row.env_id, n_envs=row.num_envs, seed=seed)
    if row.normalize_reward:
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=row.gamma, clip_reward=10.0)
    model = algo("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    started = time.perf_counter()
    model.learn(total_timesteps=row.total_steps)
    learn = time.perf_counter() - started
    eval_env = make_vec_env(row.env_id, n_envs=1, seed=seed + 10_000)
    mean, _ = evaluate_policy(model.policy, eval_env, n_eval_episodes=episodes, deterministic=True)
    return {"learn_seconds": learn, "env_steps": int(model.num_timesteps), "eval_return": float(mean)}


def floor_child(row: Row) -> dict[str, Any]:
    """The unavoidable work of ``row`` (module docstring), timed after the imports."""
    import numpy as np
    import torch
    from torch import nn

    from rlopt.envs import make_vec_env

    torch.set_num_threads(1)
    envs = make_vec_env(row.env_id, row.num_envs, seed=0)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    n_actions = int(envs.single_action_space.n)

    def mlp(out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, out))

    actor, critic = mlp(n_actions), mlp(1)
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=1e-4)
    batch = torch.randn(row.floor["grad_batch"], obs_dim)
    started = time.perf_counter()
    obs, _ = envs.reset(seed=0)
    for _ in range(num_updates(row.total_steps, row.num_envs)):
        with torch.inference_mode():
            actor(torch.as_tensor(obs))
        obs, *_ = envs.step(envs.action_space.sample())
    rollout = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(row.floor["grad_steps"]):
        loss = actor(batch).square().mean() + critic(batch).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    update = time.perf_counter() - started
    return {"rollout_seconds": rollout, "update_seconds": update, "floor_seconds": rollout + update}


FIRST_STEP_PROBE = (
    "import sys, time\n"
    "import rlopt.rollout as rollout\n"
    "def first_step(self, *args):\n"
    "    print(time.time() - float(sys.argv[1]), flush=True)\n"
    "    raise SystemExit(0)\n"
    "rollout.RolloutCollector.collect = first_step\n"
    "from rlopt.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)
"""``rlopt train`` whose first ``collect`` prints the seconds since the launch time in argv[1] and exits."""


def startup_lines(work: Path, reps: int = 5) -> list[str]:
    """Medians of ``rlopt --help`` and of launch → first env step of ``rlopt train ppo_cartpole``."""
    helps, firsts = [], []
    for rep in range(reps):
        helps.append(run_child([sys.executable, "-m", "rlopt", "--help"])[0])
        launched = time.time()
        _, _, out = run_child([sys.executable, "-c", FIRST_STEP_PROBE, repr(launched), "train", "ppo_cartpole",
                               "--run-dir", str(work / f"startup-{rep}"), "--no-progress"])  # fmt: skip
        firsts.append(float(out.strip().splitlines()[-1]))
    return ["", f"Startup (median of {reps}): `rlopt --help` {statistics.median(helps):.2f} s; "
            f"`rlopt train ppo_cartpole` launch → first env step {statistics.median(firsts):.2f} s."]  # fmt: skip


def rlopt_config(
    row: Row, seed: int, overrides: dict[str, Any] | None = None, episodes: int = EVAL_EPISODES
) -> dict[str, Any]:
    """The rlopt YAML of ``row`` at ``seed``."""
    config = json.loads(json.dumps(row.rlopt))
    config.update(total_steps=row.total_steps, seed=seed, eval={"episodes": episodes}, threads=1, device="cpu")
    for dotted, value in (overrides or {}).items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


# ----------------------------------------------------------------------------- parent
def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``argv``; returns (whole-process seconds, peak RSS in MiB, stdout). Raises on failure."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}")
    return wall, usage.ru_maxrss / 1024, text


def measure_rlopt(
    row: Row, seed: int, work: Path, overrides: dict[str, Any] | None = None, episodes: int = EVAL_EPISODES
) -> dict[str, Any]:
    config = work / f"{row.name}-{seed}-{len(list(work.iterdir()))}.yaml"
    config.write_text(yaml.safe_dump(rlopt_config(row, seed, overrides, episodes)))
    run_dir = config.with_suffix("")
    wall, rss, _ = run_child([sys.executable, "-m", "rlopt", "train", str(config), "--run-dir", str(run_dir)])
    summary = json.loads((run_dir / "summary.json").read_text())
    learn = summary.get("learn_seconds", summary["wall_seconds"])
    return {"wall": wall, "learn": learn, "sps": summary["total_steps"] / learn, "rss": rss,
            "return": summary["eval_return_mean"]}  # fmt: skip


def measure_sb3(row: Row, seed: int, episodes: int = EVAL_EPISODES) -> dict[str, Any]:
    wall, rss, out = run_child([sys.executable, __file__, "--child", "sb3", "--rows", row.name, "--seed", str(seed),
                                "--eval-episodes", str(episodes)])  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall": wall, "learn": result["learn_seconds"], "sps": result["env_steps"] / result["learn_seconds"],
            "rss": rss, "return": result["eval_return"]}  # fmt: skip


def measure_floor(row: Row) -> float:
    _, _, out = run_child([sys.executable, __file__, "--child", "floor", "--rows", row.name])
    return json.loads(out.strip().splitlines()[-1])["floor_seconds"]


def median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(result[key] for result in results)


def speed_table(rows: list[Row], results: dict[str, dict[str, list]], floors: dict[str, list[float]]) -> list[str]:
    lines = [
        "| row | steps | rlopt wall s | SB3 wall s | **wall ratio** | rlopt learn s | SB3 learn s | learn ratio "
        "| rlopt SPS | SB3 SPS | floor s | rlopt learn / floor | rlopt RSS MiB | SB3 RSS MiB | rlopt return | SB3 return |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, theirs = results[row.name]["rlopt"], results[row.name]["sb3"]
        floor = statistics.median(floors[row.name]) if floors.get(row.name) else None
        cells = [
            row.name, f"{row.total_steps:,}",
            f"{median(ours, 'wall'):.1f}", f"{median(theirs, 'wall'):.1f}",
            f"**{median(theirs, 'wall') / median(ours, 'wall'):.2f}×**",
            f"{median(ours, 'learn'):.1f}", f"{median(theirs, 'learn'):.1f}",
            f"{median(theirs, 'learn') / median(ours, 'learn'):.2f}×",
            f"{median(ours, 'sps'):,.0f}", f"{median(theirs, 'sps'):,.0f}",
            f"{floor:.1f}" if floor else "–", f"{median(ours, 'learn') / floor:.2f}×" if floor else "–",
            f"{median(ours, 'rss'):.0f}", f"{median(theirs, 'rss'):.0f}",
            " / ".join(f"{r['return']:.0f}" for r in ours), " / ".join(f"{r['return']:.0f}" for r in theirs),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def scaling_tables(work: Path) -> list[str]:
    """rlopt PPO CartPole: SPS against num_envs at a batch of 256, and against the hidden width."""
    steps = 51_200
    row = Row(**{**PPO_CARTPOLE.__dict__, "total_steps": steps})
    lines = ["", f"rlopt PPO CartPole-v1, {steps:,} steps, batch 256 (num_envs × n_steps), 20 epochs of one minibatch:", "",
             "| env.num_envs | rollout.n_steps | learn s | SPS |", "|---|---|---|---|"]  # fmt: skip
    for num_envs in (1, 8, 64, 256):
        result = measure_rlopt(row, 0, work, {"env.num_envs": num_envs, "rollout.n_steps": 256 // num_envs})
        lines.append(f"| {num_envs} | {256 // num_envs} | {result['learn']:.1f} | {result['sps']:,.0f} |")
    lines += ["", "| hidden | learn s | SPS |", "|---|---|---|"]
    for width in (64, 256):
        result = measure_rlopt(row, 0, work, {"actor.hidden": [width, width], "critic.hidden": [width, width]})
        lines.append(f"| {width}×{width} | {result['learn']:.1f} | {result['sps']:,.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows of {', '.join(ROWS)}")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of every row (medians are reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first repetition (rep i uses seed + i)")
    parser.add_argument("--scaling", action="store_true", help="also measure rlopt's scaling tables")
    parser.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES, help="evaluation episodes per run, both sides")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "speed.md", help="markdown report")
    parser.add_argument("--stacked-ks", default=",".join(map(str, STACKED_KS)), help="stack sizes K (1..256; empty: none)")
    parser.add_argument("--stacked-rows", default=None, help="rows also run stacked (default: the CartPole rows; none)")
    parser.add_argument("--child", choices=("sb3", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = [ROWS[name] for name in args.rows.split(",")]
    ks, stacked_rows = stacked_arguments(parser, args, rows, ROWS)
    if args.child == "sb3":
        print(json.dumps(sb3_child(rows[0], args.seed, args.eval_episodes)))
        return
    if args.child == "floor":
        print(json.dumps(floor_child(rows[0])))
        return

    results: dict[str, dict[str, list]] = {row.name: {"rlopt": [], "sb3": []} for row in rows}
    floors: dict[str, list[float]] = {}
    stacks: dict[str, dict[int, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_vs_sb3-") as tmp:
        work = Path(tmp)
        for rep in range(args.reps):
            seed = args.seed + rep
            for row in rows:
                sides = ("rlopt", "sb3") if rep % 2 == 0 else ("sb3", "rlopt")
                for side in sides:
                    result = (measure_rlopt(row, seed, work, episodes=args.eval_episodes) if side == "rlopt"
                              else measure_sb3(row, seed, args.eval_episodes))  # fmt: skip
                    results[row.name][side].append(result)
                    print(f"rep {rep} {row.name:14s} {side:5s} wall {result['wall']:6.1f} s  learn {result['learn']:6.1f} s"
                          f"  rss {result['rss']:5.0f} MiB  return {result['return']:8.1f}", flush=True)  # fmt: skip
                if row.floor:
                    floors.setdefault(row.name, []).append(measure_floor(row))
                    print(f"rep {rep} {row.name:14s} floor {floors[row.name][-1]:6.1f} s", flush=True)
                for k in (ks if rep % 2 == 0 else ks[::-1]) if row.name in stacked_rows else ():
                    result = measure_stacked(rlopt_config(row, seed, episodes=args.eval_episodes), k, seed, work)
                    stacks.setdefault(row.name, {}).setdefault(k, []).append(result)
                    print(f"rep {rep} {row.name:14s} K={k:<3d} {result}", flush=True)
        scaling = scaling_tables(work) if args.scaling else []
        startup = startup_lines(work)
    import torch

    header = [
        "# Speed: rlopt vs Stable-Baselines3 at identical hyper-parameters",
        "",
        f"`python scripts/bench_vs_sb3.py --reps {args.reps}{' --scaling' if args.scaling else ''}"
        f"{'' if args.eval_episodes == EVAL_EPISODES else f' --eval-episodes {args.eval_episodes}'}` on "
        f"{os.cpu_count()} cores, torch {torch.__version__}, one thread per run; medians over {args.reps} "
        f"repetition(s), seeds {args.seed}..{args.seed + args.reps - 1}; returns (mean of {args.eval_episodes} "
        "deterministic episodes) listed per repetition. "
        "Ratios are SB3 / rlopt (higher = rlopt faster). Hyper-parameters: `ROWS` in the script.",
        "",
    ]
    stacked = stacked_section(stacks, results, ks)
    text = "\n".join(header + speed_table(rows, results, floors) + startup + stacked + scaling) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
