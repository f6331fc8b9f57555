"""``rlopt`` command line: ``train``, ``eval``, ``config``, ``presets``, ``sweep`` and ``report`` (the top floor).

The only module of ``rlopt`` that imports ``agents``: it hands the agents' config check to the
sweep planner, which never imports them itself.

Bad input never produces a traceback: a :class:`ConfigError` prints one line to stderr and
exits with code 2 before any run directory is created.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Sequence

from rlopt.errors import ConfigError, Interrupted, NumericalFault
from rlopt.files import LOCK_FILE, RunDirLocked, check_run_dir_unlocked, lock_run_dir
from rlopt.report import add_report_parser, report_command
from rlopt.sweep import add_sweep_parser, sweep_command

if TYPE_CHECKING:
    from agents import Agent
    from rlopt.config import Config
    from rlopt.trainer import Trainer

EXIT_BAD_INPUT = 2
EXIT_FAULT = 3
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ConfigError (exit 2, one line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("rlopt").strip()  # "train", "eval" or "" for the top level
        raise ConfigError(f"{command}: {message}" if command else message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlopt", description="Policy-optimization agents on one optimizer layer.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train an agent from a YAML preset")
    train.add_argument("config", nargs="?", help="a preset's name (rlopt presets lists them) or a YAML file")
    train.add_argument("overrides", nargs="*", help="dotted overrides key=value, e.g. actor.optim.lr=1e-3")
    train.add_argument("--run-dir", help="where to write logs and checkpoints (default runs/<agent>-<env>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint")
    train.add_argument("--total-steps", type=int, metavar="N",
                       help="with --resume: continue the run to N env steps (extends a finished run; schedules re-fitted)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev = sub.add_parser("eval", help="evaluate a trained run deterministically")
    ev.add_argument("run_dir", help="a run directory written by rlopt train")
    ev.add_argument("--episodes", type=int, help="episodes (default: the run's eval.episodes)")
    ev.add_argument("--checkpoint", help="a checkpoint file (default: the newest in RUN_DIR/checkpoints)")
    ev.add_argument("--video", metavar="DIR", help="also record videos of the episodes into DIR")
    ev.add_argument("--device", help="evaluate on this device instead of the run's (e.g. cpu for a run trained on CUDA)")
    conf = sub.add_parser("config", help="print a preset's fully resolved config, or every key (--keys)")
    conf.add_argument("config", nargs="?", help="a preset's name (rlopt presets lists them) or a YAML file")
    conf.add_argument("overrides", nargs="*", help="dotted overrides key=value, as for train")
    conf.add_argument("--keys", action="store_true", help="list every key with its type, default and description")
    sub.add_parser("presets", help="list the presets (name, agent, env id, total_steps): rlopt train NAME")
    add_sweep_parser(sub)
    add_report_parser(sub)
    return parser


def default_run_dir(agent: str, env_id: str) -> Path:
    """``runs/<agent>-<env>-<timestamp>`` with the env id made path-safe."""
    safe_env = re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id)
    return Path("runs") / f"{agent}-{safe_env}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_run_dir(run_dir: Path) -> None:
    """A run directory is never overwritten, and it must be creatable where it is asked for."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir: {run_dir} is a file; give a new or empty directory")
    # A lock file alone is what a process killed before its first write leaves (taken: _lock).
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise ConfigError(f"--run-dir: {run_dir} exists and is not empty; refusing to overwrite a run")
    ancestor = run_dir.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"--run-dir: {ancestor} is a file, so {run_dir} cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"--run-dir: {ancestor} is not writable, so {run_dir} cannot be created")


def _lock(run_dir: Path, check_only: bool = False) -> IO[str] | None:
    """The run directory's lock for the life of this process (see :func:`rlopt.files.lock_run_dir`);
    with ``check_only``, None once it is sure no other process holds it (nothing is written)."""
    try:
        return check_run_dir_unlocked(run_dir) if check_only else lock_run_dir(run_dir)
    except RunDirLocked as err:
        raise ConfigError(f"{err}; wait for it to end or stop it (a lock left by a killed process never blocks)") from None
    except OSError as err:
        raise ConfigError(f"--run-dir: cannot lock {run_dir} ({err.strerror or err})") from None


def _probe_env(env_id: str, seed: int) -> None:
    """Reset and step one fresh instance of ``env_id`` and check the observations it returns
    against its observation space, before anything is written (a misbehaving env would otherwise
    fail at the first rollout and leave an unusable run directory behind)."""
    from rlopt.envs import make_vec_env

    probe = make_vec_env(env_id, 1)
    try:
        expected = (1, *probe.single_observation_space.shape)
        for call in ("reset", "step"):
            try:
                out = probe.reset(seed=seed) if call == "reset" else probe.step(probe.action_space.sample())
                shape = getattr(out[0], "shape", None)
            except Exception as err:  # an env whose reset/step raises, or returns the wrong shape
                raise ConfigError(f"env.id: {env_id!r} {call}() failed ({type(err).__name__}: "
                                  f"{' '.join(str(err).split())[:200]})") from None  # fmt: skip
            if shape != expected:
                raise ConfigError(f"env.id: {env_id!r} {call}() returned observations of shape {shape}; "
                                  f"its observation space says {expected}")  # fmt: skip
    finally:
        probe.close()


