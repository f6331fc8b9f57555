"""Learning curves from TensorBoard event files: every point of one scalar tag, and a common step grid.

TensorBoard's ``EventAccumulator`` keeps a 10k-point reservoir sample per tag and decodes every
record; this reader keeps every point and decodes only what it needs. An event file is a sequence
of TFRecords (``uint64 length, uint32 masked crc, payload, uint32 masked crc``) whose payloads are
``Event`` protos. CRCs are not verified; a truncated last record (a writer killed mid-write) is
ignored.

Semantics of a run directory, as TensorBoard shows it:

* the event files directly inside the directory are read in name order (a name starts with the
  writer's creation second, see ``rlopt.run_files.wait_for_later_event_file_name``);
* a ``SessionLog.START`` event at step ``s`` (what ``SummaryWriter(purge_step=s)`` writes when a run
  is resumed) drops every point read before it with ``step >= s``;
* of several points at one step, the last one written is kept; non-finite values are dropped.

Fast path: for ``SummaryWriter.add_scalar`` events (``wall_time, step, summary{value{tag,
simple_value}}``) the records are located by searching the payload bytes that precede the
value, decoded with numpy, and each one is confirmed against its TFRecord length field. A file
where some occurrence of the tag is not such a record (other layouts, ``new_style`` tensors)
is read by the exact path: walk the TFRecord framing, skip records whose bytes do not contain
the tag, decode the rest with ``Event.FromString``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2

_HEADER = 12
"""TFRecord bytes before the payload: uint64 length + uint32 masked crc of the length."""

_FOOTER = 4
"""TFRecord bytes after the payload: uint32 masked crc of the payload."""

_WALL_TIME = b"\x09"
"""``Event.wall_time`` key byte (field 1, fixed64); the double follows in 8 bytes."""

_STEP = 0x10
"""``Event.step`` key byte (field 2, varint)."""

_MAX_VARINT = 10
"""Longest protobuf varint (a negative int64)."""

_START_CANDIDATE = re.compile(rb"\x3a(?:[\x80-\xff]{1,4}[\x00-\x7f]|[\x02-\x7f])\x08\x01", re.DOTALL)
"""``Event.session_log`` (field 7) whose first field is ``status = START`` (1): a resume marker."""

_TENSOR_DTYPES = {1: "<f4", 2: "<f8", 19: "<f2"}
"""TensorProto dtype enum -> numpy dtype, for ``add_scalar(..., new_style=True)`` values."""


@dataclass(frozen=True)
class Curve:
    """One run's points of one scalar tag, sorted by step, one value per step."""

    steps: np.ndarray
    """Env steps (int64), strictly increasing."""
    values: np.ndarray
    """Scalar values (float64), finite."""

    def __len__(self) -> int:
        return int(self.steps.size)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def event_files(run_dir: str | Path) -> list[Path]:
    """TensorBoard event files directly inside ``run_dir``, in the order TensorBoard reads them."""
    folder = Path(run_dir)
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.iterdir() if "tfevents" in p.name and not p.name.endswith(".profile-empty") and p.is_file()),
        key=lambda p: p.name,
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _scalar_prefix(tag: str) -> bytes:
    """Payload bytes of an ``add_scalar`` event from ``summary`` up to the 4 value bytes (exclusive)."""
    value = summary_pb2.Summary.Value(tag=tag, simple_value=0.0)
    summary = summary_pb2.Summary(value=[value]).SerializeToString()
    encoded = event_pb2.Event(summary=summary_pb2.Summary.FromString(summary)).SerializeToString()
    assert encoded.endswith(b"\x15\x00\x00\x00\x00"), "unexpected Summary.Value encoding"
    return encoded[:-4]


def _tag_field(tag: str) -> bytes:
    """``Summary.Value.tag`` key, length and bytes: present in every record of this tag."""
    raw = tag.encode()
    return b"\x0a" + _varint(len(raw)) + raw


