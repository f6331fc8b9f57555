"""Host cost of the stacked collector per vector step: K seeds x N envs, a constant policy.

One thread; CPU seconds (``time.process_time``) of ``collect`` alone, lone ``RolloutCollector``
(K = 1 reference) vs ``StackedCollector`` over K collectors built by ``build_collectors``.
Prints µs per vector step for the whole stack and per seed (issue 17's env-side budget).
"""

from __future__ import annotations

import argparse
import time

import torch
from gymnasium import spaces

from rlopt.config import load_config
from rlopt.stacked.rollout import build_collector, build_collectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--preset", default="ppo_cartpole")
    parser.add_argument("--ks", default="1,4,10,20")
    parser.add_argument("--rollouts", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("overrides", nargs="*", help="config overrides (env.normalize_obs=true, ...)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.preset, args.overrides)
    n_steps, num_envs = cfg.rollout.n_steps, cfg.env.num_envs

    def timed(collect) -> float:
        collect()  # warm-up (first reset)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            for _ in range(args.rollouts):
                collect()
            best = min(best, time.process_time() - start)
        return best / (args.rollouts * n_steps) * 1e6

    def constant_outputs(*lead: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Action 0 (Discrete) or the zero vector (Box), log-prob 0, value 0."""
        space = lone.action_space
        if isinstance(space, spaces.Box):
            actions = torch.zeros(*lead, *space.shape)
        else:
            actions = torch.zeros(*lead, dtype=torch.int64)
        return actions, torch.zeros(*lead), torch.zeros(*lead)

    with torch.no_grad():
        lone = build_collector(cfg, 0, None)
        zeros = constant_outputs(num_envs)
        lone_us = timed(lambda: lone.collect(lambda obs: zeros, lambda obs: zeros[1]))
        print(f"{cfg.env.id} N={num_envs} T={n_steps}: lone collector {lone_us:.1f} µs per vector step")
        for k in (int(v) for v in args.ks.split(",")):
            stack = build_collectors(cfg, range(k))
            out = constant_outputs(k, num_envs)
            us = timed(lambda: stack.collect(lambda obs: out, lambda obs: out[1]))
            print(f"K={k:3d}: {us:8.1f} µs per vector step, {us / k:6.1f} µs per seed "
                  f"({us / k / num_envs:5.2f} µs per env step)", flush=True)  # fmt: skip
            stack.close()


if __name__ == "__main__":
    main()
