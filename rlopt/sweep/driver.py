"""The sweep driver behind ``rlopt sweep``: validate every run, write the manifest and resolved
configs, then run what is not finished yet on the local pool or on Ray, writing each finished
run's HParams. :mod:`rlopt.sweep.command` parses the arguments and calls :func:`run_sweep`.
"""

from __future__ import annotations

import argparse
import contextlib
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
from rlopt.sweep.rendering import config_texts
from rlopt.sweep.spec import RunSpec, Sweep, Validator, format_value, load_sweep
from rlopt.report.curve_file import write_run_curve
from rlopt.run_files import SUMMARY_FILE

EXIT_RUNS_FAILED = 1
DEFAULT_OUT_ROOT = Path("sweeps")
"""Default OUT is ``sweeps/<name>`` in the working directory."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
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
    if args.dry_run:
        planned = plan_runs(sweep, out, read_manifest(out), args.retry_failed)
        print_plan(sweep, planned, out)
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


def _job(out: Path, run: PlannedRun, threads: int) -> RunJob:
    run_dir = out / run.spec.run_dir
    if run.action == RESUME:
        args = ["-m", "rlopt", "train", "--resume", str(run_dir), "--no-progress"]
    else:
        args = ["-m", "rlopt", "train", str(out / run.spec.config_file), "--run-dir", str(run_dir), "--no-progress"]
    env = {name: str(threads) for name in THREAD_VARIABLES}
    return RunJob(args=args, log_path=str(out / run.spec.log_file), env=env, cwd=os.getcwd())


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
    counts = Counter(run.action for run in planned)
    workers = args.workers or default_workers(sweep.threads_per_run)
    cluster = args.backend == "ray" and args.address
    in_flight = (args.workers or "all") if cluster else workers
    print(
        f"sweep {sweep.name}: {len(planned)} runs ({counts[FINISHED]} finished, {counts[FAILED]} failed and skipped, "
        f"{counts[RESUME]} to resume, {counts[START]} to start), {in_flight} at a time on {args.backend} -> {out}",
        flush=True,
    )
    for run in todo:
        _prepare(out, run)
    jobs = [_job(out, run, sweep.threads_per_run) for run in todo]
    bar = tqdm(total=len(todo), unit="run", disable=None, dynamic_ncols=True, file=sys.stderr)

    def on_start(index: int) -> None:
        manifest.update(todo[index].spec, "running")

    def on_done(index: int, code: int, seconds: float) -> None:
        spec = todo[index].spec
        summary = _read_summary(out / spec.run_dir) if code == 0 else None
        if summary is not None:
            _finish(sweep, out, spec, hparams, summary)
            manifest.update(spec, "finished", code, seconds)
            line = f"{spec.arm} seed {spec.seed}: {sweep.metric}={format_value(summary.get(sweep.metric))} ({seconds:.1f} s)"
        elif code == EXIT_INTERRUPTED:
            manifest.update(spec, "pending", code, seconds)
            line = f"{spec.arm} seed {spec.seed}: interrupted, resumes next time ({seconds:.1f} s)"
        else:
            manifest.update(spec, "failed", code, seconds)
            line = f"{spec.arm} seed {spec.seed}: FAILED with exit code {code} ({seconds:.1f} s); log {out / spec.log_file}"
        bar.update(1)
        tqdm.write(line, file=sys.stdout)
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
