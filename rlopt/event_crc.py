"""CRC-32C of TensorBoard event records in numpy, for the event writer.

Every record of an event file carries two masked CRC-32C checksums (TFRecord format). TensorBoard's
writer computes them in pure Python, one table lookup per byte: ≈ 145 µs for a 372-byte update
event, more than building the event, and K times that per update for K stacked seeds
(``docs/performance.md#stacked``). CRC-32C is linear over GF(2): the register after ``n`` bytes is
the XOR of each byte's contribution, which depends only on the byte and the number of bytes after
it, and of the initial value's (Castagnoli et al. 1993; the zlib ``crc32_combine`` argument). With
those contributions tabulated, a checksum is one numpy gather and one XOR reduction (≈ 10 µs).
:func:`install` makes TensorBoard's record writer use :func:`masked_crc32c`; the bytes written are
identical (tests/test_event_crc.py checks against TensorBoard's own function).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_TABLE_BYTES = 2048
"""Records up to this long use the tables (2 MiB, built in ≈ 30 ms when the first event is written);
longer ones (rare: an hparams or text summary) TensorBoard's own loop."""
_POLYNOMIAL = 0x82F63B78
"""CRC-32C (Castagnoli), reflected."""
_MASK_DELTA = 0xA282EAD8
"""TFRecord's mask: ``rotate_right(crc, 15) + 0xA282EAD8``."""
_STUB_GFILE = "tensorboard.compat.tensorflow_stub.io.gfile"
"""TensorBoard's own file layer (no TensorFlow installed): each write of its ``GFile`` appends to the file."""
_tables: tuple[np.ndarray, np.ndarray] | None = None


def _byte_table() -> np.ndarray:
    """The 256-entry table of the reflected CRC-32C: one byte from a zero register."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """``after[j, b]``: register contribution of byte ``b`` followed by ``j`` bytes; ``initial[n]``:
    the contribution of the initial register ``0xFFFFFFFF`` after ``n`` bytes."""
    byte = _byte_table()
    after = np.empty((MAX_TABLE_BYTES, 256), dtype=np.uint32)
    initial = np.empty(MAX_TABLE_BYTES + 1, dtype=np.uint32)
    after[0] = byte
    initial[0] = 0xFFFFFFFF
    for j in range(1, MAX_TABLE_BYTES):  # one zero byte more: crc = (crc >> 8) ^ table[crc & 0xFF]
        after[j] = (after[j - 1] >> 8) ^ byte[after[j - 1] & 0xFF]
    for n in range(1, MAX_TABLE_BYTES + 1):
        previous = int(initial[n - 1])
        initial[n] = (previous >> 8) ^ int(byte[previous & 0xFF])
    return after, initial


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (up to :data:`MAX_TABLE_BYTES`; longer: ValueError)."""
    global _tables
    n = len(data)
    if n > MAX_TABLE_BYTES:
        raise ValueError(f"crc32c: {n} bytes, the tables cover {MAX_TABLE_BYTES}")
    if _tables is None:
        _tables = _build_tables()
    after, initial = _tables
    values = np.frombuffer(data, dtype=np.uint8)
    register = np.bitwise_xor.reduce(after[np.arange(n - 1, -1, -1), values]) if n else np.uint32(0)
    return (int(register) ^ int(initial[n])) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``: TensorBoard's ``masked_crc32c``, faster."""
    if len(data) > MAX_TABLE_BYTES:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as python_loop

        return int(python_loop(data))
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def install() -> Any:
    """Make TensorBoard's record writer (which torch's ``SummaryWriter`` writes through) checksum with
    :func:`masked_crc32c`; returns the writer module. Idempotent."""
    from tensorboard.summary.writer import record_writer

    record_writer.masked_crc32c = masked_crc32c
    return record_writer


def record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord: length, its masked CRC, data, its masked CRC (TensorBoard's
    ``RecordWriter.write``)."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def append_events(file_writer: Any, events: Sequence[Any]) -> None:
    """Write ``events`` (``Event`` protos with their step and wall time) to the event file of torch's
    ``FileWriter`` as one append, in this thread, after everything queued before: what its writer
    thread would write one record at a time, each hand-off through its 10-slot queue waiting for that
    thread in a burst (K seeds' bursts: ≈ 2 s of a 10-seed A2C stack, ``docs/performance.md#stacked``).
    Only on TensorBoard's own file layer, whose every write appends (the file is written up to the
    end once the queue is flushed); with TensorFlow's, which keeps its own file position, the
    events go through the queue."""
    event_writer = file_writer.event_writer
    path = getattr(event_writer, "_file_name", None)
    if path is None or type(getattr(event_writer, "_general_file_writer", None)).__module__ != _STUB_GFILE:
        for event in events:
            event_writer.add_event(event)
        return
    file_writer.flush()  # every event queued earlier is in the file
    with open(path, "ab") as file:
        file.write(b"".join(record(event.SerializeToString()) for event in events))


def append_summaries(file_writer: Any, pending: Sequence[tuple[Any, int, float]]) -> None:
    """:func:`append_events` of ``(Summary, step, wall_time)`` triples, each as its ``Event``."""
    from tensorboard.compat.proto.event_pb2 import Event

    append_events(file_writer, [Event(summary=summary, step=step, wall_time=wall_time) for summary, step, wall_time in pending])
