"""The reader edge: one base class owns reconnect and backoff, each transport the small part
that differs (python-can's ``BusABC.recv`` / ``_recv_internal`` split).

A reader turns its device into :data:`ReaderEvent` values: CAN frames (from a bus or unwrapped
from the serial framing) and the serial reader's KEY_REMOVED. It never touches the session
assembler; the service loop feeds it.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import ReaderError
from protocols.can_frame import CanFrame
from protocols.values import fast_init

log = logging.getLogger(__name__)


@fast_init
@dataclass(frozen=True, slots=True)
class KeyRemoved:
    """The serial reader reported that the key was lifted."""

    at: float


ReaderEvent = CanFrame | KeyRemoved


@dataclass(slots=True)
class ReaderCounters:
    frames: int = 0  # CAN frames delivered (all ids)
    bad_frames: int = 0  # serial candidates that failed CRC/ETX
    ignored_bytes: int = 0  # serial bytes outside frames
    unknown_types: int = 0  # serial frames of an unknown TYPE
    reader_faults: int = 0  # READER_FAULT frames
    bus_errors: int = 0  # CAN error frames / driver errors
    reconnects: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


class KeyReader(ABC):
    """Base of the serial and CAN readers.

    :meth:`read` is the public entry point: it opens the device when needed, with exponential
    backoff between failed attempts, and never blocks longer than its timeout. Subclasses
    implement ``_open``, ``_read_internal`` and ``_close`` and raise :class:`ReaderError` (a
    transient one) when the device goes away.
    """

    transport: str = ""

    def __init__(self, *, backoff_min_s: float = 0.2, backoff_max_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counters = ReaderCounters()
        self.connected = False
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._backoff_s = backoff_min_s
        self._next_attempt = 0.0
        self._clock = clock
        self._last_error: str | None = None
        self.on_connection_change: Callable[[bool], None] | None = None
        #: The last read found its bytes already waiting in the port: they arrived at some
        #: moment after the read before it, not when they were stamped (the read's time).
        #: The service then tells the assembler that the line was not silent
        #: (``SessionAssembler.heard``). Readers that cannot tell leave it False.
        self.read_was_waiting = False

    @property
    @abstractmethod
    def port_name(self) -> str:
        """What the status shows as ``reader.port``."""

    def read(self, timeout_s: float) -> list[ReaderEvent]:
        """Events from the device within ``timeout_s``; an empty list when there were none or
        the device is away (then it is retried with backoff)."""
        self.read_was_waiting = False
        if not self.connected and not self._try_open(timeout_s):
            return []
        try:
            return self._read_internal(timeout_s)
        except ReaderError as exc:
            self._lost(str(exc))
            return []

    def close(self) -> None:
        if self.connected:
            self._close_quietly()
            self._set_connected(False)

    def _try_open(self, timeout_s: float) -> bool:
        now = self._clock()
        if now < self._next_attempt:
            time.sleep(min(timeout_s, self._next_attempt - now))
            return False
        try:
            self._open()
        except ReaderError as exc:
            if str(exc) != self._last_error:
                log.warning("reader %s unavailable: %s (retrying with backoff)", self.port_name, exc)
                self._last_error = str(exc)
            self._next_attempt = self._clock() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, self._backoff_max_s)
            return False
        self._backoff_s = self._backoff_min_s
        self._last_error = None
        log.info("reader %s connected", self.port_name)
        self._set_connected(True)
        return True

    def _lost(self, why: str) -> None:
        log.warning("reader %s lost: %s", self.port_name, why)
        self._close_quietly()
        self.counters.reconnects += 1
        self._next_attempt = self._clock() + self._backoff_min_s
        self._set_connected(False)

    def _close_quietly(self) -> None:
        try:
            self._close()
        except Exception as exc:  # closing a vanished device may fail in many ways
            log.debug("closing %s: %s", self.port_name, exc)

    def _set_connected(self, value: bool) -> None:
        changed = value != self.connected
        self.connected = value
        if changed and self.on_connection_change is not None:
            self.on_connection_change(value)

    @abstractmethod
    def _open(self) -> None:
        """Open the device; raise ReaderError when it is not there."""

    @abstractmethod
    def _read_internal(self, timeout_s: float) -> list[ReaderEvent]:
        """Read what arrives within ``timeout_s``; raise ReaderError when the device is gone."""

    @abstractmethod
    def _close(self) -> None:
        """Release the device."""
