"""The Ray backend: one remote task per run (``num_cpus = threads_per_run``) running the same
``rlopt train`` subprocess as the local pool, so manifest, layout and results are the same.

Ray is contacted before OUT is written (:func:`ray_session`; a cluster address is first probed
with a plain TCP connect, so a wrong one fails in seconds, in one line, without Ray's log). OUT
must be on storage that every node sees: before the manifest is written, a probe task pinned to
each alive node reads a token the driver wrote into OUT. Ray is imported lazily (an optional extra).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from rlopt.errors import ConfigError, shorten
from rlopt.sweep.messages import SHOWN_CHARS
from rlopt.sweep.runner import EXIT_INTERRUPTED, STOP_GRACE_SECONDS, OnDone, OnStart, RunJob, run_job

PROBE_TIMEOUT_SECONDS = 120.0
"""How long the shared-storage probe may wait for a node (it needs no CPU)."""
POLL_SECONDS = 0.5
"""ray.wait timeout between checks for Ctrl-C."""
RAY_TASK_LOST = -1
"""Exit code recorded when Ray itself lost the task (node died, worker crashed)."""
LOCAL_START_ATTEMPTS = 3
"""Tries at starting a local Ray: its raylet has a fixed 30 s to register, which a loaded machine can miss."""
CONNECT_TIMEOUT_SECONDS = 5.0
"""TCP connect to a cluster address before ``ray.init``, which retries a dead address for minutes."""
UNPROBED_ADDRESSES = ("auto", "local")
"""``--address`` values that name no host (Ray finds or starts the cluster itself)."""
CLUSTER_CONNECT_ATTEMPTS = 5
"""Seconds (~1 s tries) ``ray.init`` may spend on a cluster address that accepts TCP but does not
answer as Ray (Ray's default is 20, logging a line per try); set as ``RAY_gcs_server_port_wait_time_s``
unless the environment sets it."""
_RAY_WAIT_VARIABLE = "RAY_gcs_server_port_wait_time_s"


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


def probe_address(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """A TCP connect to ``HOST:PORT`` (or ``ray://HOST:PORT``) within ``timeout``; else a one-line ConfigError."""
    if address in UNPROBED_ADDRESSES:
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 2**16:
        raise ConfigError(f"--address {shorten(address, SHOWN_CHARS)}: give HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:  # refused, unreachable, timed out, unknown host
        reason = err.strerror or str(err) or type(err).__name__
        raise ConfigError(f"--backend ray: cannot reach the Ray cluster at {shorten(address, SHOWN_CHARS)} ({reason}); "
                          "is `ray start --head` running there?") from None  # fmt: skip


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[Any]:
    """Ray, connected to ``address`` (probed first) or started locally with ``num_cpus``; shut down
    after if it was started here. Any failure is a one-line ConfigError, before OUT is written."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            probe_address(address)
        start_ray(ray, address, num_cpus)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


@contextlib.contextmanager
def _quiet_connect() -> Iterator[None]:
    """While ``ray.init`` connects to a cluster: at most :data:`CLUSTER_CONNECT_ATTEMPTS` tries, and
    Ray's log lines (its C++ core writes to file descriptor 2) and warnings discarded: a failure is
    reported in one line by the caller."""
    set_here = _RAY_WAIT_VARIABLE not in os.environ
    if set_here:
        os.environ[_RAY_WAIT_VARIABLE] = str(CLUSTER_CONNECT_ATTEMPTS)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if set_here:
            os.environ.pop(_RAY_WAIT_VARIABLE, None)


def start_ray(ray: Any, address: str | None, num_cpus: int) -> None:
    """Connect to the cluster at ``address`` or start a local Ray with ``num_cpus``; else a one-line ConfigError.

    A local start is retried (``LOCAL_START_ATTEMPTS``): Ray raises a bare ``Exception`` when the raylet
    does not register within its fixed 30 s, which happens on a busy machine.
    """
    attempts = 1 if address else LOCAL_START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            if address:
                with _quiet_connect():
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


def run_ray(ray: Any, jobs: list[RunJob], threads: int, workers: int | None, on_start: OnStart, on_done: OnDone) -> bool:
    """Run ``jobs`` as tasks of the connected ``ray`` (:func:`ray_session`); True if Ctrl-C stopped the sweep.

    At most ``workers`` runs are in flight (all of them when None) and Ray places them by CPU.
    """
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
    return False