def _train(args: argparse.Namespace) -> int:
    from agents import build_agent
    from rlopt.checkpoint import list_checkpoints
    from rlopt.config import load_config
    from rlopt.run_files import CONFIG_FILE, SUMMARY_FILE
    from rlopt.trainer import Trainer

    if args.run_dir is not None and not args.run_dir.strip():
        raise ConfigError('--run-dir: "" is no directory; give a path or leave --run-dir out')
    if args.resume is not None and not args.resume.strip():
        raise ConfigError('--resume: "" is no directory; give the run directory to resume')
    if args.total_steps is not None and not args.resume:
        raise ConfigError("--total-steps extends a run and needs --resume RUN_DIR; for a new run override total_steps=N")
    notices: list[str] = []  # printed once nothing rejects the run
    if args.resume:
        if args.config or args.overrides or args.run_dir:
            raise ConfigError("--resume takes only the run directory (and --total-steps); its config.yaml is reused")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG_FILE).is_file() or not list_checkpoints(run_dir):
            raise ConfigError(f"--resume: {run_dir} has no config.yaml and complete checkpoint to resume from")
        file_cfg = cfg = load_config(run_dir / CONFIG_FILE)
        if args.total_steps is not None:  # config.yaml is rewritten with it when training starts
            cfg = load_config(run_dir / CONFIG_FILE, [f"total_steps={args.total_steps}"])
    else:
        if args.config is None:
            raise ConfigError("train: a config file is required, e.g. rlopt train ppo_cartpole (rlopt presets lists them)")
        cfg = load_config(args.config, args.overrides, notices=notices)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg.agent, cfg.env.id)
        _check_run_dir(run_dir)
    # Everything that can reject the input happens before the mkdir below, so bad input never
    # leaves a run directory behind.
    agent = build_agent(cfg)
    _probe_env(cfg.env.id, cfg.seed)
    for notice in notices:
        print(f"rlopt: note: {notice}", file=sys.stderr)
    trainer = Trainer(agent, run_dir=run_dir, progress=not args.no_progress)
    try:
        if args.resume:  # reads only: a ConfigError names an unreadable .pt/.env or a changed config
            _lock(run_dir, check_only=True)  # a live trainer in the run dir: exit 2 at once
            seen = list_checkpoints(run_dir)
            steps = trainer.resume(require_same_config=True)
            extension = _refit_to_run_length(agent, trainer, file_cfg, run_dir, steps, args.total_steps is not None)
        try:  # the first write, once nothing is left to reject (Trainer.train() accepts an existing dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"--run-dir: cannot create {run_dir} ({err.strerror or err})") from None
        lock = _lock(run_dir)  # one process per run directory, until this one ends (issue 12)
    except BaseException:
        trainer.close()
        raise
    try:
        if args.resume:
            if list_checkpoints(run_dir) != seen:  # another process checkpointed between the read and the lock
                raise ConfigError(f"--resume: {run_dir} got a new checkpoint while it was being read; run again")
            print(f"resuming {run_dir} from {steps} env steps", file=sys.stderr)
            if extension:
                print(extension, file=sys.stderr)
                (run_dir / SUMMARY_FILE).unlink(missing_ok=True)  # not finished until it reaches the new total
        else:
            _check_run_dir(run_dir)  # again under the lock: another process may have won the race
        summary = trainer.train()
    except BaseException:
        trainer.close()
        raise
    finally:
        if lock is not None:
            lock.close()
    print(json.dumps(summary, allow_nan=False))
    print(f"run written to {run_dir} (tensorboard --logdir {run_dir})", file=sys.stderr)
    return 0


def _refit_to_run_length(agent: Agent, trainer: Trainer, file_cfg: Config, run_dir: Path, steps: int, flag: bool) -> str:
    """After a resume: refuse a ``total_steps`` below the ``steps`` done, re-fit every schedule to
    it (:func:`rlopt.coefficients.refit_run_length`) and return the line that says what changed
    ("" when the run keeps its length). Reads and writes no file."""
    from rlopt.coefficients import refit_run_length

    cfg = agent.cfg
    if cfg.total_steps < steps:
        given = f"--total-steps {cfg.total_steps}" if flag else f"--resume: config.yaml's total_steps {cfg.total_steps}"
        raise ConfigError(f"{given} is below the {steps} env steps {run_dir} has already trained; give N >= {steps}")
    previous = trainer.resumed_total_steps or file_cfg.total_steps  # None: a checkpoint from before issue 12
    before = dataclasses.replace(cfg, total_steps=previous).num_updates
    changed = refit_run_length(agent, cfg.num_updates, before)
    if previous == cfg.total_steps:
        return ""
    what = "; ".join([*changed, "every other schedule unchanged"]) if changed else "no schedule depends on the run length"
    return (f"rlopt: total_steps {previous:,} -> {cfg.total_steps:,} ({before:,} -> {cfg.num_updates:,} updates), "
            f"continuing from {steps:,} env steps (update {agent.updates_done:,}): {what}")  # fmt: skip


