"""The Ray backend: one remote task per run (``num_cpus = threads_per_run``) running the same
``rlopt train`` subprocess as the local pool, so manifest, layout and results are the same.

OUT must be on storage that every node sees: before any run, a probe task pinned to each alive
node reads a token the driver wrote into OUT. Ray is imported lazily (an optional extra).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from rlopt.errors import ConfigError
from rlopt.sweep.runner import EXIT_INTERRUPTED, STOP_GRACE_SECONDS, OnDone, OnStart, RunJob, run_job

PROBE_TIMEOUT_SECONDS = 120.0
"""How long the shared-storage probe may wait for a node (it needs no CPU)."""
POLL_SECONDS = 0.5
"""ray.wait timeout between checks for Ctrl-C."""
RAY_TASK_LOST = -1
"""Exit code recorded when Ray itself lost the task (node died, worker crashed)."""
LOCAL_START_ATTEMPTS = 3
"""Tries at starting a local Ray: its raylet has a fixed 30 s to register, which a loaded machine can miss."""


def import_ray() -> Any:
    """``import ray`` or a one-line ConfigError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError('--backend ray: ray is not installed; pip install "rlopt[ray]"') from None
    return ray


def _read_token(path: str) -> str:
    """Probe task body: the token file's content as this node sees it ('' if absent)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def check_shared_storage(ray: Any, out: Path) -> None:
    """Every alive node must read the token the driver writes into OUT; else a one-line ConfigError."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    path = out / f".probe-{token}"
    path.write_text(token, encoding="utf-8")
    try:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        probe = ray.remote(_read_token)
        refs = [
            probe.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            ).remote(str(path))
            for node in nodes
        ]
        try:
            seen = ray.get(refs, timeout=PROBE_TIMEOUT_SECONDS)
        except Exception as err:  # GetTimeoutError, a node lost during the probe
            raise ConfigError(f"--backend ray: the shared-storage probe of {out} failed ({type(err).__name__})") from None
    finally:
        path.unlink(missing_ok=True)
    blind = [node.get("NodeManagerAddress", node["NodeID"]) for node, text in zip(nodes, seen) if text != token]
    if blind:
        raise ConfigError(
            f"--out {out} is not visible from Ray node(s) {', '.join(blind)}: put OUT on storage every node "
            "mounts at the same path (e.g. NFS)"
        )


def start_ray(ray: Any, address: str | None, num_cpus: int) -> None:
    """Connect to the cluster at ``address`` or start a local Ray with ``num_cpus``; else a one-line ConfigError.

    A local start is retried (``LOCAL_START_ATTEMPTS``): Ray raises a bare ``Exception`` when the raylet
    does not register within its fixed 30 s, which happens on a busy machine.
    """
    attempts = 1 if address else LOCAL_START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            return
        except Exception as err:  # ConnectionError, RuntimeError, ValueError, and Ray's bare startup timeout
            ray.shutdown()
            if attempt == attempts:
                where = f"the Ray cluster at {address}" if address else f"a local Ray ({attempts} attempts)"
                raise ConfigError(f"--backend ray: cannot start or reach {where} ({type(err).__name__}: "
                                  f"{' '.join(str(err).split())[:200]})") from None  # fmt: skip


def run_ray(
    jobs: list[RunJob], threads: int, workers: int | None, address: str | None, out: Path,
    on_start: OnStart, on_done: OnDone,
) -> bool:  # fmt: skip
    """Run ``jobs`` as Ray tasks; returns True if Ctrl-C stopped the sweep.

    Without ``address`` a local Ray is started with ``workers * threads`` CPUs; with one, at
    most ``workers`` runs are in flight (all of them when None) and Ray places them by CPU.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        start_ray(ray, address, (workers or 1) * threads)
    try:
        check_shared_storage(ray, out)
        task = ray.remote(run_job).options(num_cpus=threads, max_retries=0)
        limit = workers if workers else len(jobs)
        queue = list(range(len(jobs)))[::-1]
        in_flight: dict[Any, tuple[int, float]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    index = queue.pop()
                    on_start(index)
                    in_flight[task.remote(jobs[index])] = (index, time.monotonic())
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
                for ref in done:
                    index, submitted = in_flight.pop(ref)
                    try:
                        code, seconds = ray.get(ref)
                    except ray.exceptions.RayError:
                        code, seconds = RAY_TASK_LOST, time.monotonic() - submitted
                    on_done(index, code, seconds)
        except KeyboardInterrupt:
            for ref in in_flight:
                ray.cancel(ref)  # KeyboardInterrupt in the task: it SIGINTs its run, which checkpoints
            ray.wait(list(in_flight), num_returns=len(in_flight), timeout=STOP_GRACE_SECONDS)
            for ref, (index, submitted) in in_flight.items():
                try:
                    code, seconds = ray.get(ref, timeout=0)
                except Exception:  # cancelled or still stopping
                    code, seconds = EXIT_INTERRUPTED, time.monotonic() - submitted
                on_done(index, 0 if code == 0 else EXIT_INTERRUPTED, seconds)
            return True
    finally:
        if started_here:
            ray.shutdown()
    return False
