"""Serial framing of the key reader (protocol section 2): ``STX LEN TYPE PAYLOAD CRC16 ETX``.

:class:`SerialFrameDecoder` is a sans-IO parser: feed it bytes as they arrive and it returns
the frames completed so far. It never raises on input. A candidate with a bad LEN, a bad CRC
or a missing ETX is discarded and scanning resumes at the byte after its STX, so a good frame
hidden behind a false start is still found. Its buffer never holds more than one maximal frame
plus the last chunk fed, whatever the input.

A false start whose declared length runs past the bytes received so far would hold back a
good frame behind it until more bytes come. The reader is silent between keys, so the decoder
takes timestamps: a candidate still incomplete ``stale_after_s`` after its STX arrived is
given up (see :meth:`SerialFrameDecoder.feed`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocols.can_frame import CanFrame
from protocols.crc import crc16_ccitt_false
from protocols.errors import ProtocolError
from protocols.values import fast_init

STX = 0x02
ETX = 0x03
MIN_LEN = 1
MAX_LEN = 250
FRAME_OVERHEAD = 5  # STX, LEN, CRC_HI, CRC_LO, ETX
MAX_FRAME_BYTES = MAX_LEN + FRAME_OVERHEAD


class FrameType(enum.IntEnum):
    """Frame types; reader-to-host below 0x10, host-to-reader from 0x10."""

    HELLO = 0x01
    KEY_PRESENT = 0x02
    KEY_REMOVED = 0x03
    CAN_FRAME = 0x04
    READER_FAULT = 0x05
    PING = 0x10
    REREAD = 0x11


class ReaderFaultCode(enum.IntEnum):
    ANTENNA = 1
    TRANSPONDER_AUTH_FAILED = 2
    BUFFER_OVERFLOW = 3


@fast_init
@dataclass(frozen=True, slots=True)
class SerialFrame:
    """One intact frame: its type byte (possibly unknown), payload and arrival time."""

    frame_type: int
    payload: bytes
    timestamp: float = 0.0


def encode_frame(frame_type: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame; raises :class:`ProtocolError` for a payload over 249 bytes."""
    if not 0 <= frame_type <= 0xFF:
        raise ProtocolError(f"frame type {frame_type} is not a byte")
    length = 1 + len(payload)
    if length > MAX_LEN:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds the 249-byte maximum")
    body = bytes((length, frame_type)) + payload
    crc = crc16_ccitt_false(body)
    return bytes((STX,)) + body + bytes((crc >> 8, crc & 0xFF, ETX))


def encode_can_payload(arbitration_id: int, data: bytes) -> bytes:
    """Payload of a CAN_FRAME frame: id (u16 big-endian), DLC, data."""
    if not 0 <= arbitration_id <= 0x7FF:
        raise ProtocolError(f"CAN id {arbitration_id:#x} is not an 11-bit identifier")
    if len(data) > 8:
        raise ProtocolError(f"CAN data of {len(data)} bytes exceeds 8")
    return arbitration_id.to_bytes(2, "big") + bytes((len(data),)) + bytes(data)


def encode_can_frame(frame: CanFrame) -> bytes:
    """A whole serial CAN_FRAME frame carrying ``frame``."""
    return encode_frame(FrameType.CAN_FRAME, encode_can_payload(frame.arbitration_id, frame.data))


def decode_can_payload(payload: bytes, timestamp: float = 0.0) -> CanFrame | None:
    """The CAN frame in a CAN_FRAME payload, or None when the payload is malformed
    (shorter than its DLC says, DLC above 8, id above 11 bits, or trailing bytes)."""
    if len(payload) < 3:
        return None
    arbitration_id = (payload[0] << 8) | payload[1]
    dlc = payload[2]
    if arbitration_id > 0x7FF or dlc > 8 or len(payload) != 3 + dlc:
        return None
    return CanFrame(arbitration_id, bytes(payload[3:]), timestamp)


def decode_hello(payload: bytes) -> tuple[int, str] | None:
    """(protocol version, firmware text) of a HELLO payload, or None if empty."""
    if not payload:
        return None
    return payload[0], payload[1:].decode("ascii", errors="replace")


class SerialFrameDecoder:
    """Sans-IO decoder for the serial byte stream.

    Counters (monotonic, for ``status``): ``frames`` intact frames, ``bad_frames`` candidates
    with a valid LEN that failed CRC or ETX (or went stale), ``ignored_bytes`` bytes outside
    any intact frame.
    """

    __slots__ = ("_buffer", "_candidate_since", "stale_after_s", "frames", "bad_frames",
                 "ignored_bytes")

    def __init__(self, *, stale_after_s: float = 0.25) -> None:
        self._buffer = bytearray()
        self._candidate_since: float | None = None
        self.stale_after_s = stale_after_s
        self.frames = 0
        self.bad_frames = 0
        self.ignored_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a candidate frame."""
        return len(self._buffer)

    def feed(self, data: bytes, now: float = 0.0) -> list[SerialFrame]:
        """Take ``data`` received at ``now``; return the frames it completed, in order.

        A candidate still incomplete once ``data`` has been scanned, and waiting longer than
        ``stale_after_s`` (by ``now``), is then given up as if its CRC had failed. The new
        bytes are looked at first, so a frame that straddled two reads of a caller that
        stalled in between is not lost. ``feed(b"", now)`` just applies the rule.
        """
        self._buffer += data
        out: list[SerialFrame] = []
        self._scan(out, now)
        if (self._candidate_since is not None
                and now - self._candidate_since > self.stale_after_s and self._buffer):
            self._drop_candidate()
            self._scan(out, now)
        return out

    def flush(self) -> None:
        """Forget a partial candidate (the port was closed); its bytes count as ignored."""
        self.ignored_bytes += len(self._buffer)
        self._buffer.clear()
        self._candidate_since = None

    def _drop_candidate(self) -> None:
        self.bad_frames += 1
        self.ignored_bytes += 1
        del self._buffer[0]
        self._candidate_since = None

    def _scan(self, out: list[SerialFrame], now: float) -> None:
        buf = self._buffer
        while buf:
            start = buf.find(STX)
            if start < 0:
                self.ignored_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.ignored_bytes += start
                del buf[:start]
                self._candidate_since = None
            if len(buf) < 2:
                break
            length = buf[1]
            if not MIN_LEN <= length <= MAX_LEN:
                self.ignored_bytes += 1  # a lone 0x02 in noise: not a frame at all
                del buf[0]
                self._candidate_since = None
                continue
            total = length + FRAME_OVERHEAD
            if len(buf) < total:
                if self._candidate_since is None:
                    self._candidate_since = now
                break
            crc = (buf[total - 3] << 8) | buf[total - 2]
            if buf[total - 1] != ETX or crc16_ccitt_false(buf[1:total - 3]) != crc:
                self._drop_candidate()
                continue
            out.append(SerialFrame(buf[2], bytes(buf[3:total - 3]), now))
            self.frames += 1
            del buf[:total]
            self._candidate_since = None
