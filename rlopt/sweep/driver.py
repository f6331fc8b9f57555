"""The sweep driver behind ``rlopt sweep``: validate every run, write the manifest and resolved
configs, then run what is not finished yet on the local pool or on Ray, writing each finished
run's HParams. :mod:`rlopt.sweep.command` parses the arguments and calls :func:`run_sweep`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from rlopt.files import atomic_write_bytes
from rlopt.errors import ConfigError
from rlopt.sweep.hparams import hparam_table, write_hparams
from rlopt.sweep.manifest import (
    FAILED,
    FINISHED,
    RESUME,
    START,
    Manifest,
    PlannedRun,
    SweepLock,
    check_same_sweep,
    plan_runs,
    read_manifest,
    write_sweep_file,
)
from rlopt.sweep.runner import EXIT_INTERRUPTED, RunJob, run_local
from rlopt.sweep.stacking import (
    THREAD_VARIABLES,
    Process,
    describe,
    plan_processes,
    point_logs,
    process_job,
    unstackable_arms,
)
from rlopt.sweep.rendering import config_texts
from rlopt.sweep.seeds import auto_seeds_per_process, parse_seeds_per_process
from rlopt.sweep.spec import RunSpec, Sweep, Validator, format_value, load_sweep
from rlopt.report.curve_file import write_run_curve
from rlopt.run_files import SUMMARY_FILE

EXIT_RUNS_FAILED = 1
DEFAULT_OUT_ROOT = Path("sweeps")
"""Default OUT is ``sweeps/<name>`` in the working directory."""
EXIT_SEED_FAILED = 3
"""Recorded for a seed whose stack went on without it (its summary's ``error``): a lone run's numerical fault."""
_ACTION_LABELS = {FINISHED: "finished", FAILED: "failed (skipped; --retry-failed)", RESUME: "resume", START: "pending"}


def default_workers(threads_per_run: int) -> int:
    """Usable cores // threads per run, at least 1."""
    return max(1, len(os.sched_getaffinity(0)) // threads_per_run)


def run_sweep(args: argparse.Namespace, validate: Validator) -> int:
    """Plan, validate and run the sweep of ``args``; returns 0, 1 (a run failed or is unfinished) or 130."""
    sweep = load_sweep(args.sweep_file, validate)  # every run's config, before anything is written
    out = Path(args.out) if args.out else DEFAULT_OUT_ROOT / sweep.name
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file")
    if args.dry_run and sweep.searches:  # the final runs' configs are known once tuned
        from rlopt.sweep.tuning import print_tuning_plan

        print_tuning_plan(sweep, out)
        return 0
    per_process = sweep.seeds_per_process
    if getattr(args, "seeds_per_process", None) is not None:  # the command line's, over the sweep file's
        per_process = parse_seeds_per_process(args.seeds_per_process, len(sweep.seeds), ConfigError, "--seeds-per-process")
    if per_process is None:  # auto
        workers = args.workers or default_workers(sweep.threads_per_run)
        per_process = auto_seeds_per_process(len(sweep.arms), len(sweep.seeds), workers)
    sweep = dataclasses.replace(sweep, seeds_per_process=per_process)
    if args.dry_run:
        previous = read_manifest(out)
        planned = plan_runs(sweep, out, previous, args.retry_failed)
        print_plan(sweep, planned, out)
        todo = [run for run in planned if run.action in (START, RESUME)]
        unstackable = unstackable_arms(sweep)
        for line in describe(plan_processes(sweep, todo, out, previous, unstackable), len(todo), sweep, unstackable):
            print(line)
        return 0
    check_same_sweep(read_manifest(out), sweep, out)  # again under the lock; here, before Ray is contacted
    if args.storage is not None:  # opened before OUT is written: a bad URL leaves nothing behind
        if not sweep.searches:
            raise ConfigError("--storage is for a sweep with a search: block")
        from rlopt.sweep.tuning import open_storage

        open_storage(args.storage)
    session: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if args.backend == "ray":  # contacted before OUT is written: a wrong address leaves nothing behind
        from rlopt.sweep.ray_backend import ray_session

        session = ray_session(args.address, (args.workers or default_workers(sweep.threads_per_run)) * sweep.threads_per_run)
    with session as ray:
        out = out.absolute()
        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"--out: cannot create {out} ({err.strerror or err})") from None
        try:
            with SweepLock(out):
                return _tune_and_run(sweep, out, args, ray, validate) if sweep.searches else _run(sweep, out, args, ray)
        except ConfigError:
            if created and not any(p.name != ".lock" for p in out.iterdir()):
                shutil.rmtree(out, ignore_errors=True)  # refused before writing anything but the lock
            raise


def print_plan(sweep: Sweep, planned: list[PlannedRun], out: Path) -> None:
    """The table of runs: arm, seed, status, overrides (``set`` is shown once above it)."""
    print(f"sweep {sweep.name}: {len(planned)} runs -> {out}; base {sweep.base}")
    if sweep.set:
        print("set: " + ", ".join(f"{k}={format_value(v)}" for k, v in sweep.set.items()))
    overrides = {arm.name: ", ".join(f"{k}={format_value(v)}" for k, v in arm.overrides.items()) or "-"
                 for arm in sweep.arms}  # fmt: skip
    rows = [(p.spec.arm, str(p.spec.seed), _ACTION_LABELS[p.action], overrides[p.spec.arm]) for p in planned]
    header = ("arm", "seed", "status", "overrides")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])


