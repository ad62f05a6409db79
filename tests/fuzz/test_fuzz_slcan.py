"""Hostile SLCAN lines: what a USB-CAN adapter (or something pretending to be one) sends the
agent's ``fastslcan`` interface.

Differential: the fast parser (agent/readers/fast_slcan.py, tuned for CPU) must turn a byte
stream, however it is chunked, into exactly the frames the simulator's plain reference decoder
(simulators/slcan.py ``decode_frame_line``) finds in its lines, with or without a timestamp.
Over arbitrary bytes it must never raise, never emit a frame no valid line describes, and hold
no more than one line's worth of pending bytes.

Found by this test and fixed: the fast parser took ``t 6F...``, ``t+6F...`` and ``t6_F...`` as
frames of id 0x6F (``int(..., 16)`` is lenient), an 11-bit id above 0x7FF, and any garbage after
the data.
"""

from __future__ import annotations

import collections
import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.readers.fast_slcan import MAX_PENDING_LINE, FastSlcanBus
from simulators.slcan import SlcanFrame, decode_frame_line, encode_frame_line

SCALE = float(os.environ.get("CBS_HYPOTHESIS_SCALE", "1"))
FUZZ = settings(max_examples=max(1, round(300 * SCALE)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _parser(filters: list[tuple[int, int, bool | None]] | None = None) -> FastSlcanBus:
    """The parser's state without a port (white box: ``_parse`` is the pure part)."""
    bus = object.__new__(FastSlcanBus)
    bus._pending = bytearray()
    bus._frames = collections.deque()
    bus._id_filters = filters or []
    bus.dropped_lines = 0
    bus.filtered_frames = 0
    bus.channel_info = "fuzz"
    return bus


def _frames(bus: FastSlcanBus) -> list[tuple[int, bool, bool, int, bytes]]:
    return [(m.arbitration_id, m.is_extended_id, m.is_remote_frame, m.dlc, bytes(m.data))
            for m in bus._frames]


def _reference(stream: bytes) -> list[tuple[int, bool, bool, int, bytes]]:
    found = []
    for line in stream.split(b"\r")[:-1]:
        frame = decode_frame_line(line) or decode_frame_line(line, timestamps=True)
        if frame is not None:
            found.append((frame.arbitration_id, frame.extended, frame.remote, len(frame.data),
                          b"" if frame.remote else frame.data))
    return found


frames = st.builds(
    SlcanFrame,
    arbitration_id=st.integers(0, 0x7FF),
    data=st.binary(max_size=8),
    extended=st.just(False),
    remote=st.booleans(),
    timestamp_ms=st.none() | st.integers(0, 59_999),
) | st.builds(
    SlcanFrame,
    arbitration_id=st.integers(0, 0x1FFFFFFF),
    data=st.binary(max_size=8),
    extended=st.just(True),
    remote=st.booleans(),
    timestamp_ms=st.none() | st.integers(0, 59_999),
)
JUNK = [b"", b"z", b"\x07", b"V1013", b"t", b"t6F", b"tFFF8", b"t 6F0", b"t+6F0", b"t6_F0",
        b"t6F09", b"T1FFFFFFF0", b"T2000000000", b"r6F0", b"t6F01zz", b"\x00\xff", b"\n"]


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """A line as an adapter sends it, or one of the ways it goes wrong (with its CR)."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return encode_frame_line(draw(frames))
    if choice == 1:  # a valid line with one byte changed, cut or extended
        line = bytearray(encode_frame_line(draw(frames))[:-1])
        edit = draw(st.integers(0, 2))
        position = draw(st.integers(0, len(line)))
        if edit == 0 and position < len(line):
            line[position] = draw(st.integers(0, 255))
        elif edit == 1:
            del line[position:]
        else:
            line[position:position] = draw(st.binary(min_size=1, max_size=3))
        return bytes(line).replace(b"\r", b"") + b"\r"
    if choice == 2:
        return draw(st.sampled_from(JUNK)) + b"\r"
    return draw(st.binary(max_size=40)).replace(b"\r", b"") + b"\r"


def _feed(bus: FastSlcanBus, stream: bytes, cuts: list[int]) -> None:
    position = 0
    for cut in sorted(set(cuts)):
        bus._parse(stream[position:cut], 0.0)
        position = cut
    bus._parse(stream[position:], 0.0)


@FUZZ
@given(st.lists(lines(), max_size=30), st.lists(st.integers(0, 2000), max_size=12))
@example([b"t 6F08" + b"00" * 8 + b"\r", b"tFFF0\r", b"t6F01zz\r", b"t6F0800\r"], [])
def test_fast_parser_agrees_with_the_reference(stream_lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(stream_lines)
    bus = _parser()
    _feed(bus, stream, [c % (len(stream) + 1) for c in cuts])
    assert _frames(bus) == _reference(stream)
    assert len(bus._pending) <= MAX_PENDING_LINE


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=16))
def test_arbitrary_bytes_never_raise_nor_make_invalid_frames(stream: bytes,
                                                             cuts: list[int]) -> None:
    bus = _parser([(0x6F0, 0x7F0, False)])
    _feed(bus, stream, [c % (len(stream) + 1) for c in cuts])
    for can_id, extended, remote, dlc, data in _frames(bus):
        assert 0 <= dlc <= 8 and len(data) == (0 if remote else dlc)
        assert can_id <= (0x1FFFFFFF if extended else 0x7FF)
        assert not extended and can_id & 0x7F0 == 0x6F0  # the filter held
    assert len(bus._pending) <= MAX_PENDING_LINE
