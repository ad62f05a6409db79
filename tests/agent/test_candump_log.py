"""The candump log scanner reads what python-can's ``CanutilsLogReader`` reads, line for line.

The oracle is python-can itself: frames written by its ``CanutilsLogWriter`` (every kind it
writes: 11- and 29-bit, remote, CAN FD with its flags, error frames, Rx/Tx, any channel) and
read back by its reader, then classified as ``decode`` did when it read through python-can
(agent/readers/capture.py before the scanner). The scanner, fed the same text split at any
points, must yield the same frames of the wanted ids, count the rest, and refuse a bad line
at the same record. Garbage (mutated lines, arbitrary text) must end the same way as in
python-can: frames, then a CandumpLineError, never anything else.
"""

from __future__ import annotations

import io
import math

import can
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.readers.candump_log import (
    MAX_LINE_CHARS,
    CandumpLineError,
    CandumpLogScanner,
    is_a_time,
    parse_candump_log_line,
)
from dbc import key_reader_database
from protocols.can_frame import CanFrame

KEY_IDS = frozenset(message.frame_id for message in key_reader_database().messages)
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Refused(Exception):
    """The oracle's reader failed at a record: ``messages`` records were counted before."""

    def __init__(self, messages: int) -> None:
        super().__init__(messages)
        self.messages = messages


def python_can_reading(text: str, wanted: frozenset[int] | None) -> tuple[list[CanFrame], dict[str, int], int | None]:
    """(frames, counts, the record count at a refusal or None), as decode read candump logs
    through python-can: error frames are bus errors; 29-bit, remote and FD frames other
    traffic; a data frame whose time is not a time refuses the capture; wanted ids only."""
    frames: list[CanFrame] = []
    counts = {"messages": 0, "other_traffic": 0, "bus_errors": 0}
    reader = can.CanutilsLogReader(io.StringIO(text))
    try:
        for message in reader:
            counts["messages"] += 1
            if message.is_error_frame:
                counts["bus_errors"] += 1
                continue
            if message.is_extended_id or message.is_remote_frame or message.is_fd:
                counts["other_traffic"] += 1
                continue
            if not is_a_time(message.timestamp):
                return frames, counts, counts["messages"]
            if wanted is not None and message.arbitration_id not in wanted:
                counts["other_traffic"] += 1
                continue
            frames.append(CanFrame(message.arbitration_id, bytes(message.data), message.timestamp))
    except Exception:  # noqa: BLE001 - what python-can's reader raises on a line
        return frames, counts, counts["messages"]
    return frames, counts, None


def scanning(text: str, cuts: list[int], wanted: frozenset[int] | None) -> tuple[list[CanFrame], dict[str, int], int | None]:
    scanner = CandumpLogScanner(wanted)
    frames: list[CanFrame] = []
    refused: int | None = None
    points = sorted({min(max(cut, 0), len(text)) for cut in cuts} | {0, len(text)})
    try:
        for start, end in zip(points, points[1:]):
            frames.extend(scanner.feed(text[start:end]))
        frames.extend(scanner.finish())
    except CandumpLineError as exc:
        refused = exc.messages
    counts = {"messages": scanner.messages, "other_traffic": scanner.other_traffic,
              "bus_errors": scanner.bus_errors}
    assert scanner.frames == len(frames)
    return frames, counts, refused


def same_frames(got: list[CanFrame], expected: list[CanFrame]) -> bool:
    return [(f.arbitration_id, f.data) for f in got] == [(f.arbitration_id, f.data) for f in expected] \
        and all(a.timestamp == b.timestamp or (math.isnan(a.timestamp) and math.isnan(b.timestamp))
                for a, b in zip(got, expected))


@st.composite
def messages(draw: st.DrawFn, plain: bool = False) -> can.Message:
    """A frame of any kind python-can writes; with ``plain``, 11-bit data frames only (the
    scanner's fast path, when the times are small enough)."""
    kinds = ["data"] if plain else ["data", "data", "data", "extended", "remote", "fd", "error"]
    kind = draw(st.sampled_from(kinds))
    timestamp = draw(st.one_of(st.floats(0, 2e9), st.floats(0, 3e11), st.just(1.7e9)))
    channel = draw(st.sampled_from(["can0", "vcan1", 0, 2, "can_fd.1", None]))
    is_rx = draw(st.booleans())
    if kind == "error":
        return can.Message(timestamp=timestamp, is_error_frame=True, channel=channel)
    extended = kind == "extended" or (kind in ("remote", "fd") and draw(st.booleans()))
    if extended:
        ident = draw(st.integers(0, 0x1FFFFFFF))
    else:
        ident = draw(st.one_of(st.sampled_from(sorted(KEY_IDS)), st.integers(0, 0x7FF)))
    if kind == "remote":
        return can.Message(timestamp=timestamp, arbitration_id=ident, is_extended_id=extended,
                           is_remote_frame=True, channel=channel, is_rx=is_rx)
    data = draw(st.binary(max_size=64 if kind == "fd" else 8))
    return can.Message(timestamp=timestamp, arbitration_id=ident, is_extended_id=extended,
                       is_fd=kind == "fd", bitrate_switch=draw(st.booleans()),
                       error_state_indicator=draw(st.booleans()), data=data, channel=channel,
                       is_rx=is_rx)


