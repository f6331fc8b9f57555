"""Driver overhead and pool speedup of ``rlopt sweep`` (issue 10, "Speed").

Runs the same N short A2C CartPole runs three ways and prints the wall times:

1. ``rlopt train`` N times, one after the other (the baseline);
2. ``rlopt sweep --workers 1``: overhead per run = (sweep - baseline) / N;
3. ``rlopt sweep --workers 2``: speedup = (2) / (1), target <= 0.6.

The sweep driver runs as its own process (its start-up counts), with the agents' config check.

    python scripts/bench_sweep.py [--runs 12] [--steps 4096] [--out /tmp/bench_sweep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DRIVER = (
    "import argparse, sys\n"
    "from agents import check_config\n"
    "from rlopt.sweep import add_sweep_parser, sweep_command\n"
    "parser = argparse.ArgumentParser(prog='rlopt')\n"
    "add_sweep_parser(parser.add_subparsers(dest='command'))\n"
    "sys.exit(sweep_command(parser.parse_args(sys.argv[1:]), check_config))\n"
)  # fmt: skip


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_sweep"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    overrides = {"total_steps": args.steps, "eval.episodes": 2, "env.num_envs": 2, "checkpoint.every_steps": 0}
    sweep_file = args.out / "bench.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "bench", "base": "a2c_cartpole", "set": overrides,
                                          "seeds": {"start": 0, "count": args.runs}}))  # fmt: skip
    dotlist = [f"{key}={value}" for key, value in overrides.items()]
    preset = str(ROOT / "configs" / "a2c_cartpole.yaml")
    train = sum(
        timed([sys.executable, "-m", "rlopt", "train", preset, *dotlist, f"seed={seed}",
               "--run-dir", str(args.out / "train" / f"seed_{seed}"), "--no-progress"])  # fmt: skip
        for seed in range(args.runs)
    )
    serial = timed([sys.executable, "-c", DRIVER, "sweep", str(sweep_file), "--out", str(args.out / "w1"), "--workers", "1"])
    pool = timed([sys.executable, "-c", DRIVER, "sweep", str(sweep_file), "--out", str(args.out / "w2"), "--workers", "2"])
    result = {
        "runs": args.runs,
        "total_steps": args.steps,
        "rlopt_train_serial_s": round(train, 2),
        "sweep_workers1_s": round(serial, 2),
        "sweep_workers2_s": round(pool, 2),
        "driver_overhead_per_run_s": round((serial - train) / args.runs, 3),
        "workers2_over_workers1": round(pool / serial, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
