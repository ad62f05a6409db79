"""Fuzz targets for the sans-IO protocol core, shared by the atheris harnesses (long runs:
``fuzz_serial.py``, ``fuzz_session.py``) and the bounded hypothesis test CI runs
(``test_fuzz_bounded.py``).

A target takes arbitrary bytes, reads them as a small script of operations (feed a chunk, feed
a valid or corrupted frame, let time pass, ...) and asserts the invariants of the component
after every step. Any exception other than a clean return is a finding. Scripts rather than raw
bytes let a coverage-guided fuzzer reach deep states (valid CRCs, complete sessions) quickly.
"""

from __future__ import annotations

from protocols.can_frame import CanFrame
from protocols.serial_framing import (
    MAX_FRAME_BYTES,
    FrameType,
    SerialFrame,
    SerialFrameDecoder,
    decode_can_payload,
    decode_hello,
    encode_can_payload,
    encode_frame,
)
from protocols.session import SessionAccepted, SessionAssembler, SessionRejected

# The spec's worked example (section 4), as (id, data).
EXAMPLE = [(int(line[:3], 16), bytes.fromhex(line[3:])) for line in """\
6F0 01070A7856341202
6F1 0057424138453531
6F1 013037464B313233
6F1 0234353600000000
6F2 F3BC009ACD3F9601
6F3 7C429A88C508E008
6F4 00010C0807B01102
6F4 0103FF0000B89900
6F5 0030750099B50403
6F6 000201018ABB0000
6F7 0003011F2F120300
6FF 070A9F2AB02C0000""".splitlines()]
# one frame per (message, index) slot at most: VIN part (u8), vehicle, usage, item status and
# history (u4), check control (u8), DTC (u8)
MAX_SESSION_SLOTS = 256 + 1 + 1 + 16 + 16 + 256 + 256


class ByteReader:
    """Reads a fuzzer's bytes as operands; past the end everything is zero."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.u8() << 8 | self.u8()

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def serial_target(data: bytes) -> None:
    """SerialFrameDecoder: never raises, bounded buffer, every byte accounted for, never
    invents a frame, and a valid frame fed to an idle decoder comes out unchanged."""
    reader = ByteReader(data)
    decoder = SerialFrameDecoder()
    stream = bytearray()
    found: list[SerialFrame] = []
    now = 0.0

    def feed(chunk: bytes) -> list[SerialFrame]:
        stream.extend(chunk)
        frames = decoder.feed(chunk, now)
        found.extend(frames)
        return frames

    while reader.remaining():
        op = reader.u8() % 8
        if op == 0:
            feed(reader.take(reader.u8() % 96))
        elif op in (1, 2):
            frame_type = reader.u8()
            if op == 1:
                payload = reader.take(min(reader.u8(), 249))
            else:
                can_id, dlc = reader.u16() & 0x7FF, reader.u8() % 9
                payload = encode_can_payload(can_id, reader.take(dlc).ljust(dlc, b"\0"))
                frame_type = FrameType.CAN_FRAME
            encoded = encode_frame(frame_type, payload)
            idle = decoder.buffered == 0
            frames = feed(encoded)
            if idle:
                assert [(f.frame_type, f.payload) for f in frames] == [(frame_type, payload)]
        elif op == 3:
            encoded = bytearray(encode_frame(reader.u8(), reader.take(reader.u8() % 32)))
            encoded[reader.u8() % len(encoded)] ^= reader.u8() | 1
            feed(bytes(encoded))
        elif op == 4:
            now += reader.u8() / 256  # up to a second of silence
        elif op == 5:
            now -= reader.u8() / 1024  # clocks step backwards sometimes
        elif op == 6:
            decoder.flush()
        else:
            feed(b"")  # just applies the stale rule
        assert decoder.buffered < MAX_FRAME_BYTES
        in_frames = sum(len(f.payload) + 6 for f in found)
        assert in_frames + decoder.ignored_bytes + decoder.buffered == len(stream)
        assert decoder.frames == len(found)
    for frame in found:
        assert encode_frame(frame.frame_type, frame.payload) in stream, "invented a frame"
        if frame.frame_type == FrameType.CAN_FRAME:
            can = decode_can_payload(frame.payload, frame.timestamp)
            assert can is None or (can.arbitration_id <= 0x7FF and len(can.data) <= 8)
        elif frame.frame_type == FrameType.HELLO:
            decode_hello(frame.payload)


def session_target(data: bytes) -> None:
    """SessionAssembler: never raises, counters agree with the events, at most one frame per
    slot held, and the worked example fed to an idle assembler is always accepted as itself."""
    reader = ByteReader(data)
    assembler = SessionAssembler(timeout_s=0.5)
    reference: object = None
    fed = accepted = rejected = 0
    now = 0.0
    while reader.remaining():
        op = reader.u8() % 8
        events: list = []
        if op == 0:  # any frame in and around the key reader's range
            frame_id = 0x6E8 + reader.u8() % 32 if reader.u8() & 1 else reader.u16() & 0x7FF
            dlc = reader.u8() % 9
            events = assembler.feed(CanFrame(frame_id, reader.take(dlc), now))
            fed += 1
        elif op == 1:  # a frame of the example, as is
            frame_id, payload = EXAMPLE[reader.u8() % len(EXAMPLE)]
            events = assembler.feed(CanFrame(frame_id, payload, now))
            fed += 1
        elif op == 2:  # a frame of the example with one byte changed, maybe cut short
            frame_id, payload = EXAMPLE[reader.u8() % len(EXAMPLE)]
            changed = bytearray(payload)
            changed[reader.u8() % 8] ^= reader.u8()
            cut = reader.u8() % 12
            events = assembler.feed(CanFrame(frame_id, bytes(changed[:cut]), now))
            fed += 1
        elif op == 3:  # the whole example
            idle = not assembler.in_session
            for frame_id, payload in EXAMPLE:
                events += assembler.feed(CanFrame(frame_id, payload, now))
            fed += len(EXAMPLE)
            if idle:
                sessions = [e.session for e in events if isinstance(e, SessionAccepted)]
                assert len(sessions) == 1, events
                reference = sessions[0] if reference is None else reference
                assert sessions[0] == reference
        elif op == 4:
            now += reader.u8() / 200  # 0-1.3 s: sometimes past the timeout
        elif op == 5:
            now -= reader.u8() / 1000
        elif op == 6:
            events = assembler.poll(now)
        else:
            events = assembler.key_removed(now)
        for event in events:
            assert isinstance(event, SessionAccepted | SessionRejected)
            if isinstance(event, SessionRejected):
                assert event.key_id is not None and event.detail
        accepted += sum(isinstance(e, SessionAccepted) for e in events)
        rejected += sum(isinstance(e, SessionRejected) for e in events)
        counters = assembler.counters
        assert (counters.accepted, counters.rejected) == (accepted, rejected)
        assert counters.frames + counters.other_traffic == fed
        open_session = assembler._open  # white box: the memory bound
        if open_session is not None:
            assert len(open_session.frames) <= MAX_SESSION_SLOTS
