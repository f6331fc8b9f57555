"""``rlopt sweep SWEEP.yaml``: the command's arguments and exit codes.

Kept free of heavy imports (torch, tqdm) so that ``rlopt --help`` stays instant; the work is in
:mod:`rlopt.sweep.driver`. The CLI registers :func:`add_sweep_parser` and calls
:func:`sweep_command` with the agents' config check injected (this package never imports the
agents).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import TYPE_CHECKING, Any

from rlopt.errors import ConfigError
from rlopt.sweep.runner import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from rlopt.sweep.spec import Validator

EXIT_BAD_INPUT = 2
BACKENDS = ("local", "ray")
MAX_WORKERS = 1024
"""``--workers``: runs at a time (each a process of ~0.3 GB on the local pool)."""
SHOWN_ENDS = 24
"""A value typed longer than twice this is shown by its two ends in messages (a 400-digit count or a
300-character path stays one short line)."""


SHOWN_NAMES = 10
"""Arms a message lists before it says how many more there are."""


def shown(value: Any) -> str:
    """``value`` for a one-line message: a long number or string is cut (``999…999 (400 digits)``)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= SHOWN_ENDS * 2:
        return text
    what = "digits" if text.lstrip("-").isdigit() else "characters"
    return f"{text[:SHOWN_ENDS]}…{text[-SHOWN_ENDS:]} ({len(text)} {what})"


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
    parser.add_argument("--dry-run", action="store_true", help="print the runs and their status; write nothing")
    return parser


def listed(names: list[str], limit: int = SHOWN_NAMES) -> str:
    """The first ``limit`` of ``names``, comma-separated, then how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown(name) for name in names[:limit]) + more


def check_path(path: str, what: str) -> None:
    """A path typed by the user that the OS cannot even look up (a name over 255 bytes, a symlink
    loop): a one-line ConfigError naming ``what``. A missing path passes (it is checked where used)."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise ConfigError(f"{what}: {shown(path)} cannot be used ({err.strerror or type(err).__name__})") from None


def check_arguments(args: argparse.Namespace) -> None:
    """The checks that need no sweep file: ``--out``, ``--workers``, ``--address`` (ConfigError)."""
    if args.out is not None and not args.out.strip():
        raise ConfigError('--out: "" is no directory; give a path or leave --out out (default sweeps/<name>)')
    for path, what in ((args.sweep_file, "SWEEP.yaml"), (args.out, "--out")):
        if path is not None:
            check_path(path, what)
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be in [1, {MAX_WORKERS}], got {shown(args.workers)}")
    if args.address is not None and args.backend != "ray":
        raise ConfigError("--address is for --backend ray")
    if args.address is not None and not args.address.strip():
        raise ConfigError('--address: "" is no address; give HOST:PORT, ray://HOST:PORT or auto, or leave it out')


def sweep_command(args: argparse.Namespace, validate: Validator) -> int:
    """Run ``rlopt sweep``; returns the exit code (0, 1 if a run failed, 2 bad input, 130 Ctrl-C)."""
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
