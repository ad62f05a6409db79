"""The CAN key reader: any python-can interface (socketcan, slcan, pcan, kvaser, virtual, ...).

It asks the interface for an acceptance filter on 0x6F0-0x6FF (python-can filters in software
where the hardware cannot), drains every frame that is waiting on each read so a busy bus never
builds a backlog, and reports a vanished adapter as a lost reader so the base class reconnects
with backoff. Frames keep the interface's own timestamps; the session timeout runs on them.
"""

from __future__ import annotations

import logging
from typing import Any

import can

from agent.errors import ReaderDisconnected, ReaderError
from agent.readers.base import KeyReader, ReaderEvent
from protocols.can_frame import CanFrame

log = logging.getLogger(__name__)

KEY_READER_FILTER = [{"can_id": 0x6F0, "can_mask": 0x7F0, "extended": False}]
MAX_FRAMES_PER_READ = 2000


class CanKeyReader(KeyReader):
    transport = "can"

    def __init__(self, interface: str, channel: str, *, bitrate: int = 500_000,
                 filter_key_ids: bool = True, bus_options: dict[str, Any] | None = None,
                 **kwargs: float) -> None:
        super().__init__(**kwargs)
        self._interface = interface
        self._channel = channel
        self._bitrate = bitrate
        self._filters = KEY_READER_FILTER if filter_key_ids else None
        self._bus_options = bus_options or {}
        self._bus: can.BusABC | None = None
        self.other_traffic = 0
        self.filtered_elsewhere = 0
        self._filtered_before = 0  # from buses closed before this one

    @property
    def port_name(self) -> str:
        return f"{self._interface}:{self._channel}"

    def _open(self) -> None:
        try:
            self._bus = can.Bus(interface=self._interface, channel=self._channel,
                                bitrate=self._bitrate, can_filters=self._filters,
                                **self._bus_options)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise ReaderError(f"cannot open {self.port_name}: {exc}") from exc
        except Exception as exc:  # interface plugins raise their own (serial.SerialException, ...)
            raise ReaderError(f"cannot open {self.port_name}: {type(exc).__name__}: {exc}") from exc

    def _read_internal(self, timeout_s: float) -> list[ReaderEvent]:
        bus = self._bus
        assert bus is not None
        events: list[ReaderEvent] = []
        try:
            message = bus.recv(timeout_s)
            while message is not None:
                self._take(message, events)
                if len(events) >= MAX_FRAMES_PER_READ:
                    break
                message = bus.recv(0)
        except Exception as exc:  # python-can and its plugins raise many types when a device goes
            raise ReaderDisconnected(f"{type(exc).__name__}: {exc}") from exc
        # Interfaces that filter in our process can say what they passed over (fastslcan does).
        self.filtered_elsewhere = self._filtered_before + getattr(bus, "filtered_frames", 0)
        return events

    @property
    def other_frames(self) -> int:
        """Other traffic seen on the bus (ignored): by us, or by the interface's filter."""
        return self.other_traffic + self.filtered_elsewhere

    def _take(self, message: can.Message, events: list[ReaderEvent]) -> None:
        if message.is_error_frame:
            self.counters.bus_errors += 1
            return
        if message.is_extended_id or message.is_remote_frame or message.is_fd:
            self.other_traffic += 1
            return
        self.counters.frames += 1
        events.append(CanFrame(message.arbitration_id, bytes(message.data), message.timestamp))

    def _close(self) -> None:
        bus, self._bus = self._bus, None
        self._filtered_before = self.filtered_elsewhere
        if bus is not None:
            bus.shutdown()
