"""A USB-CAN adapter speaking SLCAN on a pseudo-terminal, on a bus with the key reader
(``cbs-sim can``).

python-can's ``slcan`` interface opens it like real hardware
(``can.Bus(interface="slcan", channel=PTY, bitrate=500000)``): the adapter answers its
commands (:class:`~simulators.slcan.SlcanAdapter`) and, once the channel is open, streams
the bus as ``t``/``T`` lines: the key reader's sessions (with CAN-level faults: frames
dropped, duplicated, reordered, bus-off pauses) and background traffic of other ECUs at
``bus_load`` of ``bitrate``. Frames are paced at bus speed (an 8-byte frame is about 111
bits). Nothing is delivered while the channel is closed or the host set another bitrate
than the bus runs at (a real adapter sees only errors then).

When the host cannot keep up, background frames are dropped (like an adapter's overflowing
buffer) while key-reader frames wait for room, so the ground truth holds.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import TextIO

import can

from protocols.can_frame import CanFrame
from simulators.faults import Transport
from simulators.runtime import PtySimulator, SimOptions
from simulators.slcan import LineSplitter, SlcanAdapter, SlcanFrame, encode_frame_line
from simulators.transmission import CanSend, Pause, Transmission

logger = logging.getLogger(__name__)

BITS_PER_8_BYTE_FRAME = 111
_STANDARD_IDS = (0x0A8, 0x0AA, 0x0C4, 0x0C8, 0x12F, 0x130, 0x1A0, 0x1D0, 0x21A, 0x2CA, 0x2F8,
                 0x328, 0x330, 0x380, 0x3B4, 0x4F8, 0x5C0, 0x7DF, 0x7E8)
_EXTENDED_IDS = (0x18FEF100, 0x18FEEE00, 0x0CF00400, 0x18F00503, 0x18DAF110)


@dataclass
class CanOptions:
    bitrate: int = 500_000
    bus_load: float = 0.0  # share of the bus used by other ECUs, 0-0.95
    extended_background: bool = False  # some background frames with 29-bit ids
    timestamps: bool = False  # start with SLCAN timestamps on (as after Z1)


def frame_bits(dlc: int, *, extended: bool = False) -> int:
    """Approximate bits a classic data frame occupies on the bus (stuffing ignored)."""
    return (67 if extended else 47) + 8 * dlc


class SlcanSimulator(PtySimulator):
    transport = Transport.CAN
    tick_s = 0.005

    def __init__(self, options: SimOptions, can_options: CanOptions | None = None, *,
                 stdout: TextIO) -> None:
        self.can = can_options if can_options is not None else CanOptions()
        if not 0 <= self.can.bus_load <= 0.95:
            raise ValueError("bus load must be between 0 and 0.95")
        if self.can.bitrate <= 0:
            raise ValueError("bitrate must be positive")
        super().__init__(options, stdout=stdout)
        self._can_logger = can.Logger(str(options.capture)) if options.capture else None
        self._background_rng = random.Random(f"cbs-sim/background/{options.seed}")
        self._background_per_s = self.can.bus_load * self.can.bitrate / BITS_PER_8_BYTE_FRAME
        self._next_background_at = 0.0
        self._bus_silent_until = 0.0
        self._bus_free_at = 0.0
        self._splitter = LineSplitter()
        self._replies: list[bytes] = []
        self.adapter = SlcanAdapter(timestamps=self.can.timestamps)
        self.background_sent = 0
        self.background_dropped = 0
        self._warned_bitrate: object = None
        self.captured_frames = 0

    # -- adapter (host) side ----------------------------------------------------------------

    def _on_port_opened(self) -> None:
        super()._on_port_opened()
        self._splitter = LineSplitter()
        self._replies.clear()
        self.adapter = SlcanAdapter(timestamps=self.can.timestamps)

    def _on_host_bytes(self, data: bytes) -> None:
        for line in self._splitter.feed(data):
            was_open = self.adapter.is_open
            self._replies.append(self.adapter.handle(line))
            if self.adapter.is_open != was_open:
                logger.info("SLCAN channel %s", "opened" if self.adapter.is_open else "closed")
            if line[:1] in (b"t", b"T", b"r", b"R"):
                logger.info("host transmitted %r (ignored by the bus model)", line)

    def _flush_replies(self) -> None:
        while self._replies:
            self._write(self._replies.pop(0))

    def _bitrate_ok(self) -> bool:
        chosen = self.adapter.bitrate
        if chosen is None or chosen == "custom" or chosen == self.can.bitrate:
            return True
        if self._warned_bitrate != chosen:
            self._warned_bitrate = chosen
            logger.warning("host set the adapter to %s bit/s, the bus runs at %d: the adapter "
                           "receives nothing", chosen, self.can.bitrate)
        return False

    def _ready(self) -> bool:
        return self.port.host_connected() and self.adapter.is_open and self._bitrate_ok()

    def _close_extras(self) -> None:
        if self._can_logger is not None:
            self._can_logger.stop()
            self._can_logger = None
            if not self.captured_frames:
                logger.warning("nothing was captured to %s: no frame was played",
                               self.options.capture)
        logger.info("background frames: %d sent, %d dropped (host too slow)",
                    self.background_sent, self.background_dropped)

    # -- the bus ----------------------------------------------------------------------------

    def _deliver(self, frame: SlcanFrame, *, droppable: bool) -> bool:
        if self.adapter.timestamps:
            frame = SlcanFrame(frame.arbitration_id, frame.data, frame.extended,
                               timestamp_ms=int(time.monotonic() * 1000) % 60_000)
        return self._write(encode_frame_line(frame), droppable=droppable)

    def _on_bus(self, frame: SlcanFrame) -> None:
        """Record a frame that is on the bus, whether or not the host's adapter takes it (the
        capture is what a bus logger would have seen)."""
        self.captured_frames += 1
        if self._can_logger is not None:
            self._can_logger.on_message_received(can.Message(
                timestamp=time.time(), arbitration_id=frame.arbitration_id,
                is_extended_id=frame.extended, dlc=len(frame.data), data=frame.data))

    def _on_tick(self, now: float) -> None:
        if (self._background_per_s <= 0 or self._draining or now < self._bus_silent_until
                or not self._ready()):
            self._next_background_at = max(self._next_background_at, now)
            return
        if self._next_background_at == 0.0:
            self._next_background_at = now
        rng = self._background_rng
        budget = 200  # frames per tick at most; the rest is skipped like a lost arbitration
        while self._next_background_at <= now and budget:
            budget -= 1
            self._next_background_at += rng.uniform(0.5, 1.5) / self._background_per_s
            extended = self.can.extended_background and rng.random() < 0.2
            arbitration_id = rng.choice(_EXTENDED_IDS if extended else _STANDARD_IDS)
            data = bytes(rng.getrandbits(8) for _ in range(8 if rng.random() < 0.8
                                                              else rng.randint(0, 7)))
            background = SlcanFrame(arbitration_id, data, extended)
            self._on_bus(background)
            if self._deliver(background, droppable=True):
                self.background_sent += 1
            else:
                self.background_dropped += 1
        if not budget:
            self._next_background_at = now

    def _play_read(self, read_index: int) -> None:
        session = self.fleet.session(read_index)
        tx = self.planner.plan_read(session, read_index=read_index, first_seq=self.seq)
        self._execute(tx)

    def _execute(self, tx: Transmission) -> bool:
        self.seq = (self.seq + tx.seqs_used) & 0xFF
        if tx.note:
            logger.debug("read plan: %s", tx.note)
        self.disturbed = not self._ready()
        for step in tx.steps:
            if isinstance(step, Pause):
                if step.bus_off:
                    self._bus_silent_until = time.monotonic() + step.seconds
                if not self._wait(step.seconds):
                    return False
                continue
            assert isinstance(step, CanSend)
            if not self._send_key_frame(step.frame):
                return False
        if self._stop:
            return False
        self._record(tx.sessions)
        return True

    def _send_key_frame(self, frame: CanFrame) -> bool:
        """One key-reader frame at bus speed; False when stopping."""
        wait = self._bus_free_at - time.monotonic()
        if wait > 0 and not self._wait(wait):
            return False
        self._service()
        self._on_bus(SlcanFrame(frame.arbitration_id, frame.data))
        if not self._ready():
            self.disturbed = True  # the frame passes the bus unseen by the host
        elif not self._deliver(SlcanFrame(frame.arbitration_id, frame.data), droppable=False):
            self.disturbed = True
        start = max(self._bus_free_at, time.monotonic())
        self._bus_free_at = start + frame_bits(len(frame.data)) / self.can.bitrate
        return not self._stop
