"""Process-wide setup of a run: seeding, torch threads and the device.

Called where a run starts (``build_agent``, i.e. ``from_config``, the CLI and the sweep),
never by a constructor: building an agent draws its initial weights from torch's global RNG like
any ``nn.Module``, but does not reseed the process or change its thread count.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch

from rlopt.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs (envs are seeded at their first reset)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


MALLOC_TRIM_THRESHOLD = 1 << 30
"""glibc ``M_TRIM_THRESHOLD`` set by :func:`keep_freed_memory`: free memory at the top of the heap
is returned to the OS only above this many bytes (default: dynamic, a few MiB)."""
MALLOC_MMAP_THRESHOLD = 32 << 20
"""glibc ``M_MMAP_THRESHOLD`` set by :func:`keep_freed_memory` (its maximum on 64-bit): blocks up to
this size come from the heap, not from a fresh ``mmap`` whose pages fault in on every use."""
_MALLOPT = {"M_TRIM_THRESHOLD": (-1, MALLOC_TRIM_THRESHOLD), "M_MMAP_THRESHOLD": (-3, MALLOC_MMAP_THRESHOLD)}
"""glibc's ``mallopt`` parameter numbers (malloc.h) and the values set."""


def keep_freed_memory() -> bool:
    """Keep the memory torch frees for its next allocation (glibc ``mallopt(3)``), unless the user set
    ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` in the environment. A training step
    allocates and frees its activations every step; with glibc's dynamic defaults a stack of seeds'
    ``[K, 256, 64]`` activations (655 KB each) goes back to the OS and faults in again every step:
    ≈ 700 page faults per PPO step at K = 10, a fifth of its time (``docs/performance.md#stacked``).
    PyTorch's CPU performance guide recommends a caching allocator (jemalloc, TCMalloc) for the
    same reason. Peak memory is unchanged; memory freed below the peak stays with the process.
    Returns whether the thresholds were set (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):  # musl, another libc
        return False
    done = True
    for name, (number, value) in _MALLOPT.items():
        if f"MALLOC_{name[2:]}_" not in os.environ:
            done = bool(libc.mallopt(ctypes.c_int(number), ctypes.c_int(value))) and done
    return done


def start_run(seed: int, threads: int) -> None:
    """``torch.set_num_threads(threads)``, :func:`keep_freed_memory` and :func:`seed_everything`:
    call right before the networks of a run are built, so the seed fixes their initial weights and
    every later draw."""
    torch.set_num_threads(threads)
    keep_freed_memory()
    seed_everything(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' requested but CUDA is not available; use device=cpu or auto")
    return torch.device(name)