def _gather(data: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes at each position, as a (len(positions), width) uint8 array (clipped in range)."""
    return np.take(data, positions[:, None] + np.arange(width), mode="clip")


def _locate_payloads(data: np.ndarray, key_pos: np.ndarray, payload_end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For fields starting at ``key_pos`` that follow ``wall_time`` [and ``step``], find the record.

    Returns ``(ok, steps, payload_start)``: ``ok`` where a TFRecord whose length field equals
    ``payload_end - payload_start`` starts right there (either with a ``step`` varint ending at
    ``key_pos - 1`` or without one, i.e. step 0).
    """
    n = key_pos.size

    def framed(payload_start: np.ndarray, end: np.ndarray) -> np.ndarray:
        header = payload_start - _HEADER
        lengths = _gather(data, header, 8).view("<u8").ravel().astype(np.int64)
        first = np.take(data, payload_start, mode="clip")
        return (header >= 0) & (first == _WALL_TIME[0]) & (lengths == end - payload_start)

    # With a step: ... 0x09 <8 bytes> 0x10 <varint of k bytes> <key>
    rows = np.arange(n)
    tail = _gather(data, key_pos - _MAX_VARINT - 1, _MAX_VARINT + 1)[:, ::-1]  # tail[:, j] = byte at key_pos-1-j
    k = np.ones(n, dtype=np.int64)
    continuing = np.ones(n, dtype=bool)
    for j in range(1, _MAX_VARINT):
        continuing &= tail[:, j] >= 0x80
        if not continuing.any():
            break
        k += continuing
    key_ok = (tail[:, 0] < 0x80) & (tail[rows, np.minimum(k, _MAX_VARINT)] == _STEP)
    start = key_pos - k - 1 - 9
    ok = key_ok & framed(start, payload_end)
    raw = np.zeros(n, dtype=np.uint64)
    for i in range(int(k.max()) if n else 0):
        byte = tail[rows, np.clip(k - 1 - i, 0, _MAX_VARINT)].astype(np.uint64)
        raw |= np.where(i < k, (byte & np.uint64(0x7F)) << np.uint64(7 * i), np.uint64(0))
    steps = np.where(ok, raw.view(np.int64), 0)
    # Without a step (step 0 is not serialised): ... 0x09 <8 bytes> <key>
    rest = np.flatnonzero(~ok)
    if rest.size:
        no_step = key_pos[rest] - 9
        good = framed(no_step, payload_end[rest])
        ok[rest[good]] = True
        start[rest[good]] = no_step[good]
    return ok, steps, start


def _fast_scan(blob: bytes, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Vectorised read of one file: ``(steps, values, positions, start_steps, start_positions)`` or None.

    None means some occurrence of the tag is not a plain ``add_scalar`` record: use the exact path.
    """
    prefix, tag_field = _scalar_prefix(tag), _tag_field(tag)
    head = prefix[: -len(tag_field) - 1]  # summary key + length, value key + length
    data = np.frombuffer(blob, dtype=np.uint8)
    chunks = blob.split(tag_field)  # every occurrence of the tag: all must be add_scalar records
    count = len(chunks) - 1
    field_pos = np.cumsum(np.fromiter(map(len, chunks), dtype=np.int64, count=count + 1)[:-1] + len(tag_field))
    field_pos -= len(tag_field)
    del chunks
    key_pos = field_pos - len(head)
    value_pos = field_pos + len(tag_field) + 1
    payload_end = value_pos + 4
    complete = payload_end + _FOOTER <= data.size  # a truncated last record is ignored
    key_pos, value_pos, payload_end = key_pos[complete], value_pos[complete], payload_end[complete]
    if not np.array_equal(_gather(data, key_pos, len(head)), np.tile(np.frombuffer(head, np.uint8), (key_pos.size, 1))):
        return None
    if not np.all(data[value_pos - 1] == prefix[-1]):
        return None
    ok, steps, start = _locate_payloads(data, key_pos, payload_end)
    if not np.all(ok):
        return None
    values = _gather(data, value_pos, 4).view("<f4").ravel().astype(np.float64)
    # Resume markers (rare): confirm each candidate the same way, then decode it.
    start_steps = np.zeros(0, dtype=np.int64)
    start_pos = np.zeros(0, dtype=np.int64)
    marks = [m.start() for m in _START_CANDIDATE.finditer(blob)]
    if marks:
        mark_pos = np.array(marks, dtype=np.int64)
        # SessionLog length + the position after that varint = the end of the session_log field.
        log_end = np.array([sum(_decode_varint(blob, m + 1)) for m in marks], dtype=np.int64)
        mark_ok, mark_steps, mark_start = _locate_payloads(data, mark_pos, log_end)
        mark_ok &= log_end + _FOOTER <= data.size
        for position in mark_start[mark_ok]:  # a marker must be a whole Event with status START
            event = event_pb2.Event.FromString(_payload_at(blob, int(position) - _HEADER))
            if event.session_log.status != event_pb2.SessionLog.START:
                return None
        start_steps, start_pos = mark_steps[mark_ok], mark_start[mark_ok]
    return steps, values, start, start_steps, start_pos


def _decode_varint(blob: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``."""
    value = shift = 0
    while True:
        byte = blob[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _payload_at(blob: bytes, header_pos: int) -> bytes:
    (length,) = struct.unpack_from("<Q", blob, header_pos)
    return blob[header_pos + _HEADER : header_pos + _HEADER + length]


def _scalar_value(value: summary_pb2.Summary.Value) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        tensor = value.tensor
        if tensor.double_val:
            return float(tensor.double_val[0])
        if tensor.float_val:
            return float(tensor.float_val[0])
        dtype = _TENSOR_DTYPES.get(tensor.dtype)
        if dtype is not None and tensor.tensor_content:
            return float(np.frombuffer(tensor.tensor_content, dtype=dtype)[0])
    return None


def _exact_scan(blob: bytes, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference reader: walk every TFRecord, decode records that contain the tag or a START marker."""
    tag_field = _tag_field(tag)
    steps: list[int] = []
    values: list[float] = []
    positions: list[int] = []
    start_steps: list[int] = []
    start_pos: list[int] = []
    pos, size = 0, len(blob)
    while pos + _HEADER <= size:
        (length,) = struct.unpack_from("<Q", blob, pos)
        end = pos + _HEADER + length
        if end + _FOOTER > size:
            break  # truncated last record
        payload = blob[pos + _HEADER : end]
        if tag_field in payload or _START_CANDIDATE.search(payload):
            event = event_pb2.Event.FromString(payload)
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                start_steps.append(event.step)
                start_pos.append(pos + _HEADER)
            for value in event.summary.value:
                if value.tag == tag and (scalar := _scalar_value(value)) is not None:
                    steps.append(event.step)
                    values.append(scalar)
                    positions.append(pos + _HEADER)
        pos = end + _FOOTER
    return (
        np.asarray(steps, dtype=np.int64),
        np.asarray(values, dtype=np.float64),
        np.asarray(positions, dtype=np.int64),
        np.asarray(start_steps, dtype=np.int64),
        np.asarray(start_pos, dtype=np.int64),
    )


def read_scalar(run_dir: str | Path, tag: str, exact: bool = False) -> Curve:
    """Every point of scalar ``tag`` in ``run_dir``'s event files, with TensorBoard's resume semantics.

    ``exact=True`` forces the record-by-record reader (the fast path is tested against it).
    Returns an empty curve when there are no event files or no points.
    """
    step_parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    order_parts: list[np.ndarray] = []
    for file_index, path in enumerate(event_files(run_dir)):
        blob = path.read_bytes()
        scanned = None if exact else _fast_scan(blob, tag)
        steps, values, positions, start_steps, start_pos = scanned if scanned is not None else _exact_scan(blob, tag)
        # Global write order: (file index, byte offset) packed into one int64.
        order = (np.int64(file_index) << np.int64(40)) + positions
        start_order = (np.int64(file_index) << np.int64(40)) + start_pos
        for purge_step, purge_order in zip(start_steps.tolist(), start_order.tolist()):
            # A resumed writer's START at step s hides every earlier point with step >= s.
            for i in range(len(step_parts)):
                keep = step_parts[i] < purge_step
                step_parts[i], value_parts[i], order_parts[i] = step_parts[i][keep], value_parts[i][keep], order_parts[i][keep]
            keep = (order > purge_order) | (steps < purge_step)
            steps, values, order = steps[keep], values[keep], order[keep]
        step_parts.append(steps)
        value_parts.append(values)
        order_parts.append(order)
    if not step_parts:
        return Curve(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
    steps = np.concatenate(step_parts)
    values = np.concatenate(value_parts)
    order = np.concatenate(order_parts)
    finite = np.isfinite(values)
    steps, values, order = steps[finite], values[finite], order[finite]
    # Sort by step, then write order; keep the last write of each step.
    idx = np.lexsort((order, steps))
    steps, values = steps[idx], values[idx]
    last = np.ones(steps.size, dtype=bool)
    last[:-1] = steps[1:] != steps[:-1]
    return Curve(steps[last], values[last])


# --------------------------------------------------------------------------------------------------
# Common grid
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Runs resampled onto shared env steps."""

    steps: np.ndarray
    """Grid env steps (int64), increasing; inside every used run's logged range."""
    values: np.ndarray
    """(len(used), len(steps)) values, linearly interpolated between logged points."""
    used: list[int]
    """Indices into the input curves that are on the grid."""
    warnings: list[str]
    """Why some curves were left out, or why the grid is empty."""


def common_grid(curves: Sequence[Curve], num_points: int, names: Sequence[str] | None = None) -> Grid:
    """Put ``curves`` on ``num_points`` shared env steps that never extend past the shortest run.

    The grid runs from the largest first step to the smallest last step (so no value is ever
    extrapolated), evenly spaced and rounded to whole steps (fewer points if the range is short).
    Values are linear interpolations (``np.interp``) between each run's logged points, exact at a
    logged step. Curves with fewer than 2 points are left out with a warning; if the ranges do not
    overlap the grid is empty, with a warning.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    labels = list(names) if names is not None else [f"curve {i}" for i in range(len(curves))]
    notes: list[str] = []
    used = []
    for i, curve in enumerate(curves):
        if len(curve) < 2:
            notes.append(f"{labels[i]}: {len(curve)} curve point(s), left out of the learning curve")
        else:
            used.append(i)
    empty = Grid(np.zeros(0, dtype=np.int64), np.zeros((len(used), 0)), used, notes)
    if not used:
        return empty
    first = max(int(curves[i].steps[0]) for i in used)
    last = min(int(curves[i].steps[-1]) for i in used)
    if first > last:
        notes.append(f"learning curves do not overlap in env steps (latest start {first} > earliest end {last})")
        return empty
    steps = np.unique(np.round(np.linspace(first, last, num_points)).astype(np.int64))
    values = np.stack([np.interp(steps, curves[i].steps, curves[i].values) for i in used])
    return Grid(steps, values, used, notes)

