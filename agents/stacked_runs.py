"""``rlopt train CONFIG --seeds 0-9 [--run-dir DIR]`` (issue 17): the seeds of one config trained in
one process (:class:`rlopt.stacked.StackedTraining`), each writing ``DIR/seed_<k>/`` as its lone
run would (:mod:`rlopt.stacked.runs`). The CLI's refusals first, one line each, nothing written:
bad ``--seeds`` syntax, a duplicate seed, more than 256 seeds, a bad config, ``seed=`` among the
overrides, ``--seeds`` with ``--resume`` or ``--total-steps``, a non-empty DIR (what has no stacked
update -- ACKTR, K-FAC, ... -- runs each seed's lone update inside the stack, said in a note:
:mod:`rlopt.stacked.per_seed`). ``rlopt train --resume DIR [--total-steps N]`` continues every
seed from the newest step all of them checkpointed (:mod:`rlopt.stacked.resume`), to N env steps
per seed with the schedules re-fitted, as a lone run's extension.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlopt.errors import ConfigError
from rlopt.files import lock_or_refuse
from rlopt.stacked.runs import (
    STACKED_FILE,
    check_new_stack_dir,
    default_stack_dir,
    parse_seeds,
    read_stack_seeds,
    seed_dir,
)


def stacked_train(args: argparse.Namespace) -> int:
    """``rlopt train`` with ``--seeds``, or ``--resume`` of a stacked run; the exit code."""
    if getattr(args, "sweep_stack", None) is not None:
        return sweep_stack(args)
    if args.resume is not None:
        if args.seeds is not None:
            raise ConfigError("--seeds starts a new stacked run and cannot be combined with --resume")
        return _resume(args, Path(args.resume))
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
        lock_or_refuse(Path(args.run_dir), check_only=True)
    return _train_checked(args, seeds)


def _resume(args: argparse.Namespace, run_dir: Path) -> int:
    """``rlopt train --resume DIR`` of a stack: every seed from the newest step all completed."""
    from agents.stacked import build_stacked
    from rlopt.config import load_config
    from rlopt.run_files import CONFIG_FILE, SUMMARY_FILE
    from rlopt.stacked.resume import common_checkpoint_step, extend_stack
    from rlopt.stacked.training import StackedTraining

    if not (run_dir / STACKED_FILE).is_file():
        raise ConfigError(f"--resume: {run_dir} is one seed of the stacked run {run_dir.parent}; "
                          f"resume the whole stack: rlopt train --resume {run_dir.parent}")  # fmt: skip
    if args.config or args.overrides or args.run_dir:
        raise ConfigError("--resume takes only the run directory (and --total-steps); its seeds' config.yaml are reused")
    lock_or_refuse(run_dir, check_only=True)
    seeds = read_stack_seeds(run_dir)
    config_file = seed_dir(run_dir, seeds[0]) / CONFIG_FILE
    if not config_file.is_file():
        raise ConfigError(f"--resume: {config_file} is missing; pass a directory written by rlopt train --seeds")
    file_cfg = load_config(config_file)
    cfg = file_cfg if args.total_steps is None else load_config(config_file, [f"total_steps={args.total_steps}"])
    done = common_checkpoint_step([seed_dir(run_dir, s) for s in seeds]) or 0
    if cfg.total_steps < done:
        raise ConfigError(f"--total-steps {cfg.total_steps} is below the {done} env steps {run_dir} has already "
                          f"trained; give N >= {done}")  # fmt: skip
    training = StackedTraining(build_stacked(cfg, seeds), run_dir=run_dir, progress=not args.no_progress)
    try:
        steps = training.resume()
        previous = (training.resumed_total_steps or file_cfg.total_steps) if steps else cfg.total_steps
        extension = extend_stack(training.learner, previous, steps)
        lock = lock_or_refuse(run_dir)
    except BaseException:
        training.collector.close()
        raise
    try:
        print(f"resuming {run_dir} ({len(seeds)} seeds) from {steps} env steps", file=sys.stderr)
        if extension:
            print(extension, file=sys.stderr)
            for seed in seeds:  # not finished until they reach the new total
                (seed_dir(run_dir, seed) / SUMMARY_FILE).unlink(missing_ok=True)
        summaries = training.train()
    finally:
        if lock is not None:
            lock.close()
    return _report(summaries, run_dir)


def sweep_stack(args: argparse.Namespace) -> int:
    """A sweep's stacked process (:mod:`rlopt.sweep.stacking`): ``rlopt train CONFIG --seeds S
    --run-dir ARM_DIR --sweep-stack start|resume``. CONFIG is one seed's resolved config; each seed
    writes ``ARM_DIR/seed_<k>/`` (new and empty to start; its checkpoints to resume, from the newest
    step all of them have) and holds its lock; ARM_DIR gets no ``stacked.json`` (it is the sweep's)."""
    from agents.stacked import build_stacked
    from rlopt.config import load_config
    from rlopt.files import check_new_run_dir
    from rlopt.stacked.training import StackedTraining

    if args.seeds is None or args.run_dir is None or args.config is None or args.resume or args.total_steps:
        raise ConfigError("--sweep-stack is the sweep's: CONFIG --seeds S --run-dir ARM_DIR, no --resume/--total-steps")
    seeds, arm_dir = parse_seeds(args.seeds), Path(args.run_dir)
    dirs = [seed_dir(arm_dir, seed) for seed in seeds]
    for path in dirs:
        if args.sweep_stack == "start":
            check_new_run_dir(path, "--run-dir", "; the sweep starts a seed in an empty directory")
        lock_or_refuse(path, check_only=True)
    training = StackedTraining(build_stacked(load_config(args.config, args.overrides), seeds), run_dir=arm_dir,
                               progress=not args.no_progress, mark=False)  # fmt: skip
    locks = []
    try:
        steps = training.resume() if args.sweep_stack == "resume" else 0
        for path in dirs:
            path.mkdir(parents=True, exist_ok=True)
            locks.append(lock_or_refuse(path))
    except BaseException:
        training.collector.close()
        for lock in locks:
            if lock is not None:
                lock.close()
        raise
    try:
        print(f"{args.sweep_stack} {len(seeds)} seeds {args.seeds} in {arm_dir} from {steps} env steps", file=sys.stderr)
        summaries = training.train()
    finally:
        for lock in locks:
            if lock is not None:
                lock.close()
    return _report(summaries, arm_dir)


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
    if learner.per_seed is not None:
        notices.append(f"the seeds' rollouts are stacked, each seed's update runs alone: {learner.per_seed}")
    for notice in notices:
        print(f"rlopt: note: {notice}", file=sys.stderr)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--run-dir: cannot create {run_dir} ({err.strerror or err})") from None
    lock = lock_or_refuse(run_dir)
    try:
        check_new_stack_dir(run_dir)  # again under the lock: another process may have won the race
        summaries = StackedTraining(learner, run_dir=run_dir, progress=not args.no_progress).train()
    finally:
        if lock is not None:
            lock.close()
    return _report(summaries, run_dir)


def _report(summaries: list[dict], run_dir: Path) -> int:
    """Print one summary line per seed (stdout), a warning for skipped updates and where the runs are."""
    for summary in summaries:
        print(json.dumps(summary, allow_nan=False))
    skipped = [s["seed"] for s in summaries if s["skipped_updates"]]
    if skipped:
        print(f"rlopt: warning: seeds {skipped} skipped updates (non-finite values; the weights never took them): "
              "see skipped_updates in their summary.json", file=sys.stderr)  # fmt: skip
    print(f"{len(summaries)} runs written to {run_dir}/seed_<k> "
          f"(tensorboard --logdir {run_dir})", file=sys.stderr)  # fmt: skip
    return 0
