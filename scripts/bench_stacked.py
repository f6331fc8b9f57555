"""Stacked seeds against lone runs, side by side (issue 17): per-seed wall time and final returns.

Each measurement is a fresh process, one torch thread, the rl-zoo PPO CartPole settings of
``scripts/bench_vs_sb3.py``'s PPO row, ``--steps`` env steps per seed, no run directory (no logs,
no checkpoints on either side), then ``--eval-episodes`` deterministic evaluation episodes per seed.
Per round, in turn: a lone rlopt run (``Trainer``) of seed 0 and one stack for each K (seeds
0..K-1, ``agents.stacked.build_stacked``); rounds alternate the order. Reported per K: the median
over rounds of the process wall time per seed, of its CPU time per seed (what a busy shared machine
distorts least) and of the training loop's wall time per seed, their ratio to the lone run's, and
every seed's final evaluation return.

    python scripts/bench_stacked.py [--ks 1 4 10] [--rounds 1] [--steps 100000] [--eval-episodes 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_vs_sb3 import PPO_CARTPOLE  # noqa: E402  (the same hyper-parameters as the SB3 comparison)

MAX_K = 64
"""At most this many seeds per stack here (each seed holds its envs and networks)."""

_CHILD = """
import json, sys, time
start = float(sys.argv[1])
from rlopt.config import load_config
cfg = load_config(None, [], values=json.loads(sys.argv[2]))
k = int(sys.argv[3])
if k == 0:
    from agents import build_agent
    from rlopt.trainer import Trainer
    agent = build_agent(cfg)
    summary = Trainer(agent, run_dir=None, progress=False).train(cfg.total_steps)
    out = {"learn": summary["wall_seconds"], "returns": [summary["eval_return_mean"]]}
else:
    from agents.stacked import build_stacked
    from rlopt.stacked import StackedTraining
    training = StackedTraining(build_stacked(cfg, range(k)))
    summaries = training.train()
    out = {"learn": training.wall_seconds, "returns": [s["eval_return_mean"] for s in summaries]}
import resource
usage = resource.getrusage(resource.RUSAGE_SELF)
out["wall"] = time.time() - start
out["cpu"] = usage.ru_utime + usage.ru_stime
print(json.dumps(out))
"""


def run(values: dict, k: int) -> dict:
    """One fresh process: a lone run (``k`` = 0) or a stack of seeds 0..k-1; its measurements."""
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", _CHILD, repr(start), json.dumps(values), str(k)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"bench_stacked: K={k} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 10], help="stack sizes (default 1 4 10)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1)")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per seed (default 100000)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per seed (default 10)")
    args = parser.parse_args()
    if any(k < 1 or k > MAX_K for k in args.ks):
        parser.error(f"--ks: each K must be in 1..{MAX_K}")
    if args.rounds < 1 or args.steps < 1 or args.eval_episodes < 1:
        parser.error("--rounds, --steps and --eval-episodes must be >= 1")
    values = {**PPO_CARTPOLE.rlopt, "total_steps": args.steps, "seed": 0, "threads": 1, "device": "cpu",
              "eval": {"episodes": args.eval_episodes}}  # fmt: skip
    arms = [0, *args.ks]  # 0: the lone run
    results: dict[int, list[dict]] = {k: [] for k in arms}
    for r in range(args.rounds):
        for k in arms if r % 2 == 0 else arms[::-1]:
            results[k].append(run(values, k))
            print(f"round {r + 1} {'lone' if k == 0 else f'K={k}'}: {results[k][-1]}", file=sys.stderr, flush=True)
    lone_wall = statistics.median(m["wall"] for m in results[0])
    lone_learn = statistics.median(m["learn"] for m in results[0])
    lone_cpu = statistics.median(m["cpu"] for m in results[0])
    print(f"PPO CartPole-v1 (rl-zoo), {args.steps:,} steps per seed, one thread, {args.rounds} round(s); "
          f"per seed: process wall, process CPU and training-loop wall, and the lone run's over it")  # fmt: skip
    print("| run | wall s/seed | × vs lone | CPU s/seed | × vs lone | loop s/seed | × vs lone | final eval returns |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for k in arms:
        n = 1 if k == 0 else k
        wall, cpu, learn = (statistics.median(m[key] for m in results[k]) / n for key in ("wall", "cpu", "learn"))
        returns = " ".join(f"{x:.0f}" for m in results[k] for x in m["returns"])
        print(f"| {'lone rlopt' if k == 0 else f'stacked K={k}'} | {wall:.1f} | {lone_wall / wall:.2f} | {cpu:.1f} | "
              f"{lone_cpu / cpu:.2f} | {learn:.1f} | {lone_learn / learn:.2f} | {returns} |")  # fmt: skip


if __name__ == "__main__":
    main()
