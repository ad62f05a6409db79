"""``fastslcan``: a python-can interface for SLCAN (Lawicel) USB-CAN adapters, built for a
saturated bus on a slow core.

python-can's stock ``slcan`` interface reads its port a line at a time and builds a
``Message`` for every frame before filters are applied; on a pseudo-terminal it tops out near
11,000 frames/s at a full core. This one reads whatever the port holds in one call, splits
lines in bulk, applies the acceptance filters on the raw identifier, and only builds a
``Message`` for frames that pass. It registers through python-can's own plugin mechanism
(entry point ``can.interface``), so ``can.Bus(interface="fastslcan", channel=PORT)`` works for
every python-can user, and the stock ``slcan`` stays selectable.

Frames are stamped with the host's clock when their chunk arrived (adapter timestamps, when
switched on, are 16-bit milliseconds that wrap every minute, so the host clock is the better
basis for the session timeout).

Coalescing on a busy bus. An adapter writes each frame as it comes off the bus, so on a
saturated bus every frame would cost a wake-up (select, read, split) of its own, most of the
interface's CPU. While no frame has passed the acceptance filters for ``QUIET_S``, the
interface waits ``coalesce_s`` (default 2 ms) before each read, so that one read takes a
dozen or more frames of other traffic at once. Once a wanted frame arrives, it reads
without waiting until the traffic it wants has been quiet for ``QUIET_S`` again: the first
frame after a quiet spell (a key session's START) may be ``coalesce_s`` late, the frames
after it, END included, are not. ``coalesce_s=0`` reads at once, always.
"""

from __future__ import annotations

import binascii
import collections
import logging
import select
import time
from typing import Any

import can
import serial

log = logging.getLogger(__name__)

BITRATE_COMMANDS = {10_000: b"S0", 20_000: b"S1", 50_000: b"S2", 100_000: b"S3", 125_000: b"S4",
                    250_000: b"S5", 500_000: b"S6", 750_000: b"S7", 1_000_000: b"S8",
                    83_300: b"S9"}
READ_CHUNK_BYTES = 65536
QUIET_S = 0.05  # no wanted frame for this long: reads are coalesced (see the module docstring)
COALESCE_S = 0.002
MAX_PENDING_LINE = 64  # no valid SLCAN line is longer: a runaway one is dropped


