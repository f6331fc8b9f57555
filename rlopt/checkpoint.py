"""Checkpoints that survive a SIGKILL: atomic writes, tensors-only format, safe loading.

Layout in ``RUN_DIR/checkpoints/``::

    step_000000012288.pt     # tensors and plain containers; torch.load(weights_only=True)
    step_000000012288.env    # pickled vector env (its internal state and RNGs), see below

The ``.pt`` file is written last, so its presence marks a complete checkpoint. The ``.env``
file exists because an arbitrary gymnasium env's internal state can only be captured by
pickling it; it is read only by ``rlopt train --resume`` of a run directory one wrote oneself
(unpickling runs code). Without it a resume restarts the envs from a seed and is not exact.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{12})\.pt$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def checkpoint_path(run_dir: Path, env_steps: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{env_steps:012d}.pt"


def save_checkpoint(run_dir: Path, env_steps: int, state: dict[str, Any], envs: Any, keep: int) -> Path:
    """Write ``state`` (and the pickled envs) for ``env_steps``; keep the newest ``keep``."""
    path = checkpoint_path(run_dir, env_steps)
    try:
        atomic_write_bytes(path.with_suffix(".env"), pickle.dumps(envs))
    except (pickle.PicklingError, TypeError, AttributeError):
        path.with_suffix(".env").unlink(missing_ok=True)  # resume will not be exact: said in README
    atomic_torch_save(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".env").unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: no pickled code is executed."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_envs(path: Path) -> Any | None:
    """The pickled vector env written beside checkpoint ``path`` (trusted: one's own run)."""
    env_path = Path(path).with_suffix(".env")
    if not env_path.is_file():
        return None
    with env_path.open("rb") as handle:
        return pickle.load(handle)
