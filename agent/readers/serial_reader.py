"""The serial key reader (protocol section 2) over pyserial.

Bytes go through the sans-IO :class:`~protocols.serial_framing.SerialFrameDecoder`; CAN_FRAME
payloads become :class:`CanFrame` events stamped with the wall clock of their arrival, so the
session's ``read_at`` is the agent's clock at the END frame. Arrival is the read's time: bytes
that were already waiting when the loop came to read them (it was busy with a batch) get the
read's time too, and :attr:`KeyReader.read_was_waiting` says so, so that the wait is not
taken for a silent line (the session timeout).
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Iterable

import serial

from agent.errors import ReaderDisconnected, ReaderError
from agent.readers.base import KeyReader, KeyRemoved, ReaderCounters, ReaderEvent
from protocols.serial_framing import (
    FrameType,
    SerialFrame,
    SerialFrameDecoder,
    decode_can_payload,
    decode_hello,
    encode_frame,
)

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 4096


class SerialKeyReader(KeyReader):
    transport = "serial"

    def __init__(self, port: str, *, baudrate: int = 115200,
                 wall_clock: Callable[[], float] = time.time, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self._port = port
        self._baudrate = baudrate
        self._wall_clock = wall_clock
        self._serial: serial.Serial | None = None
        self.decoder = SerialFrameDecoder()
        self.firmware: str | None = None

    @property
    def port_name(self) -> str:
        return self._port

    def _open(self) -> None:
        try:
            # Non-blocking: the read waits with select, so the tty is configured once.
            self._serial = serial.Serial(self._port, self._baudrate, bytesize=8, parity="N",
                                         stopbits=1, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ReaderError(f"cannot open {self._port}: {exc}") from exc
        self.send(FrameType.PING)

    def send(self, frame_type: int, payload: bytes = b"") -> None:
        """Send a host-to-reader frame (PING, REREAD); a failure marks the reader lost."""
        if self._serial is None:
            return
        try:
            self._serial.write(encode_frame(frame_type, payload))
        except (serial.SerialException, OSError) as exc:
            self._lost(f"write failed: {exc}")

    def _read_internal(self, timeout_s: float) -> list[ReaderEvent]:
        port = self._serial
        assert port is not None
        try:
            waiting = port.in_waiting
            self.read_was_waiting = bool(waiting)  # the loop came late: see KeyReader
            if not waiting:
                readable, _, _ = select.select([port.fileno()], [], [], timeout_s)
                waiting = port.in_waiting if readable else 0
                if readable and not waiting:
                    raise ReaderDisconnected("the port went away (hang-up)")
            data = port.read(min(waiting, READ_CHUNK_BYTES)) if waiting else b""
        except (serial.SerialException, OSError, TypeError, ValueError) as exc:
            # A vanished USB adapter or a pty whose other side closed fails here; TypeError
            # and ValueError come from a port closed under pyserial.
            raise ReaderDisconnected(f"read failed: {exc}") from exc
        now = self._wall_clock()
        decoder = self.decoder
        before_bad, before_ignored = decoder.bad_frames, decoder.ignored_bytes
        frames = decoder.feed(data, now)
        self.counters.bad_frames += decoder.bad_frames - before_bad
        self.counters.ignored_bytes += decoder.ignored_bytes - before_ignored
        return serial_frame_events(frames, self.counters, self)

    def _close(self) -> None:
        self.decoder.flush()
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None


def serial_frame_events(frames: Iterable[SerialFrame], counters: ReaderCounters,
                        hello_sink: SerialKeyReader | None = None) -> list[ReaderEvent]:
    """What the service needs from intact serial frames: CAN frames and KEY_REMOVED.
    HELLO, KEY_PRESENT and READER_FAULT are logged; unknown types and malformed CAN_FRAME
    payloads are counted. Shared by the live reader and ``cbs-agent decode``."""
    events: list[ReaderEvent] = []
    for frame in frames:
        if frame.frame_type == FrameType.CAN_FRAME:
            can_frame = decode_can_payload(frame.payload, frame.timestamp)
            if can_frame is None:
                counters.bad_frames += 1
                log.debug("malformed CAN_FRAME payload %s", frame.payload.hex())
                continue
            counters.frames += 1
            events.append(can_frame)
        elif frame.frame_type == FrameType.KEY_REMOVED:
            events.append(KeyRemoved(frame.timestamp))
        elif frame.frame_type == FrameType.KEY_PRESENT:
            log.debug("key present")
        elif frame.frame_type == FrameType.HELLO:
            hello = decode_hello(frame.payload)
            if hello is not None:
                if hello_sink is not None:
                    hello_sink.firmware = hello[1]
                log.info("reader says hello: protocol %d, firmware %r", *hello)
        elif frame.frame_type == FrameType.READER_FAULT:
            counters.reader_faults += 1
            code = frame.payload[0] if frame.payload else None
            log.warning("reader fault %s: %s", code,
                        frame.payload[1:].decode("ascii", errors="replace"))
        else:
            counters.unknown_types += 1
            log.debug("ignored serial frame of unknown type 0x%02X", frame.frame_type)
    return events
