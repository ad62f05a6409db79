"""ISO 15765-2 (ISO-TP) frames, without I/O: enough for an ECU's side (the simulated vehicle)
and for tests that look at what crossed the bus.

The tester's own transport is can-isotp (agent/diagnostics); this module is the small
reference it is checked against. With extended addressing (``bmw``) byte 0 of every frame is
an address and the PCI follows; with normal addressing (``obd2``) the PCI is byte 0.

:func:`parse_frame` never raises: a frame that is not ISO-TP gives None.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from protocols.errors import ProtocolError

MAX_PAYLOAD: Final = 4095
FC_CONTINUE: Final = 0
FC_WAIT: Final = 1
FC_OVERFLOW: Final = 2


class FrameKind(IntEnum):
    SINGLE = 0
    FIRST = 1
    CONSECUTIVE = 2
    FLOW_CONTROL = 3


@dataclass(frozen=True, slots=True)
class IsoTpFrame:
    """One frame's PCI and data. ``length`` is the payload length (single and first frames);
    ``sequence`` the consecutive frame's number; ``flow_status``, ``block_size`` and
    ``stmin`` the flow control's. ``address`` is byte 0 under extended addressing."""

    kind: FrameKind
    data: bytes = b""
    length: int = 0
    sequence: int = 0
    flow_status: int = 0
    block_size: int = 0
    stmin: int = 0
    address: int | None = None


def stmin_seconds(stmin: int) -> float:
    """STmin as seconds: 0-127 ms, 0xF1-0xF9 = 100-900 µs; reserved values count as 127 ms
    (ISO 15765-2 tells the sender to use the longest)."""
    if 0 <= stmin <= 0x7F:
        return stmin / 1000
    if 0xF1 <= stmin <= 0xF9:
        return (stmin - 0xF0) / 10_000
    return 0.127


def _room(address: int | None) -> int:
    return 7 if address is None else 6


def segment(payload: bytes, *, address: int | None = None) -> list[bytes]:
    """The frames carrying ``payload`` (unpadded): a single frame, or a first frame and its
    consecutive frames. Raises ProtocolError for an empty or too long payload."""
    if not 1 <= len(payload) <= MAX_PAYLOAD:
        raise ProtocolError(f"ISO-TP carries 1 to {MAX_PAYLOAD} bytes, not {len(payload)}")
    head = b"" if address is None else bytes((address & 0xFF,))
    room = _room(address)
    if len(payload) <= room:
        return [head + bytes((len(payload),)) + payload]
    first = room - 1
    frames = [head + bytes((0x10 | (len(payload) >> 8), len(payload) & 0xFF)) + payload[:first]]
    sequence = 1
    for start in range(first, len(payload), room):
        frames.append(head + bytes((0x20 | sequence,)) + payload[start:start + room])
        sequence = (sequence + 1) & 0xF
    return frames


def flow_control(status: int = FC_CONTINUE, block_size: int = 0, stmin: int = 0, *,
                 address: int | None = None) -> bytes:
    head = b"" if address is None else bytes((address & 0xFF,))
    return head + bytes((0x30 | (status & 0xF), block_size & 0xFF, stmin & 0xFF))


def pad(data: bytes, byte: int = 0xCC) -> bytes:
    return data.ljust(8, bytes((byte,)))


def parse_frame(data: bytes | bytearray, *, extended: bool = False) -> IsoTpFrame | None:
    """The ISO-TP frame in ``data`` (a CAN frame's bytes), or None if it is not one."""
    raw = bytes(data)
    address = None
    if extended:
        if not raw:
            return None
        address, raw = raw[0], raw[1:]
    if not raw:
        return None
    kind, low = raw[0] >> 4, raw[0] & 0xF
    if kind == FrameKind.SINGLE:
        if low == 0 or low > len(raw) - 1:
            return None
        return IsoTpFrame(FrameKind.SINGLE, raw[1:1 + low], low, address=address)
    if kind == FrameKind.FIRST:
        if len(raw) < 2:
            return None
        length = (low << 8) | raw[1]
        if length <= _room(address):
            return None
        return IsoTpFrame(FrameKind.FIRST, raw[2:], length, address=address)
    if kind == FrameKind.CONSECUTIVE:
        return IsoTpFrame(FrameKind.CONSECUTIVE, raw[1:], sequence=low, address=address)
    if kind == FrameKind.FLOW_CONTROL:
        if len(raw) < 3 or low > FC_OVERFLOW:
            return None
        return IsoTpFrame(FrameKind.FLOW_CONTROL, flow_status=low, block_size=raw[1],
                          stmin=raw[2], address=address)
    return None


class Reassembler:
    """Sans-IO receiver of one ISO-TP stream: :meth:`feed` each frame (already parsed), get
    the payload when it is complete. A frame out of order ends the message under way
    (``errors`` counts it); a new single or first frame starts over."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length = 0
        self._next = 0
        self.errors = 0

    @property
    def receiving(self) -> bool:
        return self._length > 0

    def feed(self, frame: IsoTpFrame) -> bytes | None:
        if frame.kind == FrameKind.SINGLE:
            self._length = 0
            return frame.data
        if frame.kind == FrameKind.FIRST:
            self._buffer = bytearray(frame.data[:frame.length])
            self._length = frame.length
            self._next = 1
            return None
        if frame.kind == FrameKind.CONSECUTIVE:
            if not self._length:
                return None
            if frame.sequence != self._next:
                self.errors += 1
                self._length = 0
                return None
            self._buffer += frame.data
            self._next = (self._next + 1) & 0xF
            if len(self._buffer) >= self._length:
                payload = bytes(self._buffer[:self._length])
                self._length = 0
                return payload
        return None
