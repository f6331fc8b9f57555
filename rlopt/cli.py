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
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from rlopt.arguments import Parser as _Parser, VersionAction as _Version
from rlopt.errors import ConfigError, Interrupted, NumericalFault, WriteFailed, is_storage_error, short_repr
from rlopt.files import check_new_run_dir, lock_or_refuse
from rlopt.report import add_report_parser, report_command
from rlopt.stacked.runs import is_stacked_run
from rlopt.sweep import add_sweep_parser, sweep_command

if TYPE_CHECKING:
    from agents import Agent
    from rlopt.config import Config
    from rlopt.trainer import Trainer

EXIT_BAD_INPUT = 2
EXIT_FAULT = 3
EXIT_WRITE_FAILED = 4
"""The run directory could not be written (a full disk): the checkpoints are intact, resume later."""
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
"""The reader of stdout left (``| head``): 128 + SIGPIPE, the status of a shell tool killed by it."""


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlopt", description="Policy-optimization agents on one optimizer layer.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train an agent from a YAML preset")
    train.add_argument("config", nargs="?", help="a preset's name (rlopt presets lists them) or a YAML file")
    train.add_argument("overrides", nargs="*", help="dotted overrides key=value, e.g. actor.optim.lr=1e-3")
    train.add_argument("--run-dir", help="where to write logs and checkpoints (default runs/<agent>-<env>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint")
    train.add_argument("--total-steps", type=int, metavar="N",
                       help="with --resume: continue the run to N env steps (extends a finished run; schedules re-fitted)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--seeds", help="train these seeds together in one process (0-9 or 0,3,7; at most 256): DIR/seed_<k>/")
    train.add_argument("--sweep-stack", choices=("start", "resume"), help=argparse.SUPPRESS)  # rlopt.sweep.stacking's job
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
    from rlopt.run_files import CONFIG_FILE, SUMMARY_FILE

    try:
        unfinished = (run_dir / CONFIG_FILE).is_file() and not (run_dir / SUMMARY_FILE).exists()
    except OSError:  # a name too long: check_new_run_dir says so
        unfinished = False
    hint = f"; it is an unfinished run: rlopt train --resume {run_dir}" if unfinished else "; give a new directory"
    check_new_run_dir(run_dir, "--run-dir", hint)


def _check_resumable(run_dir: Path) -> list[Path]:
    """``--resume RUN_DIR``'s checks, before torch is imported: a directory with a ``config.yaml``, not in
    use by another process. Returns its checkpoints (none: killed before its first, started over)."""
    from rlopt.run_files import CONFIG_FILE, list_checkpoints

    try:
        if not run_dir.is_dir():
            raise ConfigError(f"--resume: no run directory {run_dir}")
        if not (run_dir / CONFIG_FILE).is_file():
            raise ConfigError(f"--resume: {run_dir} has no {CONFIG_FILE}; pass a directory written by rlopt train")
        lock_or_refuse(run_dir, check_only=True)  # a live trainer in the run dir: exit 2 at once
        return list_checkpoints(run_dir)
    except OSError as err:
        raise ConfigError(f"--resume: cannot read {run_dir} ({err.strerror or err})") from None


def _train(args: argparse.Namespace) -> int:
    if args.seeds is not None or args.sweep_stack is not None or is_stacked_run(args.resume):  # issue 17: seeds in one process
        from agents.stacked_runs import stacked_train

        return stacked_train(args)
    if args.run_dir is not None and not args.run_dir.strip():
        raise ConfigError('--run-dir: "" is no directory; give a path or leave --run-dir out')
    if args.resume is not None and not args.resume.strip():
        raise ConfigError('--resume: "" is no directory; give the run directory to resume')
    if args.total_steps is not None and not args.resume:
        raise ConfigError("--total-steps extends a run and needs --resume RUN_DIR; for a new run override total_steps=N")
    if args.resume and (args.config or args.overrides or args.run_dir):
        raise ConfigError("--resume takes only the run directory (and --total-steps); its config.yaml is reused")
    if not args.resume and args.config is None:
        raise ConfigError("train: a config file is required, e.g. rlopt train ppo_cartpole (rlopt presets lists them)")
    # The refusals that need only the file system come first, before torch is imported.
    seen: list[Path] = []
    if args.resume:
        run_dir = Path(args.resume)
        seen = _check_resumable(run_dir)
    elif args.run_dir:
        _check_run_dir(Path(args.run_dir))
        lock_or_refuse(Path(args.run_dir), check_only=True)
    return _train_checked(args, Path(args.resume) if args.resume else None, seen)


