"""The service loop of ``cbs-agent run``: reader -> assembler -> pipeline -> outbox -> publisher.

One thread reads and assembles (the only writer of the outbox); the publisher's thread drains
the outbox to the broker. A readout counts as read once the outbox has committed it.

Group commit. Everything one turn completes is committed in one outbox transaction (one
fsync). A turn reads once; when that completed a session and the reader already holds more,
it reads on (never waiting) for at most ``BATCH_WINDOW_S`` or ``MAX_BATCH_SESSIONS``, so a
backlog is committed in batches while a lone session is committed at once. Two readouts of
one vehicle never share a batch: the second one's forecast must see the first in the
vehicle history, which is written after the commit (on the loop's next quiet turn, or at
once when a readout of a vehicle waiting to be written completes: see ``_remember``).

The publisher hears of the rows as soon as they are inserted and may send them while the
commit's fsync runs (agent/store/outbox.py, docs/outbox.md).

Forecast before END. A turn that leaves a session open with all its data frames in forecasts
it there and then (``_prepare_open_session``, agent/pipeline.py ``prepare``); its END, a
frame's time later, finds the forecast made. A backlog read at once has no such gap and is
forecast at END.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Protocol

from agent import __version__
from agent.contract.topics import Topics
from agent.domain.models import (
    READOUT_SCHEMA,
    REJECTED_SCHEMA,
    Counters,
    OutboxStatus,
    ReaderStatus,
    Readout,
    Status,
    event_time,
    to_json,
)
from agent.errors import OutboxError
from agent.mqtt.publisher import MqttPublisher
from agent.pipeline import ReadoutPipeline
from agent.readers.base import KeyReader, KeyRemoved
from agent.sd_notify import Watchdog, notify
from agent.store.deferred import DeferredOutbox, DeferredReminders
from agent.store.outbox import Outbox, OutboxMessage
from agent.store.reminders import ReminderService
from protocols.can_frame import CanFrame
from protocols.key_session import KeySession
from protocols.session import SessionAccepted, SessionAssembler, SessionEvent

log = logging.getLogger(__name__)

READ_SLICE_S = 0.05
MAX_UNCOMMITTED = 1000
BATCH_WINDOW_S = 0.02  # a busy reader's turn reads on for at most this long...
# ...or until this many sessions completed. Kept small: a session whose frames straddle two
# reads must see the next read within the session timeout, and a batch's readouts are all
# built before the loop reads again.
MAX_BATCH_SESSIONS = 32
# While the daily reminder pass runs, a turn waits at most this long for the reader before the
# pass's next slice (about a millisecond): 100,000 vehicles in about 10 s on an idle reader.
PASS_READ_S = 0.01
# After a turn that committed readouts, no slice of the pass for this long: a slice holds
# the interpreter for about a millisecond (up to ~5 at its p99) and the readouts are on their
# way to the subscriber meanwhile (END -> subscriber: ~1 ms, p99 ~2 ms on two cores).
PASS_AFTER_READOUT_S = 0.005
# Committed readouts wait this long for a quiet reader before they are written to the vehicle
# history and the reminder store (see _remember): the readout is on its way to the
# broker meanwhile.
REMEMBER_AFTER_S = 0.002

# A session event with the frame-clock offset of the read that produced it.
_Outcome = tuple[SessionEvent, float]


class Companion(Protocol):
    """Something that runs beside the loop (the command link, the metrics endpoint):
    started once the publisher is, stopped before it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class AgentService:
    """Owns the loop; every collaborator is injected so tests can assemble real parts freely."""

    def __init__(self, *, reader: KeyReader, assembler: SessionAssembler, pipeline: ReadoutPipeline,
                 outbox: Outbox | DeferredOutbox, publisher: MqttPublisher, topics: Topics,
                 retain_vehicles: bool = True, status_interval_s: float = 30.0,
                 reminders: ReminderService | DeferredReminders | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.assembler = assembler
        self.pipeline = pipeline
        self.outbox = outbox
        self.publisher = publisher
        self.topics = topics
        self.retain_vehicles = retain_vehicles
        self.reminders = reminders
        self.status_interval_s = status_interval_s
        self._wall_clock = wall_clock
        self.since = datetime.fromtimestamp(wall_clock(), timezone.utc)
        self.readouts = 0
        self.rejected = 0
        self.outbox_error: str | None = None
        # Payloads the outbox could not take (disk full, read-only): kept, bounded, retried.
        self._uncommitted: deque[OutboxMessage] = deque()
        self._reading = False  # a key is being read: the publisher holds back a backlog
        # Readouts committed but not yet in the vehicle history and the reminder store: each
        # with its session and its JSON (see _remember).
        self._to_remember: list[tuple[KeySession, Readout, str]] = []
        self._pass_after = 0.0  # monotonic time before which no slice of the pass runs
        self.dropped = 0
        # Frame time minus wall time at the latest frame: CAN interfaces may stamp frames with
        # their own clock; the session timeout runs on frame time, read_at on the agent's clock.
        self._frame_clock_offset = 0.0
        self._status_dirty = threading.Event()
        # Work handed over by other threads (integrator commands) to run on the loop's thread,
        # the outbox's one writer.
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.rejections_by_reason: collections.Counter[str] = collections.Counter()
        self.companions: list[Companion] = []
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
                                oldest_age_s=self.outbox.oldest_age_s(now),
                                evicted=self.outbox.evicted + self.dropped, full=self.outbox.full,
                                error=self.outbox_error, quarantined=self._quarantined()),
            counters=Counters(
                readouts=self.readouts, rejected=self.rejected, frames=counters.frames,
                bad_frames=counters.bad_frames, ignored_bytes=counters.ignored_bytes,
                stray_frames=self.assembler.counters.stray_frames,
                other_frames=self.assembler.counters.other_traffic + getattr(reader, "other_frames", 0),
                reconnects=counters.reconnects))

    def _quarantined(self) -> str | None:
        """What the stores said about a damaged file they replaced, if any."""
        stores = [self.outbox, self.pipeline.history, self.reminders]
        said = [q for store in stores if store is not None
                and (q := getattr(store, "quarantined", None))]
        return "; ".join(said) or None

    def status_json(self) -> str:
        return to_json(self.status())

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; then publish ``offline`` and release everything."""
        self.publisher.start(self.status_json)
        started: list[Companion] = []
        for companion in self.companions:
            companion.start()
            started.append(companion)
        next_status = time.monotonic() + self.status_interval_s
        watchdog = Watchdog.from_environment()
        ready = False
        try:
            while not stop.is_set():
                self.step(READ_SLICE_S)
                if not ready and self.publisher.connected:
                    notify("READY=1\nSTATUS=reading keys, connected to the broker")
                    ready = True
                watchdog.ping()
                if self._status_dirty.is_set() or time.monotonic() >= next_status:
                    self._status_dirty.clear()
                    next_status = time.monotonic() + self.status_interval_s
                    self.publisher.publish_status(self.status_json())
        finally:
            notify("STOPPING=1")
            for companion in reversed(started):
                try:
                    companion.stop()
                except Exception:
                    log.exception("stopping %s failed", type(companion).__name__)
            self.reader.close()
            self._remember()
            self._stop_publisher()
            self.outbox.close()
            if self.pipeline.history is not None:
                self.pipeline.history.close()
            if self.reminders is not None:
                self.reminders.close()

    def _stop_publisher(self) -> None:
        """Stop the publisher; messages held in memory (the outbox could not commit them)
        are handed to it to publish while the broker is there. Whatever it could not deliver
        is named, since nothing keeps it after this process."""
        if not self._jobs.empty():
            self._run_jobs()  # a vehicle test's report handed over while the loop ended
        held = list(self._uncommitted)
        if held:
            self._retry_uncommitted()  # the disk may take them now
            held = list(self._uncommitted)
        undelivered = self.publisher.stop(held=held)
        if not held:
            return
        if not undelivered:
            log.warning("stopping: %d messages the outbox could not store were delivered to "
                        "the broker directly", len(held))
            return
        ids = ", ".join(f"{m.message_id} ({m.topic.rsplit('/', 1)[-1]})" for m in undelivered)
        log.error("stopping: %d of %d messages the outbox could not store were NOT delivered "
                  "and are lost: %s", len(undelivered), len(held), ids)

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the loop's thread at the start of its next turn (thread-safe)."""
        self._jobs.put(job)

    def _run_jobs(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                job()
            except Exception:  # one command's bug must not stop the loop
                log.exception("a submitted job failed")

    def store(self, messages: list[OutboxMessage], timeout_s: float = 10.0) -> bool:
        """Commit ``messages`` to the outbox from another thread (a vehicle test's report):
        the loop's thread, the outbox's one writer, does it at its next turn. True when they
        are stored; False when they are held in memory (the outbox cannot commit: they go
        with the next commit, or are delivered directly at stop) or the loop did not answer
        within ``timeout_s``."""
        done = threading.Event()
        stored: list[bool] = []

        def job() -> None:
            stored.append(self._commit(list(messages)))
            done.set()

        self.submit(job)
        return done.wait(timeout_s) and stored == [True]

    def republish(self, vin: str) -> dict[str, object]:
        """Put the vehicle's latest readout on its retained topic again (the loop's thread).
        Raises LookupError when the vehicle is not known, RuntimeError when the agent keeps
        no readouts (reminders disabled)."""
        if self.reminders is None:
            raise RuntimeError("this agent keeps no readouts to republish "
                               "([reminders] enabled = false)")
        readout = self.reminders.latest(vin)
        if readout is None:
            raise LookupError(f"no readout of {vin} is kept")
        proposal = self.pipeline.proposal.propose(
            readout.services, express_eligible=readout.summary.express_eligible)
        full = readout.model_copy(update={"proposal": proposal})
        topic = self.topics.vehicle(vin)
        stored = self._commit([OutboxMessage(topic, to_json(full).encode(), True,
                                             READOUT_SCHEMA, full.readout_id)])
        log.info("republished %s on %s (readout %s)", vin, topic, full.readout_id)
        return {"vin": vin, "readout_id": full.readout_id, "topic": topic, "stored": stored}

    def step(self, timeout_s: float) -> None:
        """One turn: read what the reader has (more while it holds more, see the module
        docstring), assemble, commit what completed."""
        if not self._jobs.empty():
            self._remember()  # a job may read the stores (republish)
            self._run_jobs()
        if self.reminders is not None and self.reminders.in_pass:
            # The next slice of the pass soon; as soon as the wait after a readout is over.
            hold = self._pass_after - time.monotonic()
            timeout_s = min(timeout_s, PASS_READ_S if hold <= 0 else max(hold, 0.0005))
        if self._to_remember and not self.assembler.in_session:
            timeout_s = min(timeout_s, REMEMBER_AFTER_S)
        outcomes: list[_Outcome] = []
        events = self.reader.read(timeout_s)
        quiet = not events
        if events and not self._reading:
            # A key is being read: the publisher holds back a backlog until it is stored.
            self._reading = True
            self.publisher.reader_busy(True)
        first_done_at: float | None = None
        while events:
            last = events[-1]
            self._frame_clock_offset = (last.timestamp if isinstance(last, CanFrame) else last.at) \
                - self._wall_clock()
            offset = self._frame_clock_offset
            assembler = self.assembler
            if self.reader.read_was_waiting:  # not a silent line: a late loop (see heard)
                first = events[0]
                assembler.heard(first.timestamp if isinstance(first, CanFrame) else first.at)
            for event in events:
                if isinstance(event, CanFrame):
                    done = assembler.feed(event)
                elif isinstance(event, KeyRemoved):
                    done = assembler.key_removed(event.at)
                else:
                    continue
                if done:
                    outcomes.extend((outcome, offset) for outcome in done)
            if not outcomes:
                break  # nothing completed: one read per turn
            now = time.monotonic()
            if first_done_at is None:
                first_done_at = now
            if len(outcomes) >= MAX_BATCH_SESSIONS or now - first_done_at >= BATCH_WINDOW_S:
                break
            events = self.reader.read(0)  # what is already waiting, if anything
        outcomes.extend((outcome, self._frame_clock_offset) for outcome in
                        self.assembler.poll(self._wall_clock() + self._frame_clock_offset))
        self._handle(outcomes)
        if events and self.assembler.in_session:
            self._prepare_open_session()
        if self._reading and not self.assembler.in_session:
            self._reading = False
            self.publisher.reader_busy(False)
        if self._uncommitted:
            self._retry_uncommitted()
        if self._to_remember and (len(self._to_remember) >= MAX_BATCH_SESSIONS
                                  or quiet and not self.assembler.in_session):
            self._remember()
        if (self.reminders is not None and not outcomes and not self.assembler.in_session
                and time.monotonic() >= self._pass_after):
            # One slice of the daily pass per turn (agent/store/reminders.py, about a ms),
            # only on a turn with no key read under way and none completed in the last
            # PASS_AFTER_READOUT_S: a slice while a session's frames arrive would hold its END
            # frame, and one right after a readout would hold the GIL while the publisher,
            # the broker and the subscriber move it (a PUBACK says the broker has it, not
            # that its subscribers do: ending the wait there measured worse).
            self.reminders.poll(datetime.fromtimestamp(self._wall_clock(), timezone.utc),
                                self._put_reminder, self._put_reminders)

    def _prepare_open_session(self) -> None:
        """Forecast the open session as soon as its data frames are all in, before its END
        frame (agent/pipeline.py, ``prepare``): END then finds the forecast made, and the
        readout's history lookup and trends, the part that grows with the history a vehicle
        has, are off the path from END to the subscriber. Once per session; a vehicle whose
        earlier readout waits to be written to the history is written first (the forecast
        sees it)."""
        session = self.assembler.preview()
        if session is None or session is self.pipeline.prepared_session:
            return
        self._remember_before((session.vin,))
        try:
            self.pipeline.prepare(session, datetime.fromtimestamp(self._wall_clock(), timezone.utc))
        except Exception as exc:  # END forecasts it again, and reports what fails then
            log.debug("forecast before END of %s not made: %s", session.vin, exc)

    def _put_reminder(self, topic: str, payload: bytes, retain: bool, schema: str,
                      message_id: str) -> None:
        self._commit([OutboxMessage(topic, payload, retain, schema, message_id)])

    def _put_reminders(self, messages: Sequence[tuple[str, bytes, bool, str, str]]) -> None:
        self._commit([OutboxMessage(*message) for message in messages])

    def _handle(self, outcomes: list[_Outcome]) -> None:
        """Build the payloads of ``outcomes`` and commit them to the outbox in one transaction
        (one fsync for everything a read turn completed: group commit), except that a second
        readout of a vehicle starts a new transaction (see the module docstring)."""
        start = 0
        vins: set[str] = set()
        for n, (event, _) in enumerate(outcomes):
            if isinstance(event, SessionAccepted):
                if event.session.vin in vins:
                    self._handle_batch(outcomes[start:n])
                    start, vins = n, set()
                vins.add(event.session.vin)
        self._handle_batch(outcomes[start:])

    def _handle_batch(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        # A readout's forecast sees its vehicle's earlier readout.
        self._remember_before(event.session.vin for event, _ in outcomes
                              if isinstance(event, SessionAccepted))
        batch: list[OutboxMessage] = []
        accepted: list[tuple[KeySession, Readout, str]] = []  # with the readout's JSON
        notes: list[tuple[int, str, tuple[object, ...]]] = []
        for event, offset in outcomes:
            if isinstance(event, SessionAccepted):
                readout = self.pipeline.readout(event, event_time(event.completed_at - offset))
                wire = to_json(readout)
                payload = wire.encode()
                self.readouts += 1
                notes.append((logging.INFO, "readout %s: VIN %s, %d km, %d items, %s",
                              (readout.readout_id, readout.vehicle.vin,
                               readout.vehicle.mileage_km, len(readout.services),
                               readout.summary.status)))
                batch.append(OutboxMessage(self.topics.readout, payload, False, READOUT_SCHEMA,
                                           readout.readout_id))
                if self.retain_vehicles:
                    batch.append(OutboxMessage(self.topics.vehicle(readout.vehicle.vin), payload,
                                               True, READOUT_SCHEMA, readout.readout_id))
                accepted.append((event.session, readout, wire))
            else:
                rejection = self.pipeline.rejection(event, event_time(event.at - offset))
                self.rejected += 1
                self.rejections_by_reason[rejection.reason] += 1
                notes.append((logging.WARNING, "rejected session (%s): %s",
                              (rejection.reason, rejection.detail)))
                batch.append(OutboxMessage(self.topics.rejected, to_json(rejection).encode(),
                                           False, REJECTED_SCHEMA, rejection.rejection_id))
        stored = self._commit(batch)
        # Logged only after the commit: a readout the log shows as read survives a kill or a
        # power cut; one the outbox could not store says so on its own line.
        for level, message, args in notes:
            if stored:
                log.log(level, message, *args)
            else:
                log.log(max(level, logging.WARNING), message + " (NOT STORED yet: held in "
                        "memory until the outbox takes it)", *args)
        self._to_remember.extend(accepted)
        if accepted:
            self._pass_after = time.monotonic() + PASS_AFTER_READOUT_S

    def _remember_before(self, vins: Iterable[str]) -> None:
        """:meth:`_remember` now if a readout of one of ``vins`` is waiting: about to be
        forecast, they must find it in the history. ``vins`` is read only when readouts
        are waiting (most turns have none)."""
        if self._to_remember and not {session.vin for session, _, _ in
                                      self._to_remember}.isdisjoint(vins):
            self._remember()

    def _remember(self) -> None:
        """Write the committed readouts waiting in ``_to_remember`` to the vehicle history and
        the reminder store, one transaction each.

        Why later, not right after the commit: the publisher sends a readout while its commit
        runs, and on the appliance's two cores the history's and the reminder store's writes
        (0.5–1 ms of B-tree work and compression on a large dealer's files) would compete with
        the publisher, the broker and its subscriber for the CPU while the readout is on its
        way. The loop writes them at its next turn that reads nothing, about
        ``REMEMBER_AFTER_S`` later, with no session open; before it forecasts a vehicle that
        is waiting here (the forecast sees every earlier readout), before a job, and at stop.
        A crash in between costs history entries, never a readout (the outbox has it)."""
        accepted, self._to_remember = self._to_remember, []
        if not accepted:
            return
        try:  # one history transaction (no two readouts of a VIN between two writes)
            self.pipeline.remember_many([(session, readout) for session, readout, _ in accepted])
        except Exception as exc:  # history is an aid to the forecast, never a reason to stop
            log.error("vehicle history not updated for %s: %s",
                      ", ".join(readout.vehicle.vin for _, readout, _ in accepted), exc)
        if self.reminders is not None:
            readouts = [readout for _, readout, _ in accepted]
            try:  # one transaction
                self.reminders.observe_many(readouts, [wire for _, _, wire in accepted])
            except Exception as exc:  # reminders are an aid too
                log.error("reminders store not updated for %s: %s",
                          ", ".join(r.vehicle.vin for r in readouts), exc)

    def _commit(self, batch: list[OutboxMessage]) -> bool:
        """Store ``batch`` in one transaction; False when it is held in memory instead."""
        if self._uncommitted:  # keep order behind what is already waiting
            self._hold(batch)
            return False
        # Sent while the commit runs, unless the outbox is failing: a batch that will likely
        # roll back would reach the broker once per retry.
        listener = self.publisher if self.outbox_error is None else None
        try:
            self.outbox.put_many(batch, listener=listener)
        except OutboxError as exc:
            self._outbox_failed(exc)
            self._hold(batch)
            return False
        if listener is None:  # the publisher heard nothing from the outbox: wake it to read
            self.publisher.notify()
        return True

    def _hold(self, batch: list[OutboxMessage]) -> None:
        self._uncommitted.extend(batch)
        while len(self._uncommitted) > MAX_UNCOMMITTED:
            dropped = self._uncommitted.popleft()
            self.dropped += 1
            log.error("outbox unavailable and %d payloads held in memory: dropped the oldest "
                      "(%s on %s)", MAX_UNCOMMITTED, dropped.message_id, dropped.topic)

    def _retry_uncommitted(self) -> None:
        held = list(self._uncommitted)
        try:
            self.outbox.put_many(held)  # read back once committed: no copy per failed retry
        except OutboxError as exc:
            self._outbox_failed(exc)
            return
        self._uncommitted.clear()
        log.warning("outbox writable again (%s); %d held messages committed",
                    self.outbox_error, len(held))
        self.outbox_error = None
        self._status_dirty.set()
        self.publisher.notify()

    def _outbox_failed(self, exc: OutboxError) -> None:
        if self.outbox_error != str(exc):
            log.error("outbox cannot commit: %s (holding messages in memory and retrying)", exc)
            self.outbox_error = str(exc)
            self._status_dirty.set()
