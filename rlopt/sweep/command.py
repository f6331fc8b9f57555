"""``rlopt sweep SWEEP.yaml``: the command's arguments and exit codes.

Kept free of heavy imports (torch, tqdm) so that ``rlopt --help`` stays instant; the work is in
:mod:`rlopt.sweep.driver`. The CLI registers :func:`add_sweep_parser` and calls
:func:`sweep_command` with the agents' config check injected (this package never imports the
agents).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from rlopt.errors import ConfigError, short_repr
from rlopt.sweep.messages import check_path
from rlopt.sweep.runner import EXIT_INTERRUPTED
from rlopt.sweep.seeds import MAX_SEEDS_PER_PROCESS, parse_seeds_per_process

if TYPE_CHECKING:
    from rlopt.sweep.spec import Validator

EXIT_BAD_INPUT = 2
BACKENDS = ("local", "ray")
MAX_WORKERS = 1024
"""``--workers``: runs at a time (each a process of ~0.3 GB on the local pool)."""
def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` sub-command to ``subparsers`` (the result of ``add_subparsers``)."""
    parser = subparsers.add_parser("sweep", help="run an ablation: arms x seeds of rlopt train, resumable",
                                   allow_abbrev=False)
    parser.add_argument("sweep_file", metavar="SWEEP.yaml", help="a sweep file, e.g. configs/sweeps/actor_optimizer.yaml")
    parser.add_argument("--out", help="sweep directory (default sweeps/<name>); re-running resumes it")
    parser.add_argument("--workers", type=int,
                        help=f"runs at a time, 1 to {MAX_WORKERS} (default: usable cores // threads_per_run)")
    parser.add_argument("--backend", choices=BACKENDS, default="local", help="local subprocess pool or Ray tasks")
    parser.add_argument("--address", help="Ray cluster address (--backend ray; default: start a local Ray)")
    parser.add_argument("--retry-failed", action="store_true", help="restart runs that failed before")
    parser.add_argument("--storage", help="Optuna storage URL of the studies of a search: block (default sqlite:///OUT/tuning.db)")
    parser.add_argument("--seeds-per-process", metavar="K|all|auto",
                        help=f"seeds of an arm trained together in one process, 1 to {MAX_SEEDS_PER_PROCESS}, all or auto "
                             "(overrides the sweep file's seeds_per_process, default auto; 1: one process per run)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and their status; write nothing")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """The checks that need no sweep file: ``--out``, ``--workers``, ``--address`` (ConfigError)."""
    if args.out is not None and not args.out.strip():
        raise ConfigError('--out: "" is no directory; give a path or leave --out out (default sweeps/<name>)')
    for path, what in ((args.sweep_file, "SWEEP.yaml"), (args.out, "--out")):
        if path is not None:
            check_path(path, what)
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be in [1, {MAX_WORKERS}], got {short_repr(args.workers)}")
    if getattr(args, "seeds_per_process", None) is not None:  # "all" is resolved per sweep (its seeds)
        if args.seeds_per_process.strip().lower() not in ("all", "auto"):  # resolved with the sweep's seeds
            parse_seeds_per_process(args.seeds_per_process, 0, ConfigError, "--seeds-per-process")
    if args.address is not None and args.backend != "ray":
        raise ConfigError("--address is for --backend ray")
    if args.address is not None and not args.address.strip():
        raise ConfigError('--address: "" is no address; give HOST:PORT, ray://HOST:PORT or auto, or leave it out')


def sweep_command(args: argparse.Namespace, validate: Validator) -> int:
    """Run ``rlopt sweep``; returns the exit code (0, 1 if a run failed, 2 bad input, 130 Ctrl-C)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGINT stops the sweep cleanly (its runs checkpoint) also when the shell started it with SIGINT
        # ignored (``rlopt sweep … &`` from a script), where Python would not raise KeyboardInterrupt
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        check_arguments(args)
        from rlopt.sweep.driver import run_sweep

        return run_sweep(args, validate)
    except ConfigError as err:
        print(f"rlopt: error: {' '.join(str(err).split())}", file=sys.stderr)  # always one line
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("rlopt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
