"""Median pruning of a sweep's tuning trials (``search.pruner: median``) while their runs are going.

A trial run of a pruned search is started with ``log.flush_seconds`` = :data:`TRIAL_FLUSH_SECONDS`, so its
TensorBoard curve reaches the disk within half a second (the writer's default holds points up to 120 s; a
separate progress file would be a second record of the same numbers). While a round of runs goes, a
thread of the driver reads the trials' curves every :data:`POLL_SECONDS`. At each of
:data:`REPORTS_PER_TRIAL` evenly spaced env steps of the trial's budget that every seed of the trial has
passed, it reports the trial's intermediate value (the search's objective of the curves up to that step,
averaged over seeds: ``trial.report``) and asks the study's MedianPruner (``trial.should_prune``).
A pruned trial's runs get one SIGINT, on which ``rlopt train`` finishes its update, checkpoints and exits
130: the run directory stays resumable. A trial whose runs end before the thread saw a step is
reported and asked the same when they end, so whether a trial is pruned depends only on its curves
and the arm's earlier trials, never on timing (MedianPruner draws no random numbers).

A run is found by the pid in its run directory's lock file, checked against ``/proc/<pid>/cmdline``:
a run on another host (a Ray cluster) cannot be signalled and goes on to its end; its trial is still
recorded PRUNED.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rlopt.curves import Curve, read_scalar
from rlopt.files import RunDirLocked, check_run_dir_unlocked
from rlopt.sweep.search import FINAL_FRACTION, Search

TRIAL_FLUSH_SECONDS = 0.5
"""``log.flush_seconds`` of the trial runs of a search with ``pruner: median``."""
POLL_SECONDS = 0.5
"""How often the driver reads the running trials' curves."""
REPORTS_PER_TRIAL = 20
"""Intermediate values per trial: at 1/20, 2/20, ... of its env steps (the pruner's ``step``)."""


def curve_value(points: Curve, objective: str) -> float:
    """``auc``: the curve's mean over env steps (trapezoids); else ``final``: the mean of its last
    :data:`FINAL_FRACTION` of points (one at least); nan for an empty curve."""
    if len(points) == 0:
        return math.nan
    if objective != "auc":
        last = max(1, math.ceil(FINAL_FRACTION * len(points)))
        return float(np.mean(points.values[-last:]))
    if len(points) == 1:
        return float(points.values[0])
    return float(np.trapezoid(points.values, points.steps) / (points.steps[-1] - points.steps[0]))


def report_steps(total_steps: int) -> list[int]:
    """The env steps at which a trial of ``total_steps`` reports (distinct, increasing, the last = total)."""
    return sorted({max(1, round(total_steps * i / REPORTS_PER_TRIAL)) for i in range(1, REPORTS_PER_TRIAL + 1)})


def make_pruner(search: Search) -> Any:
    """The study's pruner: a MedianPruner for ``pruner: median``, else Optuna's NopPruner."""
    import optuna

    if search.pruner != "median":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=search.warmup_steps)


def _runs_train_in(pid: int, run_dir: Path) -> bool:
    """Whether process ``pid`` of this host is an ``rlopt train`` writing into ``run_dir``."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"train" in args and os.fsencode(str(run_dir)) in args


def interrupt_run(run_dir: Path) -> bool:
    """SIGINT the live ``rlopt train`` of ``run_dir`` on this host; False if none holds its lock here."""
    try:
        check_run_dir_unlocked(run_dir)
    except RunDirLocked as err:
        if err.pid.isdigit() and _runs_train_in(int(err.pid), run_dir):
            os.kill(int(err.pid), signal.SIGINT)
            return True
    return False


class TrialWatch:
    """One trial's reports to its study and, once pruned, the SIGINT of its runs."""

    def __init__(self, trial: Any, run_dirs: list[Path], total_steps: int, objective: str, curve: str) -> None:
        self.trial, self.run_dirs, self.objective, self.curve = trial, run_dirs, objective, curve
        self.steps = report_steps(total_steps)
        self.reported = 0
        """How many of :attr:`steps` were reported."""
        self.pruned_at: int | None = None
        """The env step at which the pruner stopped the trial."""
        self.interrupted: set[Path] = set()

    def advance(self, ended: bool) -> None:
        """Report each step every seed's curve has passed (all of them once the runs ``ended``) and ask the
        pruner after each; stops at the first step it prunes."""
        if self.pruned_at is not None or self.reported == len(self.steps):
            return
        curves = [read_scalar(run_dir, self.curve) for run_dir in self.run_dirs]
        while self.reported < len(self.steps):
            step = self.steps[self.reported]
            if not ended and not all(len(c) and c.steps[-1] >= step for c in curves):
                return
            values = [curve_value(Curve(c.steps[c.steps <= step], c.values[c.steps <= step]), self.objective) for c in curves]
            self.reported += 1
            if all(math.isfinite(v) for v in values):
                self.trial.report(float(np.mean(values)), step)
                if self.trial.should_prune():
                    self.pruned_at = step
                    return

    def interrupt(self) -> None:
        """SIGINT (once each) the trial's runs that are going on this host."""
        for run_dir in self.run_dirs:
            if run_dir not in self.interrupted and interrupt_run(run_dir):
                self.interrupted.add(run_dir)


class Pruning:
    """``with Pruning(watches):`` a thread advances the watches of trials not yet pruned every
    :data:`POLL_SECONDS` and interrupts the runs of pruned ones, until the block ends."""

    def __init__(self, watches: list[TrialWatch]) -> None:
        self.watches = watches
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rlopt-pruning", daemon=True)

    def __enter__(self) -> Pruning:
        if self.watches:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            for watch in self.watches:
                watch.advance(ended=False)
                if watch.pruned_at is not None:
                    watch.interrupt()
