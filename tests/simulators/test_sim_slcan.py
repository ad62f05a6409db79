"""The SLCAN adapter: line codec (against python-can's own parser too), command handling,
and the simulator process opened by python-can's slcan interface on a real pty."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import can
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BASE_DATE, AgentStub, SimProcess, assert_events_match_truth, wait_for

from protocols.can_frame import CanFrame, is_key_reader_id
from simulators.slcan import (
    ERROR,
    OK,
    LineSplitter,
    SlcanAdapter,
    SlcanFrame,
    decode_frame_line,
    encode_frame_line,
)
from simulators.truth import read_truth

_frames = st.builds(
    lambda extended, ident, data, ts: SlcanFrame(ident & (0x1FFFFFFF if extended else 0x7FF),
                                                 data, extended, timestamp_ms=ts),
    st.booleans(), st.integers(0, 0x1FFFFFFF), st.binary(max_size=8),
    st.none() | st.integers(0, 59_999))


@settings(max_examples=300, deadline=None)
@given(frame=_frames)
def test_frame_lines_round_trip(frame: SlcanFrame) -> None:
    line = encode_frame_line(frame)
    assert line.endswith(b"\r") and line.isascii()
    assert decode_frame_line(line, timestamps=frame.timestamp_ms is not None) == frame


def test_known_lines() -> None:
    assert encode_frame_line(SlcanFrame(0x6F0, bytes.fromhex("01070A7856341202"))) == \
        b"t6F0801070A7856341202\r"
    assert encode_frame_line(SlcanFrame(0x18FEF100, b"\x01", extended=True)) == b"T18FEF100101\r"
    assert encode_frame_line(SlcanFrame(0x123, b"", timestamp_ms=61_000)) == b"t123003E8\r"
    assert decode_frame_line(b"r1232\r") == SlcanFrame(0x123, b"\0\0", remote=True)
    for bad in (b"", b"t12", b"t1239", b"t12320", b"t123201ZZ", b"x", b"T2FFFFFFF0",
                b"t800"):
        assert decode_frame_line(bad) is None, bad
    with pytest.raises(ValueError):
        encode_frame_line(SlcanFrame(0x800, b""))
    with pytest.raises(ValueError):
        encode_frame_line(SlcanFrame(0x1, bytes(9)))


@pytest.fixture(scope="module")
def loop_bus() -> Iterator[can.BusABC]:
    bus = can.Bus(interface="slcan", channel="loop://", sleep_after_open=0)
    yield bus
    bus.shutdown()


@settings(max_examples=150, deadline=None)
@given(frame=_frames)
def test_python_can_parses_our_lines(loop_bus: can.BusABC, frame: SlcanFrame) -> None:
    """python-can's slcan parser, fed through pyserial's loop:// device, reads each of our
    lines back as the same frame (timestamps present or not)."""
    loop_bus.serialPortOrig.write(encode_frame_line(frame))
    message = loop_bus.recv(timeout=5)
    assert message is not None
    assert message.arbitration_id == frame.arbitration_id
    assert message.is_extended_id == frame.extended
    assert bytes(message.data) == frame.data


def test_adapter_answers_the_commands_python_can_sends() -> None:
    adapter = SlcanAdapter()
    # can.Bus(interface="slcan", bitrate=500000): C, S6, "" (no FD data bitrate), O, O
    assert [adapter.handle(c) for c in (b"C", b"S6", b"", b"O")] == [OK, OK, OK, OK]
    assert adapter.is_open and adapter.bitrate == 500_000
    assert adapter.handle(b"O") == ERROR  # already open, as on a real Lawicel
    assert adapter.handle(b"S4") == ERROR  # no bitrate change while open
    assert adapter.handle(b"V") == b"V1013\r"
    assert adapter.handle(b"N") == b"NCBS1\r"
    assert adapter.handle(b"F") == b"F00\r"
    assert adapter.handle(b"Z1") == OK and adapter.timestamps
    assert adapter.handle(b"t1232ABCD") == b"z\r"
    assert adapter.host_frames == [SlcanFrame(0x123, b"\xab\xcd")]
    assert adapter.handle(b"?") == ERROR
    assert adapter.handle(b"C") == OK and not adapter.is_open
    assert adapter.handle(b"t1232ABCD") == ERROR  # channel closed
    assert adapter.handle(b"L") == OK and adapter.listen_only


def test_line_splitter_cuts_at_cr_and_bounds_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"C\rS6") == [b"C"]
    assert splitter.feed(b"\r\n\rO\r") == [b"S6", b"", b"O"]
    assert splitter.feed(b"x" * 500 + b"\r") == [b"x" * 52]  # kept the tail only
    assert splitter.overflows == 7


def _open_bus(path: str) -> can.BusABC:
    return can.Bus(interface="slcan", channel=path, bitrate=500_000, sleep_after_open=0)


def test_python_can_receives_the_sessions_with_faults_and_background(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    capture = tmp_path / "capture.log"
    sim = SimProcess(["can", "--seed", "5", "--base-date", BASE_DATE, "--sessions", "6",
                      "--interval-s", "0.05", "--truth", str(truth), "--capture", str(capture),
                      "--faults", ("dropped=0.2,duplicated=0.3,wire_reordered=0.1,"
                                   "crc_mismatch=0.1,reordered=0.3,bus_off=0.1"),
                      "--quiet-s", "1.0", "--bus-load", "0.05",
                      "--extended-background", "--linger", "-v"],
                     stderr_path=tmp_path / "stderr.txt")
    bus = None
    try:
        path = sim.next_line()
        bus = _open_bus(path)
        assert bus.get_version(5) == (10, 13)
        stub = AgentStub()
        background = 0

        def receive() -> bool:
            nonlocal background
            message = bus.recv(timeout=0.05)
            if message is not None and not is_key_reader_id(message.arbitration_id):
                background += 1
            frame = None
            if message is not None and not message.is_extended_id:
                frame = CanFrame(message.arbitration_id, bytes(message.data), message.timestamp)
            stub.feed_can(frame, time.time() if message is None else message.timestamp)
            return len(stub.events) >= 6 and len(read_truth(truth)) >= 6 and background > 0

        wait_for(receive, step_s=0)
        records = read_truth(truth)
        assert {r["transport"] for r in records} == {"can"}
        assert_events_match_truth(stub.events, records)
    finally:
        if bus is not None:
            bus.shutdown()
        assert sim.stop() == 0, sim.stderr()
    with can.LogReader(str(capture)) as reader:
        captured = list(reader)
    key_frames = [m for m in captured if is_key_reader_id(m.arbitration_id) and not m.is_extended_id]
    assert key_frames and any(m.is_extended_id for m in captured)
