"""The fuzz targets, bounded for CI, and the memory bounds of the protocol core.

CI runs the same targets as the atheris harnesses, driven by hypothesis for a modest number of
examples; ``CBS_HYPOTHESIS_SCALE=100`` runs a hundred times more, and the atheris harnesses
(docs/protocol-notes.md) run coverage-guided for as long as you like.
"""

from __future__ import annotations

import os

from fuzz_targets import EXAMPLE, MAX_SESSION_SLOTS, serial_target, session_target
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocols.can_frame import CanFrame
from protocols.serial_framing import MAX_FRAME_BYTES, SerialFrameDecoder, encode_frame
from protocols.session import SessionAssembler

SCALE = float(os.environ.get("CBS_HYPOTHESIS_SCALE", "1"))
FUZZ = settings(max_examples=max(1, round(400 * SCALE)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# op bytes of fuzz_targets' scripts, spelled out for the seeds below
FEED, VALID, CAN, CORRUPT, LATER = 0, 1, 2, 3, 4
WHOLE_EXAMPLE, EXAMPLE_FRAME, CHANGED_FRAME, POLL, KEY_REMOVED = 3, 1, 2, 6, 7


@FUZZ
@given(st.binary(max_size=2048))
@example(bytes((VALID, 0x04, 20)) + bytes(range(20)) + bytes((FEED, 3, 2, 250, 0, VALID, 2, 0)))
@example(bytes((CAN, 0x06, 0xF0, 8)) + bytes(8) + bytes((CORRUPT, 1, 4, 0, 0, 5, LATER, 255, 7)))
def test_serial_target(data: bytes) -> None:
    serial_target(data)


@FUZZ
@given(st.binary(max_size=2048))
@example(bytes((WHOLE_EXAMPLE, WHOLE_EXAMPLE)))
@example(bytes((EXAMPLE_FRAME, 0, EXAMPLE_FRAME, 1, CHANGED_FRAME, 2, 3, 1, 8, LATER, 200,
                POLL, WHOLE_EXAMPLE)))
@example(bytes((EXAMPLE_FRAME, 0, EXAMPLE_FRAME, 1, KEY_REMOVED, WHOLE_EXAMPLE)))
def test_session_target(data: bytes) -> None:
    session_target(data)


def test_endless_stream_without_stx_holds_nothing() -> None:
    decoder = SerialFrameDecoder()
    chunk = bytes(b for b in range(256) if b != 0x02) * 16
    for i in range(500):  # 2 MB
        assert decoder.feed(chunk, now=i * 0.01) == []
        assert decoder.buffered == 0
    assert decoder.ignored_bytes == 500 * len(chunk)


def test_endless_false_starts_hold_at_most_one_frame() -> None:
    decoder = SerialFrameDecoder()
    # every other byte starts a maximal candidate that never turns out intact
    chunk = b"\x02\xfa" * 2048
    for i in range(100):
        assert decoder.feed(chunk, now=i * 0.01) == []
        assert decoder.buffered < MAX_FRAME_BYTES
    frame = encode_frame(0x04, bytes(11))
    assert decoder.feed(frame + b"\x00" * MAX_FRAME_BYTES, now=1.0)[-1].payload == bytes(11)


def every_slot() -> list[tuple[int, bytes]]:
    """One data frame for each (message, index) slot a session can hold."""
    frames = [(0x6F1, bytes((part,)) + b"ABCDEFG") for part in range(256)]
    frames += [(0x6F2, bytes(8)), (0x6F3, bytes(8))]
    frames += [(fid, bytes((index,)) + bytes(7)) for fid in (0x6F4, 0x6F5) for index in range(16)]
    frames += [(fid, bytes((index,)) + bytes(7)) for fid in (0x6F6, 0x6F7) for index in range(256)]
    assert len(frames) == MAX_SESSION_SLOTS
    return frames


def test_a_session_that_never_ends_holds_at_most_one_frame_per_slot() -> None:
    assembler = SessionAssembler()
    assembler.feed(CanFrame(*EXAMPLE[0], 0.0))
    slots = every_slot()
    fed = 0
    for _round in range(6):
        for frame_id, data in slots:
            fed += 1
            events = assembler.feed(CanFrame(frame_id, data, fed * 0.001))
            assert events == []
            # other traffic in between, forever, changes nothing either
            assert assembler.feed(CanFrame(0x100, data, fed * 0.001)) == []
        assert assembler._open is not None  # white box: what the session holds
        assert len(assembler._open.frames) == MAX_SESSION_SLOTS
    assert assembler.counters.repeats_dropped == fed - MAX_SESSION_SLOTS
    # and it still ends cleanly
    (event,) = assembler.poll(fed * 0.001 + 1.0)
    assert event.reason == "timeout" and event.frames_received == MAX_SESSION_SLOTS
