"""argparse building blocks of the ``rlopt`` command line: a parser whose usage errors are one-line
:class:`~rlopt.errors.ConfigError` (exit 2) and that takes no abbreviated options, and ``--version``."""

from __future__ import annotations

import argparse
import sys

from rlopt.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ConfigError (exit 2, one line) and takes no
    abbreviated options (``--episode 2`` is an error, not ``--episodes 2``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("rlopt").strip()  # "train", "eval" or "" for the top level
        raise ConfigError(f"{command}: {message}" if command else message)


class VersionAction(argparse.Action):
    """``rlopt --version``: the installed package's version (read only when asked: importlib.metadata
    scans the installed distributions), falling back to ``rlopt.__version__`` in a bare checkout."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("rlopt")
        except PackageNotFoundError:
            from rlopt import __version__ as number
        sys.stdout.write(f"rlopt {number}\n")
        parser.exit()
