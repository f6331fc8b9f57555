"""CPU seconds of a stack's final evaluation: each seed's ``evaluate_episodes`` one after the other
vs ``evaluate_stacked`` (all seeds together), on the final weights of a stacked run.

    rlopt train configs/a2c_cartpole.yaml --seeds 0-9 --run-dir DIR
    python scripts/time_stacked_evaluation.py DIR --rounds 7

One thread; the two are interleaved per round and their results must be equal (else it stops).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from agents.stacked import build_stacked
from rlopt.checkpoint import load_checkpoint
from rlopt.config import load_config
from rlopt.evaluation import evaluate_episodes
from rlopt.run_files import list_checkpoints
from rlopt.stacked.evaluation import evaluate_stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("run_dir", type=Path, help="a stacked run's directory (seed_<k>/ inside)")
    parser.add_argument("--rounds", type=int, default=5, help="timings of each; medians are printed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dirs = sorted(args.run_dir.glob("seed_*"), key=lambda d: int(d.name.split("_")[1]))
    cfg = load_config(dirs[0] / "config.yaml")
    learner = build_stacked(cfg, [int(d.name.split("_")[1]) for d in dirs])
    for agent, folder in zip(learner.agents, dirs):
        agent.load_state_dict(load_checkpoint(list_checkpoints(folder)[-1])["agent"])
    episodes = cfg.eval.episodes
    seconds: dict[str, list[float]] = {"evaluate_episodes per seed": [], "evaluate_stacked": []}
    for _ in range(args.rounds):
        started = time.process_time()
        lone = [evaluate_episodes(agent, episodes, agent.cfg.seed) for agent in learner.agents]
        seconds["evaluate_episodes per seed"].append(time.process_time() - started)
        started = time.process_time()
        stacked = evaluate_stacked(learner, episodes)
        seconds["evaluate_stacked"].append(time.process_time() - started)
        if stacked != lone:
            raise SystemExit("evaluate_stacked differs from evaluate_episodes")
    print(f"{len(dirs)} seeds x {episodes} episodes, mean lengths {[r['episode_length'] for r in lone]}")
    for name, values in seconds.items():
        print(f"{name}: median {statistics.median(values):.3f} CPU s ({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
