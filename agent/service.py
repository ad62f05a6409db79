"""The service loop of ``cbs-agent run``: reader -> assembler -> pipeline -> outbox -> publisher.

One thread reads and assembles (the only writer of the outbox); the publisher's thread drains
the outbox to the broker. A readout counts as read once the outbox has committed it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone

from agent import __version__
from agent.errors import OutboxError
from agent.models import (
    READOUT_SCHEMA,
    REJECTED_SCHEMA,
    Counters,
    OutboxStatus,
    ReaderStatus,
    Status,
    to_json,
)
from agent.outbox import Outbox
from agent.payloads import event_time
from agent.pipeline import ReadoutPipeline
from agent.publisher import MqttPublisher
from agent.reader import KeyReader, KeyRemoved
from agent.topics import Topics
from protocols.can_frame import CanFrame
from protocols.session import SessionAccepted, SessionAssembler, SessionEvent

log = logging.getLogger(__name__)

READ_SLICE_S = 0.05
MAX_UNCOMMITTED = 1000


class AgentService:
    """Owns the loop; every collaborator is injected so tests can assemble real parts freely."""

    def __init__(self, *, reader: KeyReader, assembler: SessionAssembler, pipeline: ReadoutPipeline,
                 outbox: Outbox, publisher: MqttPublisher, topics: Topics,
                 retain_vehicles: bool = True, status_interval_s: float = 30.0,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.assembler = assembler
        self.pipeline = pipeline
        self.outbox = outbox
        self.publisher = publisher
        self.topics = topics
        self.retain_vehicles = retain_vehicles
        self.status_interval_s = status_interval_s
        self._wall_clock = wall_clock
        self.since = datetime.now(timezone.utc)
        self.readouts = 0
        self.rejected = 0
        self.outbox_error: str | None = None
        # Payloads the outbox could not take (disk full, read-only): kept, bounded, retried.
        self._uncommitted: deque[tuple[str, bytes, bool, str, str]] = deque()
        # Frame time minus wall time at the latest frame: CAN interfaces may stamp frames with
        # their own clock; the session timeout runs on frame time, read_at on the agent's clock.
        self._frame_clock_offset = 0.0
        self._status_dirty = threading.Event()
        reader.on_connection_change = lambda _connected: self._status_dirty.set()

    # -- status ---------------------------------------------------------------------------

    def status(self) -> Status:
        reader = self.reader
        counters = reader.counters
        now = self._wall_clock()
        return Status(
            state="online", agent_version=__version__, since=self.since,
            reader=ReaderStatus(transport=reader.transport, port=reader.port_name,
                                connected=reader.connected),
            outbox=OutboxStatus(depth=self.outbox.depth() + len(self._uncommitted),
                                oldest_age_s=self.outbox.oldest_age_s(now)),
            counters=Counters(
                readouts=self.readouts, rejected=self.rejected, frames=counters.frames,
                bad_frames=counters.bad_frames, ignored_bytes=counters.ignored_bytes,
                stray_frames=self.assembler.counters.stray_frames))

    def status_json(self) -> str:
        return to_json(self.status())

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; then publish ``offline`` and release everything."""
        self.publisher.start(self.status_json)
        next_status = time.monotonic() + self.status_interval_s
        try:
            while not stop.is_set():
                self.step(READ_SLICE_S)
                if self._status_dirty.is_set() or time.monotonic() >= next_status:
                    self._status_dirty.clear()
                    next_status = time.monotonic() + self.status_interval_s
                    self.publisher.publish_status(self.status_json())
        finally:
            self.reader.close()
            self.publisher.stop()
            self.outbox.close()
            if self.pipeline.history is not None:
                self.pipeline.history.close()

    def step(self, timeout_s: float) -> None:
        """One turn: read what the reader has, assemble, commit what completed."""
        events = self.reader.read(timeout_s)
        if events:
            last = events[-1]
            self._frame_clock_offset = (last.timestamp if isinstance(last, CanFrame) else last.at) \
                - self._wall_clock()
        for event in events:
            if isinstance(event, CanFrame):
                self._handle(self.assembler.feed(event))
            elif isinstance(event, KeyRemoved):
                self._handle(self.assembler.key_removed(event.at))
        self._handle(self.assembler.poll(self._wall_clock() + self._frame_clock_offset))
        if self._uncommitted:
            self._retry_uncommitted()

    def _handle(self, events: list[SessionEvent]) -> None:
        for event in events:
            if isinstance(event, SessionAccepted):
                readout = self.pipeline.readout(
                    event, event_time(event.completed_at - self._frame_clock_offset))
                payload = to_json(readout).encode()
                self.readouts += 1
                log.info("readout %s: VIN %s, %d km, %d items, %s", readout.readout_id,
                         readout.vehicle.vin, readout.vehicle.mileage_km, len(readout.services),
                         readout.summary.status)
                self._commit(self.topics.readout, payload, False, READOUT_SCHEMA, readout.readout_id)
                if self.retain_vehicles:
                    self._commit(self.topics.vehicle(readout.vehicle.vin), payload, True,
                                 READOUT_SCHEMA, readout.readout_id)
                try:
                    self.pipeline.remember(event.session, readout)
                except Exception as exc:  # history is an aid to the forecast, never a reason to stop
                    log.error("vehicle history not updated for %s: %s", readout.vehicle.vin, exc)
            else:
                rejection = self.pipeline.rejection(
                    event, event_time(event.at - self._frame_clock_offset))
                self.rejected += 1
                log.warning("rejected session (%s): %s", rejection.reason, rejection.detail)
                self._commit(self.topics.rejected, to_json(rejection).encode(), False,
                             REJECTED_SCHEMA, rejection.rejection_id)
        if events:
            self.publisher.notify()

    def _commit(self, topic: str, payload: bytes, retain: bool, schema: str, message_id: str) -> None:
        if self._uncommitted:  # keep order behind what is already waiting
            self._hold((topic, payload, retain, schema, message_id))
            return
        try:
            self.outbox.put(topic, payload, retain=retain, schema=schema, message_id=message_id)
        except OutboxError as exc:
            self._outbox_failed(exc)
            self._hold((topic, payload, retain, schema, message_id))

    def _hold(self, item: tuple[str, bytes, bool, str, str]) -> None:
        if len(self._uncommitted) >= MAX_UNCOMMITTED:
            dropped = self._uncommitted.popleft()
            log.error("outbox unavailable and %d payloads held: dropped the oldest (%s)",
                      MAX_UNCOMMITTED, dropped[4])
        self._uncommitted.append(item)

    def _retry_uncommitted(self) -> None:
        while self._uncommitted:
            topic, payload, retain, schema, message_id = self._uncommitted[0]
            try:
                self.outbox.put(topic, payload, retain=retain, schema=schema, message_id=message_id)
            except OutboxError as exc:
                self._outbox_failed(exc)
                return
            self._uncommitted.popleft()
        if self.outbox_error is not None:
            log.warning("outbox writable again: %s recovered", self.outbox_error)
            self.outbox_error = None
            self._status_dirty.set()
        self.publisher.notify()

    def _outbox_failed(self, exc: OutboxError) -> None:
        if self.outbox_error != str(exc):
            log.error("outbox cannot commit: %s (holding messages in memory and retrying)", exc)
            self.outbox_error = str(exc)
            self._status_dirty.set()