def _train_checked(args: argparse.Namespace, resume_dir: Path | None, seen: list[Path]) -> int:
    """``rlopt train`` once the file-system checks passed: build, check the rest, lock, train."""
    from agents import build_agent
    from rlopt.config import load_config
    from rlopt.envs import probe_env
    from rlopt.run_files import CONFIG_FILE, SUMMARY_FILE, list_checkpoints
    from rlopt.trainer import Trainer

    notices: list[str] = []  # printed once nothing rejects the run
    restart = resume_dir is not None and not seen  # killed before its first checkpoint
    if resume_dir is not None:
        run_dir = resume_dir
        file_cfg = cfg = load_config(run_dir / CONFIG_FILE)
        if args.total_steps is not None:  # config.yaml is rewritten with it when training starts
            cfg = load_config(run_dir / CONFIG_FILE, [f"total_steps={args.total_steps}"])
    else:
        cfg = load_config(args.config, args.overrides, notices=notices)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg.agent, cfg.env.id)
        _check_run_dir(run_dir)
    # Everything that can reject the input happens before the mkdir below, so bad input never
    # leaves a run directory behind.
    agent = build_agent(cfg)
    probe_env(cfg.env.id, cfg.seed)
    for notice in notices:
        print(f"rlopt: note: {notice}", file=sys.stderr)
    trainer = Trainer(agent, run_dir=run_dir, progress=not args.no_progress)
    extension = ""
    try:
        if resume_dir is not None and not restart:  # reads only: ConfigError for an unreadable .pt/.env, a changed config
            steps = trainer.resume(require_same_config=True)
            extension = _refit_to_run_length(agent, trainer, file_cfg, run_dir, steps, args.total_steps is not None)
        elif restart:
            trainer.resume()  # no checkpoint: from step 0, the killed process's TensorBoard points purged
        try:  # the first write, once nothing is left to reject (Trainer.train() accepts an existing dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"--run-dir: cannot create {run_dir} ({err.strerror or err})") from None
        lock = lock_or_refuse(run_dir)  # one process per run directory, until this one ends (issue 12)
    except BaseException:
        trainer.close()
        raise
    try:
        if resume_dir is not None:
            if list_checkpoints(run_dir) != seen:  # another process checkpointed between the read and the lock
                raise ConfigError(f"--resume: {run_dir} got a new checkpoint while it was being read; run again")
            if restart:
                print(f"rlopt: {run_dir} has no checkpoint (stopped before its first one): "
                      f"starting it over from step 0 with its {CONFIG_FILE}", file=sys.stderr)  # fmt: skip
            else:
                print(f"resuming {run_dir} from {steps} env steps", file=sys.stderr)
            if extension:
                print(extension, file=sys.stderr)
                (run_dir / SUMMARY_FILE).unlink(missing_ok=True)  # not finished until it reaches the new total
        else:
            _check_run_dir(run_dir)  # again under the lock: another process may have won the race
        summary = _train_to_end(trainer, run_dir)
    except BaseException:
        trainer.close()
        raise
    finally:
        if lock is not None:
            lock.close()
    print(json.dumps(summary, allow_nan=False))
    print(f"run written to {run_dir} (tensorboard --logdir {run_dir})", file=sys.stderr)
    return 0


