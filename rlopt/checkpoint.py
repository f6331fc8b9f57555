"""Checkpoints that survive a SIGKILL: atomic writes, tensors-only format, safe loading.

Run-directory layer (torch): what a checkpoint holds and where; the atomic write itself is the
torch-free :mod:`rlopt.files`. Layout in ``RUN_DIR/checkpoints/``::

    step_000000012288.pt     # tensors and plain containers; torch.load(weights_only=True)
    step_000000012288.env    # pickled vector env (its internal state and RNGs), see below
    best.pt                  # with eval.every_steps: the best evaluated state so far (never resumed from)

Each file is written with :func:`rlopt.files.atomic_write_bytes` (temporary file, fsync,
``os.replace``, directory fsync): a crash leaves either the old state or the new file, never a
truncated one. The ``.pt`` file is written last, so its presence marks a complete checkpoint;
leftover temporary files and ``.env`` files without their ``.pt`` are ignored and removed at the
next save. The ``.env`` file exists because an arbitrary gymnasium env's internal state can only be captured by
pickling it; it is read only by ``rlopt train --resume`` of a run directory one wrote oneself
(unpickling runs code). Without it a resume restarts the envs from a seed and is not exact.
"""

from __future__ import annotations

import copy
import pickle
import random
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv

from rlopt.errors import ConfigError
from rlopt.files import TEMP_SUFFIX, atomic_write_bytes
from rlopt.run_files import CHECKPOINT_DIR, list_checkpoints

__all__ = ["BEST_CHECKPOINT", "CHECKPOINT_DIR", "atomic_torch_save", "best_checkpoint_path", "checkpoint_path",
           "first_readable", "list_checkpoints", "load_checkpoint", "load_envs", "pickle_envs", "prune_checkpoints",
           "rng_state", "save_best_checkpoint", "save_checkpoint", "set_rng_state"]  # fmt: skip

BEST_CHECKPOINT = "best.pt"
"""The best checkpoint of the evaluations during training; its name never matches ``step_*.pt``, so
:func:`list_checkpoints`, pruning and ``--resume`` ignore it."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def rng_state() -> dict[str, Any]:
    """Global RNG states of python, numpy and torch as tensors/plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pickle_envs(envs: Any) -> bytes:
    """Pickle a vector env with its sub-envs' internal states and RNGs.

    A ``SyncVectorEnv`` keeps the constructors it was built from (``env_fns``, closures made by
    ``gym.make_vec`` that cannot be pickled) but never calls them again, so they are left out.
    """
    if isinstance(envs, SyncVectorEnv) and envs.env_fns is not None:
        envs = copy.copy(envs)  # shallow: the sub-envs and buffers are pickled as they are
        envs.env_fns = None
    return pickle.dumps(envs)


def checkpoint_path(run_dir: Path, env_steps: int) -> Path:
    """``RUN_DIR/checkpoints/step_<env_steps, 12 digits>.pt``."""
    return run_dir / CHECKPOINT_DIR / f"step_{env_steps:012d}.pt"


def save_checkpoint(run_dir: Path, env_steps: int, state: dict[str, Any], envs: Any, keep: int) -> Path:
    """Write ``state`` (and the pickled envs) for ``env_steps``; keep the newest ``keep``."""
    path = checkpoint_path(run_dir, env_steps)
    try:
        env_bytes: bytes | None = pickle_envs(envs)
    except Exception:  # an env holding unpicklable handles (sockets, ctypes, renderers)
        env_bytes = None
    if env_bytes is None:
        path.with_suffix(".env").unlink(missing_ok=True)  # the resume will restart episodes from the seed
    else:
        atomic_write_bytes(path.with_suffix(".env"), env_bytes)
    atomic_torch_save(state, path)
    prune_checkpoints(run_dir, keep)
    return path


def best_checkpoint_path(run_dir: Path) -> Path:
    """``RUN_DIR/checkpoints/best.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT


def save_best_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically (over)write ``best.pt`` with ``state`` (no envs: it is for evaluation and loading)."""
    path = best_checkpoint_path(run_dir)
    atomic_torch_save(state, path)
    return path


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; remove older ones, leftover temporary
    files of interrupted writes and ``.env`` files whose ``.pt`` never appeared."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    complete = list_checkpoints(run_dir)
    for old in complete[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".env").unlink(missing_ok=True)
    for leftover in (Path(run_dir) / CHECKPOINT_DIR).iterdir():
        partial_write = leftover.name.startswith((".step_", f".{BEST_CHECKPOINT}.")) and leftover.name.endswith(TEMP_SUFFIX)
        orphan_env = leftover.suffix == ".env" and not leftover.with_suffix(".pt").is_file()
        if partial_write or orphan_env:
            leftover.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: no pickled code is executed. Torch's warnings about a file
    that is no checkpoint (``Detected pickle protocol …``) are silenced: the caller reports it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


T = TypeVar("T")


def first_readable(
    paths: Sequence[Path], read: Callable[[Path], T], unreadable: type[Exception], what: str, hint: str = ""
) -> tuple[Path, T, list[str]]:
    """``read`` of the first of ``paths`` (newest first) that does not raise ``unreadable``, with
    the messages of those skipped before it (a torn newest checkpoint falls back to the previous
    one). None readable: one ConfigError line ``what: <the oldest's message> ...{hint}``."""
    skipped: list[str] = []
    for path in paths:
        try:
            return path, read(path), skipped
        except unreadable as err:
            skipped.append(str(err))
    also = f" (and {len(skipped) - 1} newer ones)" if len(skipped) > 1 else ""
    raise ConfigError(f"{what}: {skipped[-1]}{also}; no readable checkpoint left{hint}")


def load_envs(path: Path) -> Any | None:
    """The pickled vector env written beside checkpoint ``path`` (trusted: one's own run)."""
    env_path = Path(path).with_suffix(".env")
    if not env_path.is_file():
        return None
    with env_path.open("rb") as handle:
        return pickle.load(handle)