def _write_configs(out: Path, planned: list[PlannedRun]) -> None:
    """``OUT/configs/<arm>/seed_<k>.yaml``: the resolved config each run is started from."""
    for run, text in zip(planned, config_texts([run.spec for run in planned])):
        atomic_write_bytes(out / run.spec.config_file, text.encode("utf-8"))


def _prepare(out: Path, run: PlannedRun) -> None:
    """A run that starts afresh gets an empty run directory (no stale TensorBoard points)."""
    run_dir = out / run.spec.run_dir
    if run.action == START and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run(sweep: Sweep, out: Path, args: argparse.Namespace, ray: Any = None) -> int:
    """Plan, write the manifest and configs, run what is left (on ``ray`` when connected)."""
    previous = read_manifest(out)
    planned = plan_runs(sweep, out, previous, args.retry_failed)
    if ray is not None:
        from rlopt.sweep.ray_backend import check_shared_storage

        check_shared_storage(ray, out)  # a ConfigError here leaves OUT as it was
    manifest = Manifest(sweep, out, planned, previous)
    manifest.write()  # first: a directory with a manifest is a sweep directory, whatever else is missing
    write_sweep_file(sweep, out)
    _write_configs(out, planned)
    hparams = hparam_table(sweep)
    for run in planned:  # finished by a driver that was killed before writing them
        if run.action == FINISHED:
            _finish(sweep, out, run.spec, hparams)
    todo = [run for run in planned if run.action in (START, RESUME)]
    unstackable = unstackable_arms(sweep)
    processes = plan_processes(sweep, todo, out, previous, unstackable)
    counts = Counter(run.action for run in planned)
    workers = args.workers or default_workers(sweep.threads_per_run)
    cluster = args.backend == "ray" and args.address
    in_flight = (args.workers or "all") if cluster else workers
    print(
        f"sweep {sweep.name}: {len(planned)} runs ({counts[FINISHED]} finished, {counts[FAILED]} failed and skipped, "
        f"{counts[RESUME]} to resume, {counts[START]} to start), {in_flight} at a time on {args.backend} -> {out}",
        flush=True,
    )
    if sweep.seeds_per_process > 1:
        print("\n".join(describe(processes, len(todo), sweep, unstackable)), flush=True)
    for run in todo:
        _prepare(out, run)
    jobs = [process_job(out, process, sweep.threads_per_run) for process in processes]
    bar = tqdm(total=len(todo), unit="run", disable=None, dynamic_ncols=True, file=sys.stderr)

    def on_start(index: int) -> None:
        process = processes[index]
        point_logs(out, process)
        for run in process.runs:
            manifest.set_stack(run.spec, process.seeds if process.stacked else None)
            manifest.update(run.spec, "running", write=run is process.runs[-1])

    def on_done(index: int, code: int, seconds: float) -> None:
        process = processes[index]
        for run in process.runs:
            tqdm.write(_record(sweep, out, manifest, hparams, process, run, code, seconds), file=sys.stdout)
        manifest.write()
        bar.update(len(process.runs))
        sys.stdout.flush()

    try:
        interrupted = _backend(sweep, args, ray)(jobs, on_start, on_done)
    finally:
        bar.close()
    statuses = Counter(manifest.statuses())
    print(f"sweep {sweep.name}: {statuses['finished']}/{len(planned)} finished, {statuses['failed']} failed, "
          f"{statuses['pending']} pending -> {out / 'manifest.json'}", flush=True)  # fmt: skip
    if interrupted:
        print("rlopt: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if statuses["finished"] == len(planned) else EXIT_RUNS_FAILED


def _record(sweep: Sweep, out: Path, manifest: Manifest, hparams: dict[tuple[str, int], dict[str, Any]],
            process: Process, run: PlannedRun, code: int, seconds: float) -> str:  # fmt: skip
    """Record how one run of a finished process ended (manifest entry, HParams, curve file; not
    written yet); the line that says it. A stack's seed is finished by its ``summary.json`` whatever
    the exit code (a crash after some seeds wrote theirs), failed by the summary's ``error``; each
    seed's seconds are its share of the process's."""
    spec = run.spec
    share = seconds / len(process.runs)
    summary = _read_summary(out / spec.run_dir) if code == 0 or process.stacked else None
    where = f"{spec.arm} seed {spec.seed}"
    if summary is not None and "error" not in summary:
        _finish(sweep, out, spec, hparams, summary)
        manifest.update(spec, "finished", 0, share, write=False)
        return f"{where}: {sweep.metric}={format_value(summary.get(sweep.metric))} ({share:.1f} s)"
    if summary is not None:  # its stack went on without it
        manifest.update(spec, "failed", EXIT_SEED_FAILED, share, write=False)
        return f"{where}: FAILED: {summary['error']} ({share:.1f} s); log {out / process.runs[0].spec.log_file}"
    if code == EXIT_INTERRUPTED:
        manifest.update(spec, "pending", code, share, write=False)
        return f"{where}: interrupted, resumes next time ({share:.1f} s)"
    manifest.update(spec, "failed", code, share, write=False)
    return f"{where}: FAILED with exit code {code} ({share:.1f} s); log {out / process.runs[0].spec.log_file}"


def _backend(sweep: Sweep, args: argparse.Namespace, ray: Any) -> Callable[[list[RunJob], Any, Any], bool]:
    """``run_jobs(jobs, on_start, on_done) -> interrupted`` on the local pool or on ``ray``."""
    workers = args.workers or default_workers(sweep.threads_per_run)
    if args.backend == "ray":
        from rlopt.sweep.ray_backend import run_ray

        limit = args.workers if args.address else workers
        return lambda jobs, on_start, on_done: run_ray(ray, jobs, sweep.threads_per_run, limit, on_start, on_done)
    return lambda jobs, on_start, on_done: run_local(jobs, workers, on_start, on_done)


def _tune_and_run(sweep: Sweep, out: Path, args: argparse.Namespace, ray: Any, validate: Validator) -> int:
    """A sweep with a ``search:`` block: tune each arm (:mod:`rlopt.sweep.tuning`), then the final runs."""
    from rlopt.sweep.tuning import default_storage, open_storage, open_studies, tune

    previous = read_manifest(out)
    check_same_sweep(previous, sweep, out)  # the final runs' configs are checked once tuned, by _run
    storage = open_storage(args.storage or default_storage(out))
    studies = open_studies(sweep, storage)  # refuses a stored study with another space
    if previous is None:  # OUT is a sweep directory from the start: a killed tuning resumes
        Manifest(sweep, out, plan_runs(sweep, out, None, args.retry_failed), None).write()
    env = {name: str(sweep.threads_per_run) for name in THREAD_VARIABLES}
    tuned = tune(sweep, out, studies, validate, env, _backend(sweep, args, ray))
    return tuned if isinstance(tuned, int) else _run(tuned, out, args, ray)


def _finish(sweep: Sweep, out: Path, spec: RunSpec, hparams: dict[tuple[str, int], dict[str, Any]],
            summary: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Write a finished run's HParams (once) into its run directory and its curve file (``OUT/curves/``)."""
    run_dir = out / spec.run_dir
    summary = summary if summary is not None else _read_summary(run_dir)
    if summary is None:
        return
    write_run_curve(out, spec.arm, spec.seed, spec.run_dir, sweep.curve)
    write_hparams(run_dir, hparams[(spec.arm, spec.seed)], sweep.metric, summary.get(sweep.metric),
                  int(summary.get("total_steps", 0)))  # fmt: skip
