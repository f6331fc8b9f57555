"""Which runs of a sweep share a process (``seeds_per_process``, issue 17): the processes to start.

An arm's seeds are cut, in the order of the sweep's ``seeds``, into fixed chunks of
``seeds_per_process``; the runs of a chunk still to do are trained together in one process
(``rlopt train CONFIG --seeds ... --run-dir OUT/runs/<arm> --sweep-stack start|resume``, each seed
writing its ordinary ``OUT/runs/<arm>/seed_<k>/``), one pool process or one Ray task. What a chunk
holds decides how many processes it takes:

* runs to start: one stack, started from step 0 (their directories emptied first);
* runs to resume that were started in a stack (the manifest's ``stack``): one stack per newest
  checkpoint step (:meth:`rlopt.stacked.training.StackedTraining.resume` continues each seed exactly
  from the step all of the stack's seeds have); a seed whose stack finished is not in any;
* runs started alone (``seeds_per_process: 1`` before) and every run of an arm a stack cannot train
  (:func:`rlopt.stacked.learner.check_stackable`; said once per arm) run alone, as before.

The manifest stays per run; the driver reads each seed's ``summary.json`` when its process ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlopt.checkpoint import list_checkpoints
from rlopt.errors import ConfigError
from rlopt.sweep.manifest import RESUME, START, PlannedRun, manifest_entries
from rlopt.sweep.runner import START_MARKER, RunJob
from rlopt.sweep.spec import Sweep

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Process:
    """One process of the sweep: the runs it trains (one arm) and how."""

    runs: list[PlannedRun]
    stacked: bool
    """True: the runs' seeds in one stack; False: one lone ``rlopt train`` (a single run)."""
    resume: bool
    """Continue from checkpoints (a stack from the newest step all its seeds have)."""

    @property
    def seeds(self) -> list[int]:
        return [run.spec.seed for run in self.runs]


def _newest_step(run_dir: Path) -> int:
    checkpoints = list_checkpoints(run_dir)
    return int(checkpoints[-1].stem.removeprefix("step_")) if checkpoints else -1


def _first_run_of_each_arm(sweep: Sweep) -> dict[str, Any]:
    """Arm -> its first run's spec (an arm's runs differ only in the seed)."""
    firsts: dict[str, Any] = {}
    for spec in sweep.runs:
        firsts.setdefault(spec.arm, spec)
    return firsts


def unstackable_arms(sweep: Sweep) -> dict[str, str]:
    """Arm -> why a stack cannot train it (:func:`rlopt.stacked.learner.check_stackable`: an agent the
    stacks do not know; what has no stacked update is stacked with per-seed updates, :func:`per_seed_arms`)."""
    from rlopt.stacked.learner import check_stackable

    if sweep.seeds_per_process == 1:
        return {}
    reasons: dict[str, str] = {}
    for arm, spec in _first_run_of_each_arm(sweep).items():
        try:
            check_stackable(spec.config, sweep.seeds[: sweep.seeds_per_process])
        except ConfigError as err:
            reasons[arm] = " ".join(str(err).split())
    return reasons


def per_seed_arms(sweep: Sweep) -> dict[str, str]:
    """Arm -> why its stacks run each seed's lone update (:mod:`rlopt.stacked.per_seed`: the rollouts
    stacked, the updates not, so such a stack gains less)."""
    from rlopt.stacked.per_seed import per_seed_reason

    if sweep.seeds_per_process == 1:
        return {}
    firsts = _first_run_of_each_arm(sweep)
    return {arm: reason for arm, spec in firsts.items() if (reason := per_seed_reason(spec.config)) is not None}


def plan_processes(sweep: Sweep, todo: list[PlannedRun], out: Path, previous: dict[str, Any] | None,
                   unstackable: dict[str, str]) -> list[Process]:  # fmt: skip
    """The processes that train ``todo`` (runs to start or resume), arm by arm in the sweep's order."""
    entries = manifest_entries(previous)
    position = {seed: index for index, seed in enumerate(sweep.seeds)}
    size = sweep.seeds_per_process
    groups: dict[tuple[Any, ...], list[PlannedRun]] = {}
    processes: list[Process] = []
    for run in todo:
        spec = run.spec
        was_stacked = bool(entries.get((spec.arm, spec.seed), {}).get("stack"))
        if (run.action == RESUME and not was_stacked) or (run.action == START and (size == 1 or spec.arm in unstackable)):
            processes.append(Process([run], stacked=False, resume=run.action == RESUME))
            continue
        chunk = position[spec.seed] // size
        step = _newest_step(out / spec.run_dir) if run.action == RESUME else None
        key = (spec.arm, chunk, run.action, step)
        if key not in groups:
            groups[key] = []
            processes.append(Process(groups[key], stacked=True, resume=run.action == RESUME))
        groups[key].append(run)
    return processes


def process_job(out: Path, process: Process, threads: int) -> RunJob:
    """The subprocess of ``process``: ``rlopt train`` of one run, or of its stack (the log is the first
    run's; :func:`point_logs` tells the others' logs where it is)."""
    first = process.runs[0].spec
    env = {name: str(threads) for name in THREAD_VARIABLES}
    if not process.stacked:
        run_dir = out / first.run_dir
        if process.resume:
            args = ["-m", "rlopt", "train", "--resume", str(run_dir), "--no-progress"]
        else:
            args = ["-m", "rlopt", "train", str(out / first.config_file), "--run-dir", str(run_dir), "--no-progress"]
    else:
        seeds = ",".join(str(seed) for seed in process.seeds)
        args = ["-m", "rlopt", "train", str(out / first.config_file), "--seeds", seeds, "--run-dir",
                str((out / first.run_dir).parent), "--sweep-stack", "resume" if process.resume else "start", "--no-progress"]  # fmt: skip
    return RunJob(args=args, log_path=str(out / first.log_file), env=env, cwd=os.getcwd())


def point_logs(out: Path, process: Process) -> None:
    """In the log of every run of a stack but the first: an attempt line naming the log its output goes to."""
    first = process.runs[0].spec
    for run in process.runs[1:]:
        with open(out / run.spec.log_file, "a", encoding="utf-8") as log:
            log.write(f"{START_MARKER} in the stack of seeds {process.seeds}; its output is in {out / first.log_file}\n")


def describe(processes: list[Process], runs: int, sweep: Sweep, unstackable: dict[str, str]) -> list[str]:
    """The lines the sweep prints about its processes: how many, each arm a stack cannot train and
    each arm whose stacks update seed by seed (once)."""
    stacks = sum(p.stacked for p in processes)
    lines = [f"{runs} runs to train in {len(processes)} processes ({stacks} stacks; seeds_per_process {sweep.seeds_per_process})"]
    lines += [f"arm {arm} runs one seed per process: {reason}" for arm, reason in unstackable.items()]
    lines += [f"arm {arm} stacks its rollouts, each seed updating alone: {reason}"
              for arm, reason in per_seed_arms(sweep).items() if arm not in unstackable]  # fmt: skip
    return lines