def written(frames: list[can.Message]) -> str:
    out = io.StringIO()
    writer = can.CanutilsLogWriter(out)
    for message in frames:
        writer.on_message_received(message)
    return out.getvalue()


@SETTINGS
@given(st.one_of(st.lists(messages(), max_size=60), st.lists(messages(plain=True), max_size=60)),
       st.lists(st.integers(0, 10_000), max_size=8),
       st.sampled_from([KEY_IDS, None, frozenset({0x123})]))
def test_what_python_can_writes_reads_as_through_python_can(
        frames: list[can.Message], cuts: list[int], wanted: frozenset[int] | None) -> None:
    text = written(frames)
    expected = python_can_reading(text, wanted)
    got = scanning(text, cuts, wanted)
    assert same_frames(got[0], expected[0])
    assert got[1:] == expected[1:]


#: Pieces that make lines python-can reads differently or refuses.
TOKENS = ["#", "##", "##1", "R", " R", " T", " r", "(", ")", " ", "\t", "\n", "\r", "0x", "+", "-",
          "_", "nan", "inf", "1e400", "6F0", "6f0", "06F0", "20000080", "FFFFFFFF", "1.5", "ü",
          "\x1c", "\x85", "\u2028", "A", "G"]


@st.composite
def garbled(draw: st.DrawFn) -> str:
    plain = draw(st.booleans())
    text = list(written(draw(st.lists(messages(plain), min_size=1, max_size=20))))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set" and pos < len(text):
            text[pos] = draw(st.sampled_from(TOKENS))
        elif op == "insert":
            text[pos:pos] = [draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)))]
        else:
            del text[pos:pos + draw(st.integers(1, 12))]
    return "".join(text)


@SETTINGS
@given(st.one_of(garbled(), st.text(max_size=400)), st.lists(st.integers(0, 2_000), max_size=6))
@example("(1.0) can0 6F0##\n", [])  # python-can: IndexError on the FD flags
@example("(1.0) can0 6F0#ABC\n", [])  # an odd digit: a byte of its own, as in python-can
@example("(1.0) can0 6F0#ABC\n(nan) can0 6F1#00\n", [3])  # a time that is not one
@example("(1.0) can0 +F0#00\n(1.0) can0 6F0#+1\n", [])  # int() takes a sign
@example("(1.0) can0 6f0#00\n(2.0) can0 6F1#01\n", [])  # a lower-case id is the same id
@example("\n  \n(1.0)   can0\t6F0#00 T\n", [5])  # blank lines, other spacing
def test_garbage_ends_as_in_python_can(text: str, cuts: list[int]) -> None:
    expected = python_can_reading(text, KEY_IDS)
    got = scanning(text, cuts, KEY_IDS)
    assert same_frames(got[0], expected[0])
    assert got[1:] == expected[1:]


def test_the_plain_form_and_other_lines_give_the_same_frames() -> None:
    """The fast path (a block of plain lines) and the line-by-line path agree."""
    plain = "(1700000000.000100) can0 6F0#0011223344556677\n(1700000000.000200) can0 0A8#00\n"
    mixed = plain + "(1700000000.000300) can0 12345678#00\n"  # a 29-bit line: read by lines
    fast = list(CandumpLogScanner(KEY_IDS).feed(plain))
    slow = list(CandumpLogScanner(KEY_IDS).feed(mixed))
    assert fast == slow == [CanFrame(0x6F0, bytes.fromhex("0011223344556677"), 1700000000.0001)]


def test_a_line_without_end_is_refused_not_gathered() -> None:
    scanner = CandumpLogScanner(KEY_IDS)
    with pytest.raises(CandumpLineError, match="longer than"):
        list(scanner.feed("(1.0) can0 6F0#" + "0" * (MAX_LINE_CHARS + 2)))


def test_the_line_parser_reads_each_kind() -> None:
    assert parse_candump_log_line("  \n") is None
    assert parse_candump_log_line("(1.5) can0 6F0#0102 R") == (None, 0x6F0, b"\x01\x02", 1.5)
    assert parse_candump_log_line("(1.5) can0 000006F0#0102")[0] == "other_traffic"
    assert parse_candump_log_line("(1.5) can0 6F0##30102")[0] == "other_traffic"
    assert parse_candump_log_line("(1.5) can0 6F0#R")[0] == "other_traffic"
    assert parse_candump_log_line("(1.5) can0 20000080#")[0] == "bus_error"
    with pytest.raises(ValueError):
        parse_candump_log_line("(1.5) can0 6F0#0G")
