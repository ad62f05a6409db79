"""The serial key reader on a pseudo-terminal (``cbs-sim serial``).

It behaves like the reader firmware of protocol section 2: HELLO at power-up (once the
agent has the port open) and in answer to PING; for each key read KEY_PRESENT, the session
as CAN_FRAME frames, then, ``dwell_s`` later when the advisor lifts the key, KEY_REMOVED.
While the key lies on the reader, REREAD re-sends its session with the next sequence
number. Bytes are paced like a UART at ``baudrate`` (8N1: ten bits a byte), or go out as
fast as the pty takes them when the baud rate is 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from protocols.key_session import KeySession
from protocols.serial_framing import FrameType, SerialFrameDecoder, encode_frame
from simulators.faults import Transport
from simulators.runtime import PtySimulator, SimOptions
from simulators.transmission import Pause, SerialSend, Transmission

logger = logging.getLogger(__name__)

DEFAULT_FIRMWARE = "cbs-sim 1.0.0"


@dataclass
class SerialOptions:
    baudrate: int = 115_200  # 0: no pacing
    dwell_s: float = 1.0
    firmware: str = DEFAULT_FIRMWARE


class SerialReaderSimulator(PtySimulator):
    transport = Transport.SERIAL

    def __init__(self, options: SimOptions, serial: SerialOptions | None = None, *,
                 stdout: TextIO) -> None:
        self.serial = serial if serial is not None else SerialOptions()
        if self.serial.baudrate and self.serial.baudrate < 9600:
            raise ValueError("baud rates below 9600 stretch a frame towards the agent's "
                             "session timeout; use 9600 or more (or 0 for no pacing)")
        super().__init__(options, stdout=stdout)
        self._captured_bytes = 0
        self._capture: BinaryIO | None = (open(options.capture, "wb")  # noqa: SIM115
                                          if options.capture is not None else None)
        self._host_decoder = SerialFrameDecoder()
        self._replies: list[bytes] = []
        self._reread_pending = False
        self._key_present = False
        self._line_free_at = 0.0
        self.hello = encode_frame(FrameType.HELLO,
                                  bytes((1,)) + self.serial.firmware.encode("ascii", "replace"))

    # -- host side --------------------------------------------------------------------------

    def _on_host_bytes(self, data: bytes) -> None:
        for frame in self._host_decoder.feed(data, time.monotonic()):
            if frame.frame_type == FrameType.PING:
                self._replies.append(self.hello)
            elif frame.frame_type == FrameType.REREAD:
                if self._key_present:
                    self._reread_pending = True
                else:
                    logger.info("REREAD with no key on the reader: ignored")
            else:
                logger.debug("host sent frame type 0x%02X: ignored", frame.frame_type)

    def _flush_replies(self) -> None:
        while self._replies:
            self._send(self._replies.pop(0), pace=False)

    def _on_port_opened(self) -> None:
        super()._on_port_opened()
        self._host_decoder = SerialFrameDecoder()
        self._replies.clear()
        self._reread_pending = False
        self._key_present = False

    def _on_powered_up(self) -> None:
        self._send(self.hello, pace=False)

    def _close_extras(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None
            if not self._captured_bytes:
                logger.warning("nothing was captured to %s: no byte was played",
                               self.options.capture)

    def _captured(self, data: bytes) -> None:
        if self._capture is not None:
            self._capture.write(data)
            self._capture.flush()
            self._captured_bytes += len(data)

    # -- reads ------------------------------------------------------------------------------

    def _play_read(self, read_index: int) -> None:
        session = self.fleet.session(read_index)
        tx = self.planner.plan_read(session, read_index=read_index, first_seq=self.seq)
        self._key_present = True
        if not self._execute(tx, unplug=self._unplugs_mid_session(read_index)):
            return
        if tx.key_removed:  # a fault took the key away mid-session
            self._key_present = False
            self._reread_pending = False
            return
        present: KeySession = tx.sessions[-1].session
        deadline = time.monotonic() + self.serial.dwell_s
        while True:
            remaining = deadline - time.monotonic()
            if not self._wait(max(0.0, remaining), until=lambda: self._reread_pending):
                return
            if not self._reread_pending:
                break
            self._reread_pending = False
            reread = self.planner.plan_reread(present, first_seq=self.seq)
            if not self._execute(reread):
                return
        self._key_present = False
        self._reread_pending = False
        self._send(encode_frame(FrameType.KEY_REMOVED))

    def _execute(self, tx: Transmission, *, unplug: bool = False) -> bool:
        """Play the steps, then write the truth. False when stopped midway (no truth), or
        when ``unplug`` cut the read in half (the truth says ``disturbed``): the reader was
        unplugged mid-session and plugged back."""
        self.seq = (self.seq + tx.seqs_used) & 0xFF
        if tx.note:
            logger.debug("read plan: %s", tx.note)
        self.disturbed = not self.port.host_connected()
        sends = [i for i, step in enumerate(tx.steps) if not isinstance(step, Pause)]
        cut_at = sends[len(sends) // 2] if unplug and sends else None
        for index, step in enumerate(tx.steps):
            if index == cut_at:
                self._unplug_now()  # stopped meanwhile or not, this read is over
                self._record(tx.sessions)
                self._key_present = False
                self._reread_pending = False
                return False
            if isinstance(step, Pause):
                if not self._wait(step.seconds):
                    return False
            else:
                assert isinstance(step, SerialSend)
                if not self._pace():
                    return False
                self._send(step.data)
        if self._stop:
            return False
        self._record(tx.sessions)
        return True

    def _pace(self) -> bool:
        """Wait until the UART has shifted out what we wrote before."""
        remaining = self._line_free_at - time.monotonic()
        return remaining <= 0 or self._wait(remaining)

    def _send(self, data: bytes, *, pace: bool = True) -> None:
        if pace and self.serial.baudrate:
            now = time.monotonic()
            if self._line_free_at > now:
                time.sleep(self._line_free_at - now)
        if self._write(data) and self.serial.baudrate:
            start = max(self._line_free_at, time.monotonic())
            self._line_free_at = start + len(data) * 10 / self.serial.baudrate
