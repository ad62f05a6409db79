"""The MQTT publisher: drains the durable outbox to the broker, at least once and in order.

Three parts, each with one job:

* :class:`~agent.mqtt.delivery.DeliveryWindow` (pure) decides which rows go out, when, and
  when they may be deleted;
* :class:`~agent.mqtt.paho_link.PahoLink` owns the connection: the network thread
  (``cbs-mqtt-network``), reconnects with backoff, and the only use of paho;
* this module's :class:`MqttPublisher` feeds the window what the link and the outbox report,
  and carries out its actions: it hands rows to the link and reads and deletes outbox rows.

Threads
    The pump thread (``cbs-publisher``) is the only one that reads and deletes outbox rows. One
    lock (the link's) is held by whoever calls into paho or the window; the network thread
    releases it while it waits in select, and the pump while it reads or deletes outbox rows
    (the service holds the outbox lock through a commit's fsync: a slow disk must not stop
    PUBACKs from being read or keepalives from being sent). Two shortcuts save a thread
    hand-over on a message's way (about 0.3 ms each on the appliance class of machine):
    the service's thread sends newly staged rows itself when the pump is idle (``staged``),
    and the network thread refills the window right after reading PUBACKs (``after_read``).
    The link's callbacks only append an event to a queue and wake the pump.

Delivery
    Rows go to the broker in ``row_id`` order at QoS 1, at most ``max_inflight`` (or the
    broker's MQTT 5 *Receive Maximum*, if lower) waiting for PUBACK. paho's message id is
    mapped to the row as soon as ``publish()`` returns; a PUBACK that arrives before that
    waits in the event queue, which the same lock orders after the mapping.

    A row leaves the outbox only on a PUBACK with a success reason code (< 0x80; "no matching
    subscribers", 0x10, is success). Acknowledged rows are deleted in batches, outside the lock
    (see :mod:`agent.mqtt.delivery`).

Publishing while the outbox commits
    The publisher is the outbox's :class:`~agent.store.outbox.StagingListener`: the service
    passes it to ``put_many``, which hands over the new rows as soon as they are inserted,
    before the commit's fsync; the window sends them while the disk syncs, and deletes such a
    row only when both its PUBACK and the news of its commit are in. docs/outbox.md explains
    why this is no less durable.

    After a reconnect, paho itself resends every message it has not seen a PUBACK for, in the
    order they were first sent and with the DUP flag, before anything new; the window then
    carries on after the last row it handed over. After an agent restart the publisher starts
    again at the first row of the outbox.

The reader first
    From the first frame of a key read until the service has committed its messages
    (:meth:`MqttPublisher.reader_busy`), the publisher sends no backlog and deletes nothing:
    draining a long outage keeps two threads busy in Python (7,000-10,000 messages/s), and a
    read that shared the interpreter with them took twice as long to be stored
    (docs/performance.md, "Years at a busy site", 5b). The rows of the read itself are still
    sent while its commit runs when they are next in order; whatever was held back goes out as
    soon as the read is stored, a few milliseconds later; a hold lasts at most
    ``READER_TURN_MAX_S``. Order is not touched: nothing overtakes. After a large delete batch
    the pump fsyncs the outbox's log itself (``Outbox.sync_log``), so that the read's commit
    carries only its own rows to the disk.

Refusals (MQTT 5)
    A PUBACK with an error reason code (0x80 and above, e.g. 0x87 *not authorized* when an ACL
    denies the topic, 0x97 *quota exceeded*, 0x99 *payload format invalid*) means the broker
    has decided not to take that message; resending it would block the ordered queue behind it
    forever. The publisher logs it as an error naming the message id, topic and reason, counts
    it in :attr:`MqttPublisher.failed`, and drops the row. The same goes for a message paho
    refuses to send at all (an invalid topic). MQTT 3.1.1 has no such codes: a broker that
    denies a publish still acknowledges it (mosquitto does), so the message is lost without a
    trace at the client; use MQTT 5 to see ACL refusals.

Status and last will
    ``{prefix}/{site}/{reader}/status`` is published retained at QoS 1 outside the outbox (only
    the latest matters): on every connect (from the ``status_provider`` given to
    :meth:`start`), whenever :meth:`publish_status` is called, and as
    ``{"schema": "cbs.status/1", "state": "offline"}`` by :meth:`stop`. The same payload is the
    last will, so the broker publishes it if the agent dies.

With MQTT 5 every message carries content type ``application/json``, payload format
indicator 1 (UTF-8) and the user property ``("schema", <schema>)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.contract.topics import Topics
from agent.domain.models import OFFLINE_STATUS_JSON, STATUS_SCHEMA
from agent.errors import OutboxError, PublisherError
from agent.mqtt.delivery import DELETE_BATCH_ROWS, DeliveryWindow, Refusal
from agent.mqtt.paho_link import PahoLink, Unsendable
from agent.mqtt.settings import MqttSettings
from agent.store.deferred import DeferredOutbox
from agent.store.outbox import Outbox, OutboxEntry, OutboxMessage

log = logging.getLogger(__name__)

# A turn woken by PUBACKs alone waits this long for more of them, so that a busy link costs
# one delete transaction per few milliseconds, not one per PUBACK. New rows, a status or stop
# still wake the pump at once.
_ACK_GATHER_S = 0.002
_ACK_GATHER_MAX = 64
# The longest the backlog is held back for a key being read (MqttPublisher.reader_busy): a
# session at 9,600 baud takes about half of it.
READER_TURN_MAX_S = 1.0
# A delete batch this large (a backlog draining) is followed by an fsync of the outbox's log.
SYNC_AFTER_DELETES = 16


@dataclass(frozen=True, slots=True)
class _Up:
    receive_maximum: int | None


@dataclass(frozen=True, slots=True)
class _Down:
    reason: str


@dataclass(frozen=True, slots=True)
class _Acked:
    mid: int
    reason_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Staged:
    entries: tuple[OutboxEntry, ...]


@dataclass(frozen=True, slots=True)
class _Settled:
    first_row: int
    last_row: int
    committed: bool


_Event = _Up | _Down | _Acked | _Staged | _Settled


class MqttPublisher:
    """Publishes the outbox and the status of one agent (one site, one reader).

    ``MqttPublisher(settings, outbox, topics)`` builds and configures the link (raises
    :class:`~agent.errors.ConfigError` if the TLS files cannot be loaded); :meth:`start`
    connects in the background and starts the pump; :meth:`notify` wakes the pump after a put;
    :meth:`stop` publishes ``offline`` and disconnects. Thread-safe.
    """

    def __init__(self, settings: MqttSettings, outbox: Outbox | DeferredOutbox,
                 topics: Topics) -> None:
        self.settings = settings
        self.outbox = outbox
        self.topics = topics
        self.client_id = settings.client_id_for(topics.site, topics.reader)
        self.window = DeliveryWindow(settings.max_inflight)
        self._link = PahoLink(settings, self.client_id, self, will_topic=topics.status,
                              will_payload=OFFLINE_STATUS_JSON, will_schema=STATUS_SCHEMA)

        self._wake = threading.Condition()
        self._events: deque[_Event] = deque()  # bounded: inflight, link changes, 2 per put
        self._poked = False
        self._stopping = False
        self._connected = False
        self._status_json: str | None = None  # from publish_status, not yet sent
        self._status_due = False
        self._status_provider: Callable[[], str] | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._pump_busy = False  # the pump has taken events off the queue and not finished
        # Commits rolled back so far (counted at once, not through the queue): a read-back
        # that overlapped one may hold rows stored afterwards under the rolled-back ids.
        self._rollbacks = 0
        # Retained messages published on every connect, besides the status (Home Assistant
        # discovery); set by the service before start().
        self.on_connect_retained: list[tuple[str, str]] = []
        self._retained_due = False
        self._last_status_json: str | None = None
        self._outbox_problem: str | None = None
        self.connects = 0
        self.connect_failures = 0
        # Called with each acknowledged message's created_at (the metrics' delivery time);
        # set before start().
        self.on_delivered: Callable[[float], None] | None = None
        # Set by the service while a key is being read (see reader_busy); read
        # by the other threads without a lock: a turn that starts a moment late costs nothing.
        self._reader_turn = False
        self._reader_turn_since = 0.0
        self._held_for_reader = False
        self.pump_turns = 0  # turns of the pump thread (a wait that returns at once shows here)

    # -- figures ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected

    @property
    def published(self) -> int:
        """Outbox rows handed to paho (paho's own resends not counted)."""
        return self.window.published

    @property
    def sent_before_commit(self) -> int:
        """Of those, rows handed over while their commit still ran."""
        return self.window.sent_before_commit

    @property
    def acked(self) -> int:
        """Rows the broker acknowledged (and the outbox deletes)."""
        return self.window.acknowledged

    @property
    def failed(self) -> int:
        """Rows the broker (or paho) refused and the publisher dropped."""
        return self.window.refused

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed, until the next success."""
        return self._link.last_error

    @property
    def _limit(self) -> int:
        return self.window.limit

    @property
    def _state(self) -> threading.Lock:
        return self._link.lock

    @property
    def _client(self) -> object:
        return self._link.client

    # -- public API -----------------------------------------------------------------------

    def start(self, status_provider: Callable[[], str] | None = None) -> None:
        """Connect in the background (retrying with backoff) and start the pump.

        ``status_provider`` returns the current status JSON; it is called on every connect
        (from the pump thread). Raises :class:`PublisherError` if started twice."""
        if self._thread is not None or self._stopped:
            raise PublisherError("the publisher can be started once")
        self._status_provider = status_provider
        if self.on_delivered is not None:
            self.window.delivered = []
        s = self.settings
        log.info("MQTT: connecting to %s as %s (MQTT %s)", s.url, self.client_id, s.protocol)
        self._link.start()
        self._thread = threading.Thread(target=self._pump, name="cbs-publisher", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Wake the pump: the outbox has new rows."""
        with self._wake:
            self._poked = True
            self._wake.notify()

    def publish_status(self, payload_json: str) -> None:
        """Publish this status (retained, QoS 1) as soon as connected; a newer one replaces
        one not yet sent."""
        with self._wake:
            self._status_json = payload_json
            self._status_due = True
            self._poked = True
            self._wake.notify()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected or ``timeout_s`` passed; returns :attr:`connected`."""
        with self._wake:
            self._wake.wait_for(lambda: self._connected, timeout=timeout_s)
            return self._connected

    def stop(self, timeout_s: float | None = None, *,
             held: Sequence[OutboxMessage] = ()) -> list[OutboxMessage]:
        """Stop the pump, publish the ``offline`` status and wait for its PUBACK (at most
        ``timeout_s``, default ``settings.stop_timeout_s``), then disconnect cleanly so the
        last will is not sent. Rows still in the outbox stay there for the next start.

        ``held`` are messages the service could not store (the outbox cannot commit): they
        are published now, while the broker is there, and waited for within the same
        timeout, since nothing keeps them after this process. Returns those of them the
        broker did not acknowledge (all of them when not connected). Idempotent."""
        if self._stopped:
            return list(held)
        self._stopped = True
        timeout = self.settings.stop_timeout_s if timeout_s is None else timeout_s
        undelivered = list(held)
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            started = time.monotonic()
            self._thread.join(timeout=max(timeout, 1.0))
            if held and self._connected:
                acked = self._link.publish_all_and_wait(
                    [(m.topic, m.payload, m.retain, m.schema) for m in held], timeout)
                undelivered = [m for m, ok in zip(held, acked, strict=True) if not ok]
            left = max(0.5, timeout - (time.monotonic() - started))
            if self._connected and not self._link.publish_and_wait(
                    self.topics.status, OFFLINE_STATUS_JSON, STATUS_SCHEMA, left):
                log.warning("MQTT: offline status not acknowledged within %.1f s", left)
            self._link.disconnect(timeout)
        self._connected = False
        log.info("MQTT: stopped (%d published, %d acknowledged, %d refused, %d waiting in the "
                 "outbox)", self.published, self.acked, self.failed, self.outbox.depth())
        return undelivered

    def reader_busy(self, busy: bool) -> None:
        """The service is reading a key (True) or done with it (False): hold back the backlog
        meanwhile, for at most ``READER_TURN_MAX_S`` at a time (a reader that never stops
        sending must not stop the drain)."""
        if busy:
            if not self._reader_turn:
                self._reader_turn_since = time.monotonic()
                self._reader_turn = True
            return
        self._reader_turn = False
        if self._held_for_reader:
            self._held_for_reader = False
            self.notify()

    def _idle_wait(self, now: float) -> float:
        """How long the idle pump sleeps (``_wake`` held): until acknowledged rows are due for
        deletion, unless the reader's turn holds them back. Then until the turn ends
        (:meth:`reader_busy` wakes the pump) or reaches ``READER_TURN_MAX_S``. Due deletes used
        to make the wait zero all through the turn: the pump spun (30,000 turns a second in a
        reminder pass, whose reminders are acknowledged while keys are read) and took the
        interpreter from the read it was holding back for (docs/performance.md, 4b).

        The turn's end cannot be missed: the pump sets ``_held_for_reader`` before it reads
        ``_reader_turn`` here, :meth:`reader_busy` clears ``_reader_turn`` before it reads
        ``_held_for_reader``, so one of them sees the other's write."""
        wait = self.window.idle_wait(now)
        if self._held_for_reader and self._reader_turn:
            wait = max(wait, self._reader_turn_since + READER_TURN_MAX_S - now)
        return wait

    def _reader_first(self) -> bool:
        """True (and remembered, so the pump is woken when the turn ends) while the reader's
        turn runs."""
        if self._reader_turn and time.monotonic() - self._reader_turn_since < READER_TURN_MAX_S:
            self._held_for_reader = True
            return True
        return False

    # -- the outbox's StagingListener (called on the service thread, outbox lock held) ------

    def staged(self, entries: Sequence[OutboxEntry]) -> None:
        """Rows inserted in an outbox transaction, commit under way: send them now if they are
        next in order.

        When the pump is idle (nothing queued for it, the lock free) this thread sends them
        itself, as the pump would have with this event first in its queue. Otherwise the rows
        go to the pump's queue. Never blocks on the pump (it may be waiting for the outbox
        lock this thread holds)."""
        if self._thread is None or self._stopping or not self._thread.is_alive():
            return  # no pump to send them: they are read back from the outbox in turn
        staged = tuple(entries)
        if self._state.acquire(blocking=False):
            try:
                with self._wake:
                    idle = not self._events and not self._pump_busy
                if idle:
                    self.window.staged(staged)
                    self._send_ready(for_reader=True)
                    return
            finally:
                self._state.release()
        with self._wake:
            self._events.append(_Staged(staged))
            self._wake.notify()

    def settled(self, entries: Sequence[OutboxEntry], committed: bool) -> None:
        """The commit of those rows succeeded or was rolled back."""
        if not entries or self._thread is None or self._stopping or not self._thread.is_alive():
            return
        with self._wake:
            if not committed:
                self._rollbacks += 1
            self._events.append(_Settled(entries[0].row_id, entries[-1].row_id, committed))
            self._wake.notify()

    # -- the link's LinkListener (lock held, any thread): record and wake ---------------------

    def link_up(self, receive_maximum: int | None) -> None:
        with self._wake:
            self._connected = True
            self.connects += 1
            self._events.append(_Up(receive_maximum))
            self._wake.notify_all()

    def link_down(self, reason: str) -> None:
        with self._wake:
            self._connected = False
            self._events.append(_Down(reason))
            self._wake.notify_all()

    def puback(self, mid: int, reason_code: int, reason: str) -> None:
        with self._wake:
            # Only the first of a run of PUBACKs wakes the pump: it gathers the rest. None does
            # while rows wait in memory: the network thread sends them right after its read
            # (after_read), or the pump finds the PUBACKs when its turn ends.
            wake = not self._events and not self.window.ready
            self._events.append(_Acked(mid, reason_code, reason))
            if wake:
                self._wake.notify()

    def connect_failed(self, message: str) -> None:
        self.connect_failures += 1

    def after_read(self) -> None:
        """Right after the network thread read PUBACKs: when rows wait in memory for the room
        they free, and the pump is idle with nothing but PUBACKs queued, take them here and
        send the next rows, as the pump would have (same code, same lock). With a broker
        window of 20 messages a busy link frees room every few PUBACKs, and waking the pump
        for each refill was a thread hand-over per round trip. Deletes stay with the pump
        (they touch the outbox): it is woken when the first is waiting, or a batch is full."""
        window = self.window
        if not window.ready or not window.link_is_up:
            return
        with self._wake:
            if (self._pump_busy or not self._events
                    or not all(type(event) is _Acked for event in self._events)):
                return
            events = list(self._events)
            self._events.clear()
        waiting = bool(window.to_delete)
        self._handle(events)
        self._send_ready()
        if window.to_delete and (not waiting or len(window.to_delete) >= DELETE_BATCH_ROWS):
            with self._wake:
                self._wake.notify()

    # -- the pump thread --------------------------------------------------------------------

    def _pump(self) -> None:
        try:
            while True:
                with self._wake:
                    if not (self._events or self._poked or self._stopping):
                        self._wake.wait(timeout=self._idle_wait(time.monotonic()))
                    if (self._events and not (self._poked or self._stopping)
                            and not self.window.ready  # rows wait for the room acks free
                            and len(self._events) < _ACK_GATHER_MAX
                            and all(type(event) is _Acked for event in self._events)):
                        self._wake.wait(timeout=_ACK_GATHER_S)
                    events = list(self._events)
                    self._events.clear()
                    poked = self._poked or not events  # told of new rows, or idle: look again
                    self._poked = False
                    stopping = self._stopping
                    self._pump_busy = True  # staged() must not overtake these events
                self.pump_turns += 1
                try:
                    self._turn(events, poked, stopping)
                finally:
                    with self._wake:
                        self._pump_busy = False
                if stopping:
                    return
                if not self._reader_turn:
                    # The log is copied into the file here, not in the commit of the next key
                    # read; with the turn over, staged() sends a read's rows meanwhile.
                    self.outbox.checkpoint()
        except Exception:  # a bug here must not silently stop publishing
            log.exception("MQTT: publisher pump failed; no more messages will be sent")
            raise

    def _turn(self, events: list[_Event], poked: bool, stopping: bool) -> None:
        """One pump turn. The window and paho are used under the lock; the outbox (whose
        lock the service holds through a commit's fsync) and the status provider are called
        without it, so that a slow disk never keeps the network thread from reading PUBACKs
        and sending keepalives."""
        window = self.window
        with self._state:
            if poked:
                window.poked()
            self._handle(events)
            if not stopping and self._reader_first():
                return  # deletes and read-backs take the outbox lock the reader's commit needs
            done = window.deletes_due(time.monotonic(), stopping=stopping)
        if done:
            try:
                self.outbox.ack_many(done)
            except OutboxError as exc:
                self._outbox_failed(exc)
                with self._state:  # retried next turn
                    window.delete_failed(done, time.monotonic())
            else:
                self._outbox_recovered()
                if len(done) >= SYNC_AFTER_DELETES:
                    # A drain: put the deletes on the disk now, on this thread, so that the
                    # next key read's commit fsyncs only its own rows.
                    self.outbox.sync_log()
        if stopping or not window.link_is_up:
            return
        self._send_status()
        self._send_rows()

    def _handle(self, events: list[_Event]) -> None:
        """Feed the events to the window, lock held."""
        window = self.window
        for event in events:
            if type(event) is _Acked:
                window.acked(event.mid, event.reason_code, event.reason)
            elif isinstance(event, _Staged):
                # Sent during the reader's turn too, as staged() sends them when it finds the
                # pump idle: when it found the pump busy, the read's own rows waited for the
                # turn to end (after their commit), and a reminder pass kept the pump busy.
                window.staged(event.entries)
                self._send_ready(for_reader=True)
            elif isinstance(event, _Settled):
                window.settled(event.first_row, event.last_row, event.committed)
            elif isinstance(event, _Up):
                window.link_up(event.receive_maximum)
                with self._wake:
                    self._status_due = True
                    self._retained_due = bool(self.on_connect_retained)
                    if self._status_provider is not None:
                        self._status_json = None  # ask the provider for the current one
            elif isinstance(event, _Down):
                window.link_down()
        self._log_refusals()

    def _send_ready(self, *, for_reader: bool = False) -> None:
        """Hand the rows the window has ready to the link, lock held; nothing during the
        reader's turn unless called for the read's own rows (``for_reader``)."""
        if not for_reader and self._reader_first():
            return
        window = self.window
        taken = window.sends()
        if not taken:
            return
        link = self._link
        answered = 0
        for entry in taken:
            try:
                mid = link.publish(entry.topic, entry.payload, retain=entry.retain,
                                   schema=entry.schema)
            except Unsendable as exc:
                window.unsendable(entry, str(exc))
                answered += 1
                continue
            if mid is None:  # paho's queue is full: these come again next turn
                with self._wake:  # a direct send from staged() has no pump turn coming
                    self._poked = True
                    self._wake.notify()
                break
            window.sent(entry, mid)
            answered += 1
            log.debug("MQTT: sent row %d (%s) on %s as mid %d", entry.row_id, entry.message_id,
                      entry.topic, mid)
        window.unsent(taken[answered:])
        link.flush_later()
        self._log_refusals()

    def _send_rows(self) -> None:
        """Send what waits in memory; when the window asks for more rows, read them from the
        outbox (without the lock) and give them to it (with it); a read that overlapped a
        move of the cursor or a rolled-back commit is read again next turn."""
        window = self.window
        with self._state:
            self._send_ready()
            request = window.read_request()
        if request is None:
            return
        with self._wake:
            rollbacks = self._rollbacks
        try:
            rows = self.outbox.pending(after_row=request.after_row, limit=request.limit)
        except OutboxError as exc:
            self._outbox_failed(exc)
            return
        with self._wake:
            rolled_back = self._rollbacks != rollbacks
        with self._state:
            if not window.rows_read(request, rows, rolled_back=rolled_back):
                with self._wake:
                    self._poked = True
                return
            self._send_ready()

    def _send_status(self) -> None:
        """Publish the status if one is due (the provider is asked without the lock), after
        the connect's retained messages (Home Assistant discovery): the broker keeps one
        connection's messages in order, so whoever sees ``online`` finds the discovery
        configs already retained."""
        with self._wake:
            if not self._status_due:
                return
            self._status_due = False
            payload, self._status_json = self._status_json, None
        if payload is None and self._status_provider is not None:
            try:
                payload = self._status_provider()
            except Exception:
                log.exception("MQTT: status provider failed")
        payload = payload or self._last_status_json
        if payload is None:
            return
        link = self._link
        with self._state:
            try:
                if self._retained_due:
                    self._retained_due = False
                    for topic, retained in self.on_connect_retained:
                        self._status_sent(link.publish(topic, retained, retain=True,
                                                       schema=None))
                self._status_sent(link.publish(self.topics.status, payload, retain=True,
                                               schema=STATUS_SCHEMA))
            except Unsendable as exc:
                log.error("MQTT: cannot publish the status or discovery: %s", exc)
            self._last_status_json = payload
            link.flush_later()

    def _status_sent(self, mid: int | None) -> None:
        if mid is not None:
            self.window.status_sent(mid)

    def _log_refusals(self) -> None:
        """Log what the window refused, and report what it delivered to ``on_delivered``."""
        window = self.window
        for refusal in window.take_refusals():
            log.error("MQTT: %s", _describe(refusal, self.topics.status))
        if window.delivered:
            hook = self.on_delivered
            for created_at in window.take_delivered():
                if hook is not None:
                    hook(created_at)

    def _outbox_failed(self, exc: OutboxError) -> None:
        if self._outbox_problem != str(exc):
            log.error("MQTT: %s (retrying)", exc)
            self._outbox_problem = str(exc)

    def _outbox_recovered(self) -> None:
        if self._outbox_problem is not None:
            log.warning("MQTT: outbox usable again")
            self._outbox_problem = None


def _describe(refusal: Refusal, status_topic: str) -> str:
    entry = refusal.entry
    if entry is None:
        return f"broker refused the status on {status_topic}: {refusal.reason}"
    if refusal.code is None:
        return (f"cannot publish {entry.message_id} on {entry.topic} ({refusal.reason}); "
                "dropped from the outbox")
    return (f"broker refused {entry.message_id} on {entry.topic} ({refusal.reason}, "
            f"0x{refusal.code:02X}); dropped from the outbox")
