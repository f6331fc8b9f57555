"""rlopt.runtime: process-wide setup of a run (seeding, threads, the allocator's thresholds)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from rlopt.runtime import seed_everything, start_run

_MALLOC_CHILD = """
import ctypes, sys
from rlopt.runtime import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2()
big = libc.malloc(16 << 20)  # a 16 MiB block: mmapped by default (above 128 KiB), from the heap when kept
mmapped = libc.mallinfo2().hblkhd - before.hblkhd
libc.free(big)
before = libc.mallinfo2()
blocks = [libc.malloc(1 << 20) for _ in range(64)]  # 64 MiB of activations, then all freed
for block in blocks:
    libc.free(block)
print(kept, mmapped, libc.mallinfo2().arena - before.arena)
"""


def _malloc_child(mode: str) -> tuple[str, int, int]:
    """(keep_freed_memory's result, bytes mmapped by a 16 MiB malloc, heap bytes still held after 64 MiB were freed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _MALLOC_CHILD, mode], capture_output=True, text=True, env=env, check=True)
    kept, mmapped, heap = out.stdout.split()
    return kept, int(mmapped), int(heap)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_keeps_blocks_on_the_heap_after_free() -> None:
    kept, mmapped, heap = _malloc_child("keep")
    _, default_mmapped, default_heap = _malloc_child("default")
    assert kept == "True"
    assert default_mmapped >= 16 << 20 and default_heap < 16 << 20  # glibc's defaults: mmapped, then trimmed
    assert mmapped == 0 and heap >= 32 << 20  # kept: from the heap, and (most of it) still held for the next step


def test_start_run_seeds_every_generator_and_sets_threads() -> None:
    threads = torch.get_num_threads()
    try:
        start_run(7, 1)
        assert torch.get_num_threads() == 1
        draws = (random.random(), np.random.rand(), torch.rand(1).item())
        seed_everything(7)
        assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    finally:
        torch.set_num_threads(threads)
