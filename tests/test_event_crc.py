"""rlopt.event_crc: CRC-32C by tabulated byte contributions equals TensorBoard's byte loop."""

from __future__ import annotations

import random

import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader, LegacyEventFileLoader
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_masked_crc32c

from rlopt import event_crc


def test_crc32c_check_value() -> None:
    # The CRC-32C check value (RFC 3720, appendix B.4; iSCSI).
    assert event_crc.crc32c(b"123456789") == 0xE3069283
    assert event_crc.crc32c(b"") == 0


@pytest.mark.parametrize("length", [0, 1, 2, 7, 8, 9, 372, 1000, event_crc.MAX_TABLE_BYTES - 1,
                                    event_crc.MAX_TABLE_BYTES, event_crc.MAX_TABLE_BYTES + 1, 3 * event_crc.MAX_TABLE_BYTES])  # fmt: skip
def test_masked_crc32c_is_tensorboards(length: int) -> None:
    rng = random.Random(length)
    for _ in range(3):
        data = bytes(rng.getrandbits(8) for _ in range(length))
        assert event_crc.masked_crc32c(data) == tensorboard_masked_crc32c(data)


def test_crc32c_refuses_what_its_tables_do_not_cover() -> None:
    with pytest.raises(ValueError, match="bytes"):
        event_crc.crc32c(bytes(event_crc.MAX_TABLE_BYTES + 1))


def test_event_files_written_after_install_pass_tensorboards_checksum_check(tmp_path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer_module = event_crc.install()
    assert writer_module.masked_crc32c is event_crc.masked_crc32c
    writer = SummaryWriter(str(tmp_path))
    for step in range(50):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.add_text("note", "x" * 3 * event_crc.MAX_TABLE_BYTES, 0)  # a record past the tables
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    # The loader reads every record through TensorBoard's own masked_crc32c and raises on a mismatch.
    events = list(EventFileLoader(str(path)).Load())
    steps = [e.step for e in events if e.summary.value and e.summary.value[0].tag == "loss"]
    assert steps == list(range(50))


@pytest.mark.parametrize("direct", [True, False])
def test_append_events_writes_them_in_order_between_the_writers_own(tmp_path, monkeypatch, direct: bool) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    if not direct:  # as with TensorFlow's file layer: through the writer's queue
        monkeypatch.setattr(event_crc, "_STUB_GFILE", "not.this.module")
    event_crc.install()
    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("before", 1.0, 0)
    appended = [Event(summary=Summary(value=[Summary.Value(tag="a", simple_value=0.5 * s), Summary.Value(tag="b", simple_value=-s)]),
                      step=s, wall_time=1000.0 + s) for s in range(1, 40)]  # fmt: skip
    event_crc.append_events(writer.file_writer, appended)
    writer.add_scalar("after", 2.0, 40)
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    events = [e for e in LegacyEventFileLoader(str(path)).Load() if e.summary.value]  # checksums checked as read
    assert [e.summary.value[0].tag for e in events] == ["before"] + ["a"] * 39 + ["after"]
    assert [e.step for e in events] == list(range(41))
    assert [e.wall_time for e in events[1:-1]] == [1000.0 + s for s in range(1, 40)]
    assert [[v.simple_value for v in e.summary.value] for e in events[1:-1]] == [[0.5 * s, -s] for s in range(1, 40)]


def test_record_is_tensorboards_record_writer_framing(tmp_path) -> None:
    from tensorboard.summary.writer.record_writer import RecordWriter

    data = bytes(range(200)) * 3
    with open(tmp_path / "r", "wb") as file:
        RecordWriter(file).write(data)
    assert (tmp_path / "r").read_bytes() == event_crc.record(data)
