"""``rlopt train CONFIG --seeds 0-9 [--run-dir DIR]`` (issue 17): the seeds of one config trained in
one process (:class:`rlopt.stacked.StackedTraining`), each writing ``DIR/seed_<k>/`` as its lone
run would (:mod:`rlopt.stacked.runs`). The CLI's refusals first, one line each, nothing written:
bad ``--seeds`` syntax, a duplicate seed, more than 256 seeds, an agent or optimizer the stack does
not run yet (NPG, TRPO, ACKTR; LBFGS, K-FAC), ``seed=`` among the overrides, ``--seeds`` with
``--resume`` or ``--total-steps``, a non-empty DIR; ``--resume`` of a stacked run is refused too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlopt.errors import ConfigError
from rlopt.stacked.runs import (
    check_new_stack_dir,
    check_not_stacked,
    default_stack_dir,
    lock_stack_dir,
    parse_seeds,
    seed_dir,
)


def stacked_train(args: argparse.Namespace) -> int:
    """``rlopt train`` with ``--seeds`` (or ``--resume`` of a stacked run: refused); the exit code."""
    if args.resume is not None:
        if args.seeds is not None:
            raise ConfigError("--seeds starts a new stacked run and cannot be combined with --resume")
        check_not_stacked(args.resume)
    seeds = parse_seeds(args.seeds)
    if args.total_steps is not None:
        raise ConfigError("--total-steps extends a run and needs --resume RUN_DIR; for a new run override total_steps=N")
    if args.run_dir is not None and not args.run_dir.strip():
        raise ConfigError('--run-dir: "" is no directory; give a path or leave --run-dir out')
    if args.config is None:
        raise ConfigError("train: a config file is required, e.g. rlopt train ppo_cartpole --seeds 0-9")
    if any(o.split("=", 1)[0].strip() == "seed" for o in args.overrides):
        raise ConfigError("seed: given by --seeds; leave the seed=... override out")
    if args.run_dir:
        check_new_stack_dir(Path(args.run_dir))
        lock_stack_dir(Path(args.run_dir), check_only=True)
    return _train_checked(args, seeds)


def _train_checked(args: argparse.Namespace, seeds: list[int]) -> int:
    """Build (every refusal left happens here), then lock the run dir, train, print the summaries."""
    from agents.stacked import build_stacked
    from rlopt.config import load_config
    from rlopt.envs import probe_env
    from rlopt.stacked.learner import check_stackable
    from rlopt.stacked.training import StackedTraining

    notices: list[str] = []
    cfg = load_config(args.config, args.overrides, notices=notices)
    check_stackable(cfg, seeds)  # before K agents are built
    run_dir = Path(args.run_dir) if args.run_dir else default_stack_dir(cfg.agent, cfg.env.id)
    check_new_stack_dir(run_dir)
    learner = build_stacked(cfg, seeds)
    probe_env(cfg.env.id, seeds[0])
    for notice in notices:
        print(f"rlopt: note: {notice}", file=sys.stderr)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--run-dir: cannot create {run_dir} ({err.strerror or err})") from None
    lock = lock_stack_dir(run_dir)
    try:
        check_new_stack_dir(run_dir)  # again under the lock: another process may have won the race
        summaries = StackedTraining(learner, run_dir=run_dir, progress=not args.no_progress).train()
    finally:
        if lock is not None:
            lock.close()
    for summary in summaries:
        print(json.dumps(summary, allow_nan=False))
    skipped = [s["seed"] for s in summaries if s["skipped_updates"]]
    if skipped:
        print(f"rlopt: warning: seeds {skipped} skipped updates (non-finite values; the weights never took them): "
              "see skipped_updates in their summary.json", file=sys.stderr)  # fmt: skip
    print(f"{len(seeds)} runs written to {seed_dir(run_dir, seeds[0]).parent}/seed_<k> "
          f"(tensorboard --logdir {run_dir})", file=sys.stderr)  # fmt: skip
    return 0
