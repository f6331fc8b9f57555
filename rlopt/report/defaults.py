"""The defaults ``rlopt report``'s arguments and :func:`~rlopt.report.build.build_report` share
(a leaf, so the light command module and the builder import it without importing each other), and
their bounds."""

from __future__ import annotations

from pathlib import Path

from rlopt.errors import ConfigError, short_repr
from rlopt.sweep.messages import check_path

DEFAULT_REPS = 2000
"""Bootstrap resamples per interval."""
MAX_REPS = 100_000
"""``--reps``: time grows linearly (~20 s at the bound for a small sweep); Agarwal et al. (2021) use 2,000-50,000."""
MAX_SEED = 2**63 - 1
"""``--seed``: the range of ``rlopt train``'s seed (numpy's generator takes any integer >= 0)."""


def check_arguments(reps: int, seed: int, out: str | Path = ".") -> None:
    """Refuse ``--reps`` outside [1, MAX_REPS], ``--seed`` outside [0, MAX_SEED] and an OUT the OS cannot
    look up (ConfigError)."""
    check_path(str(out), "report: OUT")
    if not 1 <= int(reps) <= MAX_REPS:
        raise ConfigError(f"--reps must be in [1, {MAX_REPS}], got {short_repr(reps)}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"--seed must be in [0, 2**63 - 1], got {short_repr(seed)}")
