"""Process-wide setup of a run: seeding, torch threads and the device.

Called where a run starts (``build_agent``, i.e. ``from_config``, the CLI and the sweep),
never by a constructor: building an agent draws its initial weights from torch's global RNG like
any ``nn.Module``, but does not reseed the process or change its thread count.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from rlopt.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs (envs are seeded at their first reset)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def start_run(seed: int, threads: int) -> None:
    """``torch.set_num_threads(threads)`` and :func:`seed_everything`: call right before the networks
    of a run are built, so the seed fixes their initial weights and every later draw."""
    torch.set_num_threads(threads)
    seed_everything(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' requested but CUDA is not available; use device=cpu or auto")
    return torch.device(name)