class FastSlcanBus(can.BusABC):
    """SLCAN over a serial port. ``channel`` is the port (``/dev/ttyACM0``, a pty path, or
    ``PORT@BAUD``); ``bitrate`` selects the CAN bit rate with the ``Sn`` command."""

    def __init__(self, channel: str, bitrate: int | None = None, tty_baudrate: int = 115200,
                 sleep_after_open: float = 0.0, coalesce_s: float = COALESCE_S,
                 **kwargs: Any) -> None:
        if not channel:
            raise can.CanInitializationError("fastslcan needs a channel (the serial port)")
        if "@" in channel:
            channel, _, baud = channel.partition("@")
            tty_baudrate = int(baud)
        try:
            self._port = serial.serial_for_url(channel, baudrate=tty_baudrate, timeout=0,
                                               exclusive=True)
            self._fd = self._port.fileno()
        except (serial.SerialException, ValueError, AttributeError) as exc:
            raise can.CanInitializationError(f"cannot open {channel}: {exc}") from exc
        self.channel_info = f"fastslcan on {channel}"
        self._pending = bytearray()
        self._frames: collections.deque[can.Message] = collections.deque()
        self._id_filters: list[tuple[int, int, bool | None]] = []
        self.dropped_lines = 0
        self.filtered_frames = 0  # frames the acceptance filter passed over (other traffic)
        self._coalesce_s = max(0.0, float(coalesce_s))
        self._last_wanted = -QUIET_S  # monotonic time of the last frame that passed the filters
        if sleep_after_open:
            time.sleep(sleep_after_open)
        self._write(b"C\r")
        if bitrate is not None:
            command = BITRATE_COMMANDS.get(bitrate)
            if command is None:
                self._port.close()
                raise ValueError(f"bitrate {bitrate} is not one of {sorted(BITRATE_COMMANDS)}")
            self._write(command + b"\r")
        self._write(b"O\r")
        super().__init__(channel=channel, **kwargs)

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise can.CanOperationError(f"write to {self._port.port} failed: {exc}") from exc

    # -- filters: matched on the raw id, before a Message exists --------------------------

    def _apply_filters(self, filters: can.typechecking.CanFilters | None) -> None:
        self._id_filters = [
            (f["can_id"], f["can_mask"], f.get("extended")) for f in (filters or [])]  # type: ignore[misc]

    def _accepts(self, can_id: int, extended: bool) -> bool:
        if not self._id_filters:
            return True
        for wanted, mask, ext in self._id_filters:
            if ext is not None and ext != extended:
                continue
            if (can_id ^ wanted) & mask == 0:
                return True
        self.filtered_frames += 1
        return False

    # -- receiving ----------------------------------------------------------------------

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if self._frames:
            return self._frames.popleft(), True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._fill(deadline)
            if self._frames:
                return self._frames.popleft(), True
            if deadline is not None and time.monotonic() >= deadline:
                return None, True

    def _fill(self, deadline: float | None) -> None:
        """Wait (select, up to the deadline) until the port has bytes, then take them all.

        The port itself stays non-blocking: changing pyserial's timeout per call would
        reconfigure the tty (tcsetattr) on every read."""
        port = self._port
        if self._coalesce_s:
            now = time.monotonic()
            if now - self._last_wanted > QUIET_S:  # only other traffic lately: gather more
                pause = self._coalesce_s if deadline is None else min(self._coalesce_s,
                                                                       deadline - now)
                if pause > 0:
                    time.sleep(pause)
        try:
            waiting = port.in_waiting
            if not waiting:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                readable, _, _ = select.select([self._fd], [], [], remaining)
                if not readable:
                    return
                waiting = port.in_waiting
                if not waiting:  # readable with nothing to read: the other side hung up
                    raise can.CanOperationError(f"{port.port}: the adapter went away (hang-up)")
            data = port.read(min(waiting, READ_CHUNK_BYTES))
        except (serial.SerialException, OSError, TypeError, ValueError) as exc:
            raise can.CanOperationError(f"read from {port.port} failed: {exc}") from exc
        before = len(self._frames)
        self._parse(data, time.time())
        if len(self._frames) > before:
            self._last_wanted = time.monotonic()

    def _parse(self, data: bytes, now: float) -> None:
        buffer = self._pending
        buffer += data
        lines = bytes(buffer).split(b"\r")
        tail = lines.pop()
        buffer.clear()
        if len(tail) <= MAX_PENDING_LINE:
            buffer += tail
        else:
            self.dropped_lines += 1
        frames = self._frames
        accepts = self._accepts
        unhex = binascii.unhexlify
        for line in lines:
            kind = line[:1]
            try:
                # A line is kind, id (3 or 8 hex digits), DLC, 2*DLC hex digits of data (none
                # for a remote frame), then nothing or a 4-digit timestamp. int() alone would
                # take " 6F", "+6F" or "6_F" as an id, and an 11-bit id above 0x7FF.
                if kind == b"t" or kind == b"r":
                    ident = line[1:4]
                    can_id = int(ident, 16)
                    extended = False
                    body = 5
                elif kind == b"T" or kind == b"R":
                    ident = line[1:9]
                    can_id = int(ident, 16)
                    extended = True
                    body = 10
                else:
                    continue  # acks (empty lines), BEL errors, version answers
                remote = kind == b"r" or kind == b"R"
                dlc = line[body - 1] - 48
                size = 0 if remote else 2 * dlc
                if not (0 <= dlc <= 8 and ident.isalnum() and len(line) - body - size in (0, 4)
                        and can_id <= (0x1FFFFFFF if extended else 0x7FF)):
                    self.dropped_lines += 1
                    continue
                if len(line) - body - size == 4:
                    int(line[body + size:], 16)  # the timestamp: hex digits, or a bad line
                    if not line[body + size:].isalnum():
                        raise ValueError("timestamp")
                if not accepts(can_id, extended):
                    continue
                data_bytes = b"" if remote else unhex(line[body:body + size])
            except (ValueError, IndexError, binascii.Error):
                self.dropped_lines += 1
                continue
            frames.append(can.Message(timestamp=now, arbitration_id=can_id, is_extended_id=extended,
                                      is_remote_frame=remote, dlc=dlc, data=data_bytes,
                                      channel=self.channel_info, check=False))

    # -- sending and shutdown -----------------------------------------------------------

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        if msg.is_remote_frame:
            line = (b"R%08X%d" if msg.is_extended_id else b"r%03X%d") % (msg.arbitration_id, msg.dlc)
        else:
            line = (b"T%08X%d" if msg.is_extended_id else b"t%03X%d") % (msg.arbitration_id, msg.dlc)
            line += binascii.hexlify(bytes(msg.data)).upper()
        self._write(line + b"\r")

    def shutdown(self) -> None:
        super().shutdown()
        try:
            self._port.write(b"C\r")
            self._port.close()
        except (serial.SerialException, OSError) as exc:
            log.debug("closing %s: %s", self._port.port, exc)
