"""Exceptions that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: an unknown or ill-typed key, an out-of-range value, a missing file."""


class NumericalFault(RuntimeError):
    """Too many consecutive non-finite losses, gradients or observations."""


class Interrupted(Exception):
    """SIGINT arrived during training; a checkpoint was written before this was raised."""

    def __init__(self, run_dir: object, env_steps: int) -> None:
        self.run_dir, self.env_steps = run_dir, env_steps
        where = f"; resume with: rlopt train --resume {run_dir}" if run_dir is not None else ""
        super().__init__(f"interrupted at {env_steps} env steps, checkpoint written{where}")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (messages stay one line)."""
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__