def _train_to_end(trainer: Trainer, run_dir: Path) -> dict:
    """``trainer.train()``; a full disk is a one-line :class:`WriteFailed` (the run can be resumed),
    skipped updates (NaN rewards) a warning line at the end."""
    try:
        summary = trainer.train()
    except OSError as err:
        if not is_storage_error(err):
            raise
        raise WriteFailed(err, run_dir) from None  # train() closed the writer and envs
    if summary["skipped_updates"]:  # exit code 0, but not as healthy as that suggests
        print(f"rlopt: warning: {summary['skipped_updates']} of {trainer.env_steps // trainer.cfg.batch_size} updates "
              "were skipped (non-finite observations, rewards, losses or gradients; the weights never took them): "
              "see skipped_updates in summary.json", file=sys.stderr)  # fmt: skip
    return summary


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
    from rlopt.run_files import CONFIG_FILE, list_checkpoints

    run_dir = Path(args.run_dir)
    if args.episodes is not None and args.episodes < 1:  # the upper bound comes with the config's checks
        raise ConfigError(f"--episodes must be >= 1, got {short_repr(args.episodes)}")
    try:  # the file-system checks first: a refusal costs no torch import
        if not (run_dir / CONFIG_FILE).is_file():
            raise ConfigError(f"eval: {run_dir} has no {CONFIG_FILE}; pass a directory written by rlopt train")
        candidates = [Path(args.checkpoint)] if args.checkpoint else list_checkpoints(run_dir)[::-1]  # newest first
        if args.checkpoint and not candidates[0].is_file():
            raise ConfigError(f"--checkpoint: no such file {candidates[0]}")
        if not candidates:
            raise ConfigError(f"eval: {run_dir} has no checkpoint")
    except OSError as err:
        raise ConfigError(f"eval: cannot read {run_dir} ({err.strerror or err})") from None
    return _eval_checked(args, run_dir, candidates)


def _eval_checked(args: argparse.Namespace, run_dir: Path, candidates: list[Path]) -> int:
    """``rlopt eval`` once the file-system checks passed: load, refuse another agent's weights, evaluate."""
    from agents import build_agent
    from rlopt.config import load_config
    from rlopt.config.validation import EVAL_EPISODES_MAX
    from rlopt.evaluation import evaluate, record_video
    from rlopt.run_files import CONFIG_FILE
    from rlopt.saved_agent import read_newest_agent_state

    if args.episodes is not None and args.episodes > EVAL_EPISODES_MAX:
        raise ConfigError(f"--episodes must be >= 1 and <= {EVAL_EPISODES_MAX}, got {short_repr(args.episodes)}")
    cfg = load_config(run_dir / CONFIG_FILE, [] if args.device is None else [f"device={args.device}"])
    episodes = cfg.eval.episodes if args.episodes is None else args.episodes
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1 (the run's eval.episodes is {episodes})")
    what = "--checkpoint" if args.checkpoint else "eval"
    checkpoint, state, skipped = read_newest_agent_state(candidates, cfg.agent, str(run_dir / CONFIG_FILE), what)
    for message in skipped:  # as --resume: a torn newest checkpoint falls back to the one before
        print(f"rlopt: warning: {message}; evaluating the previous checkpoint {checkpoint.name}", file=sys.stderr)
    agent = build_agent(cfg)
    try:
        agent.load_state_dict(state)
    except Exception as err:  # weights of another network shape
        raise ConfigError(f"{what}: {checkpoint} does not fit the {cfg.agent} agent of {run_dir / CONFIG_FILE} "
                          f"({type(err).__name__})") from None  # fmt: skip
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


def _warning_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    """``warnings.formatwarning`` of the CLI: one line, ``rlopt: warning: ...``, no source line."""
    return f"rlopt: warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlopt`` console script; returns the process exit code. Warnings are
    printed as one line each while it runs (recorded ones, e.g. by ``pytest.warns``, stay recorded)."""
    with warnings.catch_warnings():
        warnings.formatwarning = _warning_line  # type: ignore[assignment]
        # A skipped first update steps the schedules, not the optimizers, on purpose (and says it was skipped).
        warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
        try:
            return _main(argv)
        except BrokenPipeError:  # `rlopt sweep ... --dry-run | head`: the reader left; stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit (Python docs, "Note on SIGPIPE")
            return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "sweep":
            return sweep_command(args, _sweep_validator())
        if args.command == "report":
            return report_command(args)
        if args.command == "config":
            return _config(args)
        if args.command == "presets":  # one line per preset (name, agent, env id, total_steps), sorted by name
            from rlopt.presets import describe_presets

            sys.stdout.write("".join(f"{line}\n" for line in describe_presets()))
            return 0
        return _train(args) if args.command == "train" else _eval(args)
    except ConfigError as err:
        print(f"rlopt: error: {' '.join(str(err).split())}", file=sys.stderr)  # always one line
        return EXIT_BAD_INPUT
    except WriteFailed as err:
        print(f"rlopt: error: {err}", file=sys.stderr)
        return EXIT_WRITE_FAILED
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
