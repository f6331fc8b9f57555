"""Run the sweep's ``rlopt train`` subprocesses: the job description and the local pool.

Each run is the ordinary CLI in a subprocess, its stdout and stderr appended to a log file
beside the run directory (``rlopt train --run-dir`` refuses a non-empty directory). Children
start in their own session, so a terminal Ctrl-C reaches only the driver, which forwards one
SIGINT to each child (the trainer finishes its update, checkpoints and exits 130); on Linux they
also die with the driver (``PR_SET_PDEATHSIG``), so a killed driver leaves no orphan writing
into OUT.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Callable

START_MARKER = "# rlopt sweep: start:"
"""First line of every attempt in a run's log (count them to count attempts)."""
EXIT_INTERRUPTED = 130
"""Exit code of ``rlopt train`` after SIGINT (checkpoint written): the run stays pending."""
POLL_SECONDS = 0.05
"""How often the pool looks for finished children."""
STOP_GRACE_SECONDS = 60.0
"""How long interrupted children may take to finish their update and checkpoint before SIGKILL."""
_PR_SET_PDEATHSIG = 1
"""prctl(2) option: signal delivered to the child when its parent dies."""

OnStart = Callable[[int], None]
OnDone = Callable[[int, int, float], None]


@dataclass(frozen=True)
class RunJob:
    """One subprocess: ``python ARGS``, extra environment, log file, working directory (picklable)."""

    args: list[str]
    """Arguments after the python executable, e.g. ``["-m", "rlopt", "train", ...]``."""
    log_path: str
    env: dict[str, str] = field(default_factory=dict)
    """Variables set on top of the worker's environment (OMP_NUM_THREADS, MKL_NUM_THREADS)."""
    cwd: str | None = None
    """Working directory of the child, if it exists where the child runs (the driver's)."""


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive SIGKILL when the process that started it dies, with SIGINT
    unblocked (a Ray task's thread blocks it, and a blocked signal stays blocked across exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def start_process(job: RunJob) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Append a start marker to the log and start the child with its output appended there."""
    log = open(job.log_path, "ab")  # noqa: SIM115 (closed by the caller when the child exits)
    log.write(f"{START_MARKER} {' '.join(job.args)}\n".encode())
    log.flush()
    cwd = job.cwd if job.cwd is not None and os.path.isdir(job.cwd) else None
    try:
        proc = subprocess.Popen(
            [sys.executable, *job.args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **job.env}, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent(),
        )  # fmt: skip
    except BaseException:
        log.close()
        raise
    return proc, log


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGINT each running child (it checkpoints and exits 130); SIGKILL what is left after ``grace``
    seconds or on a second Ctrl-C."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    try:
        for proc in processes:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_job(job: RunJob) -> tuple[int, float]:
    """Run one job to completion (a Ray task body); returns (exit code, seconds)."""
    started = time.monotonic()
    proc, log = start_process(job)
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # ray.cancel: let the run checkpoint
        stop_processes([proc])
        code = EXIT_INTERRUPTED
    finally:
        log.close()
    return code, time.monotonic() - started


def run_local(jobs: list[RunJob], workers: int, on_start: OnStart, on_done: OnDone) -> bool:
    """Run ``jobs`` on a pool of ``workers`` subprocesses; returns True if Ctrl-C stopped the pool.

    ``on_start(i)`` and ``on_done(i, exit_code, seconds)`` are called in the driver's thread as it
    happens; after Ctrl-C every run still going is reported with exit code 130.
    """
    queue = deque(range(len(jobs)))
    running: dict[int, tuple[subprocess.Popen[bytes], IO[bytes], float]] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                index = queue.popleft()
                on_start(index)
                proc, log = start_process(jobs[index])
                running[index] = (proc, log, time.monotonic())
            time.sleep(POLL_SECONDS)
            for index in [i for i, (proc, _, _) in running.items() if proc.poll() is not None]:
                proc, log, started = running.pop(index)
                log.close()
                on_done(index, proc.returncode, time.monotonic() - started)
    except KeyboardInterrupt:
        stop_processes([proc for proc, _, _ in running.values()])
        for index, (proc, log, started) in running.items():
            log.close()  # a run that completed just before Ctrl-C keeps its exit code 0
            on_done(index, 0 if proc.returncode == 0 else EXIT_INTERRUPTED, time.monotonic() - started)
        return True
    return False