def _eval(args: argparse.Namespace) -> int:
    from agents import build_agent
    from rlopt.checkpoint import list_checkpoints, load_checkpoint
    from rlopt.config import load_config
    from rlopt.config.validation import EVAL_EPISODES_MAX
    from rlopt.evaluation import evaluate, record_video
    from rlopt.run_files import CONFIG_FILE

    run_dir = Path(args.run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"eval: {run_dir} has no {CONFIG_FILE}; pass a directory written by rlopt train")
    if args.episodes is not None and not 1 <= args.episodes <= EVAL_EPISODES_MAX:
        raise ConfigError(f"--episodes must be >= 1 and <= {EVAL_EPISODES_MAX}, got {args.episodes}")
    cfg = load_config(run_dir / CONFIG_FILE, [] if args.device is None else [f"device={args.device}"])
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
        if not checkpoint.is_file():
            raise ConfigError(f"--checkpoint: no such file {checkpoint}")
    else:
        found = list_checkpoints(run_dir)
        if not found:
            raise ConfigError(f"eval: {run_dir} has no checkpoint")
        checkpoint = found[-1]
    episodes = cfg.eval.episodes if args.episodes is None else args.episodes
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1 (the run's eval.episodes is {episodes})")
    agent = build_agent(cfg)
    try:
        agent.load_state_dict(load_checkpoint(checkpoint)["agent"])
    except Exception as err:  # a file that is not an rlopt checkpoint
        raise ConfigError(f"--checkpoint: {checkpoint} is not a readable rlopt checkpoint ({type(err).__name__})") from None
    result = evaluate(agent, episodes, cfg.seed)
    if args.video:
        try:
            videos = record_video(agent, episodes, cfg.seed, args.video)
        except Exception as err:  # gymnasium.error.DependencyNotInstalled: moviepy missing
            raise ConfigError(f"--video: {str(err).splitlines()[0]} (pip install 'rlopt[video]')") from None
        result["videos"] = [str(v) for v in videos]
    if not all(math.isfinite(result[key]) for key in ("return_mean", "return_std")):  # strict JSON: no NaN
        result.update(return_mean=None, return_std=None, return_finite=False)
    print(json.dumps(result, allow_nan=False))
    return 0


def _config(args: argparse.Namespace) -> int:
    """``rlopt config CONFIG [k=v ...]``: the resolved YAML (the agent's defaults filled in, as
    ``RUN_DIR/config.yaml`` would show it); ``rlopt config --keys``: every key documented."""
    from agents import check_config
    from rlopt.config import config_to_yaml, load_config
    from rlopt.config.keys import config_keys, format_keys

    if args.keys:
        if args.config is not None or args.overrides:
            raise ConfigError("config: --keys takes no config file or overrides")
        sys.stdout.write(format_keys(config_keys()))
        return 0
    if args.config is None:
        raise ConfigError("config: a config file is required (a preset such as ppo_cartpole, or a YAML file), or --keys")
    notices: list[str] = []
    resolved = check_config(load_config(args.config, args.overrides, notices=notices))
    for notice in notices:
        print(f"rlopt: note: {notice}", file=sys.stderr)
    sys.stdout.write(config_to_yaml(resolved))
    return 0


def _presets() -> int:
    """``rlopt presets``: one line per preset (name, agent, env id, total_steps), sorted by name."""
    from rlopt.presets import describe_presets

    sys.stdout.write("".join(f"{line}\n" for line in describe_presets()))
    return 0


def _sweep_validator() -> Callable[[Config], Config]:
    """Every check ``rlopt train`` makes before writing, for each run of a sweep: the agents'
    config check, and each distinct env id built once (as ``build_agent`` probes it)."""
    from agents import check_config, env_spaces

    probed: set[str] = set()

    def validate(cfg: Config) -> Config:
        resolved = check_config(cfg)
        if resolved.env.id not in probed:
            env_spaces(resolved.env.id)
            probed.add(resolved.env.id)
        return resolved

    return validate


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlopt`` console script; returns the process exit code."""
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "sweep":
            return sweep_command(args, _sweep_validator())
        if args.command == "report":
            return report_command(args)
        if args.command == "config":
            return _config(args)
        if args.command == "presets":
            return _presets()
        return _train(args) if args.command == "train" else _eval(args)
    except ConfigError as err:
        print(f"rlopt: error: {' '.join(str(err).split())}", file=sys.stderr)  # always one line
        return EXIT_BAD_INPUT
    except NumericalFault as err:
        print(f"rlopt: numerical fault: {err}", file=sys.stderr)
        return EXIT_FAULT
    except Interrupted as err:
        print(f"rlopt: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (e.g. during evaluation)
        print("rlopt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
