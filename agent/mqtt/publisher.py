"""The MQTT publisher: drains the durable outbox to the broker, at least once and in order.

The only module that knows paho-mqtt (2.x, callback API v2). Two threads do the work:

* the network thread (``cbs-mqtt-network``) runs paho's client the way paho's own
  ``loop_forever`` does (select, ``loop_read``/``loop_write``/``loop_misc``), connects and
  reconnects with exponential backoff (``reconnect_min_s`` doubling up to
  ``reconnect_max_s``, reset by a successful CONNACK) and calls our callbacks. The callbacks
  only append an event to a queue and wake the pump; they never touch the outbox. When rows
  wait in memory for room in flight and the pump is idle, this thread handles the PUBACKs it
  has just read and sends the next rows itself (``_refill_here``), as the pump would.
* the pump thread (:meth:`MqttPublisher.start`) is the only one that reads and deletes outbox
  rows, and the caller of ``client.publish`` while running, except that the service's
  thread sends newly staged rows itself when the pump is idle (see ``staged``), and the
  network thread refills the window (above).

One lock (``_state``) is held by whoever calls into paho or changes the delivery state; the
network thread releases it while it waits in select, and the pump releases it while it reads
or deletes outbox rows (the service holds the outbox lock through a commit's fsync: a slow
disk must not stop PUBACKs from being read or keepalives from being sent). paho may call our
callbacks from any thread that holds ``_state`` (a write that finds the connection gone calls
``on_disconnect`` there); they only record and wake. ``staged()`` runs with the outbox lock
held and only try-locks ``_state``; what it calls must never take the outbox lock.

Why not paho's ``loop_start``: with its thread, ``publish()`` only queues the packet and
wakes that thread to write it, a thread hand-over on every message's way to the broker
(about 0.3 ms on the appliance class of machine, a tenth of the latency budget); without it,
paho writes the packet to the socket in the publishing thread, which holds the lock.

Delivery
    The pump hands rows to paho in ``row_id`` order at QoS 1, at most ``max_inflight`` (or the
    broker's MQTT 5 *Receive Maximum*, if lower) waiting for PUBACK. It maps paho's message id
    (mid) to the row as soon as ``publish()`` returns; because PUBACK events are handled by the
    same thread, after that, a PUBACK that arrives before ``publish()`` returns (the race
    aiomqtt guards against) simply waits in the queue until the row is registered.

    A row leaves the outbox only on a PUBACK with a success reason code (< 0x80; "no
    matching subscribers", 0x10, is success). Acks of one pump turn are deleted in one
    transaction (no fsync of its own: see agent/store/outbox.py).

Publishing while the outbox commits
    The publisher is the outbox's :class:`~agent.store.outbox.StagingListener`: the service passes
    it to ``put_many``, which hands over the new rows as soon as they are inserted, before
    the commit's fsync. If they are next in order (right after the last row handed to paho
    and the rows already waiting in memory, nothing older waiting in the outbox), they wait
    in memory (``_ready``, up to ``_READY_MAX_BYTES``) and as many as there is room for in
    flight are sent at once, so the broker has them while the disk still syncs; the rest go
    from memory as PUBACKs free room, instead of being read back after the commit. Such a
    row is deleted only when both its PUBACK and the news of its commit are in; if the commit
    fails, the pump forgets the rows (those waiting, and the PUBACKs of those sent; their ids
    may be used again) and moves its cursor back, so that whatever is stored next under those
    ids is sent in turn. docs/outbox.md explains why this is no less durable. Rows read back
    from the outbox (after a restart, or when memory was full) go through the same queue,
    ``_READ_BACK_ROWS`` per query.

    After a reconnect, paho itself resends every message it has not seen a PUBACK for, in the
    order they were first sent and with the DUP flag, before anything new; the pump then
    carries on after the last row it handed over. Every unacknowledged row is therefore resent
    from the first one, and nothing is sent twice within one connection. After an agent restart
    the pump starts again at the first row of the outbox.

Refusals (MQTT 5)
    A PUBACK with an error reason code (0x80 and above, e.g. 0x87 *not authorized* when an ACL
    denies the topic, 0x97 *quota exceeded*, 0x99 *payload format invalid*) means the broker
    has decided not to take that message; resending it would block the ordered queue behind it
    forever. The publisher logs it as an error naming the message id, topic and reason, counts
    it in :attr:`MqttPublisher.failed`, and drops the row. The same goes for a message paho
    refuses to send at all (an invalid topic). MQTT 3.1.1 has no such codes: a broker that
    denies a publish still acknowledges it (mosquitto does), so the message is lost without a
    trace at the client; use MQTT 5 to see ACL refusals. mosquitto 2.0 also drops the
    connection right after a denied publish; the publisher reconnects like after any outage.

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
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.contract.topics import Topics
from agent.domain.models import OFFLINE_STATUS_JSON, STATUS_SCHEMA
from agent.errors import ConfigError, OutboxError, PublisherError
from agent.mqtt.settings import MqttSettings
from agent.store.outbox import Outbox, OutboxEntry

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
QOS = 1
_IDLE_WAKE_S = 1.0  # the pump retries failed outbox reads/acks this often when nothing happens
# A turn woken by PUBACKs alone waits this long for more of them, so that a busy link costs
# one delete transaction per few milliseconds, not one per PUBACK. New rows, a status or stop
# still wake the pump at once.
_ACK_GATHER_S = 0.002
_ACK_GATHER_MAX = 64
# Acknowledged rows are deleted in one transaction once this many are waiting or the oldest
# has waited this long (or at stop): on a busy link, one delete transaction per pump turn was
# a tenth of the agent's CPU. A kill in between costs duplicates (same ids), never a readout.
_DELETE_BATCH_ROWS = 64
_DELETE_DELAY_S = 0.02
_NETWORK_WAIT_S = 1.0  # the network thread's select: paho's keepalive needs a turn this often
# Staged rows that found no room in flight wait in memory, up to this many payload bytes (a
# few busy batches), and are sent from there as PUBACKs free room; beyond it they are read
# back from the outbox in turn.
_READY_MAX_BYTES = 1 << 20
_READ_BACK_ROWS = 64  # rows read back from the outbox per query (into memory, as above)


class _PahoNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR after every disconnect, even a
    clean one; we log connection changes ourselves, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_PAHO_LOG = logging.getLogger(f"{__name__}.paho")
_PAHO_LOG.addFilter(_PahoNoise())


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
    code: ReasonCode  # its name is only needed for a refusal: str() it then, not per PUBACK

    @property
    def reason(self) -> str:
        return str(self.code)


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

    ``MqttPublisher(settings, outbox, topics)`` builds and configures the paho client (raises
    :class:`ConfigError` if the TLS files cannot be loaded); :meth:`start` connects in the
    background and starts the pump; :meth:`notify` wakes the pump after a put; :meth:`stop`
    publishes ``offline`` and disconnects. Thread-safe.
    """

    def __init__(self, settings: MqttSettings, outbox: Outbox, topics: Topics) -> None:
        self.settings = settings
        self.outbox = outbox
        self.topics = topics
        self.client_id = settings.client_id_for(topics.site, topics.reader)
        self._mqtt5 = settings.protocol == "5"
        self._properties_by_schema: dict[str, Properties | None] = {}
        self._client = self._make_client()

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

        # Held by whoever sends or changes what follows (the pump for its whole turn, the
        # service's thread for a direct send from staged()): the delivery state and paho's
        # publish() are used by one thread at a time.
        self._state = threading.Lock()
        self._network: threading.Thread | None = None
        self._network_stop = False
        self._wake_network_r: socket.socket | None = None  # made by start(), closed by stop()
        self._wake_network_w: socket.socket | None = None
        self._reconnect_delay: float | None = None
        self._link_up = False
        self._limit = settings.max_inflight
        self._inflight: dict[int, OutboxEntry] = {}
        self._status_mids: set[int] = set()
        # Retained messages published on every connect, besides the status (Home Assistant
        # discovery); set by the service before start().
        self.on_connect_retained: list[tuple[str, str]] = []
        self._retained_due = False
        self._cursor = 0
        self._cursor_generation = 0  # changes with every move of the cursor (see _send_rows)
        self._pump_busy = False  # the pump has taken events off the queue and not finished
        self._done_since: float | None = None  # when the oldest row in _unacked_done came
        self._unacked_done: list[int] = []
        # mids in flight when the link went down: paho resends them after the reconnect, and
        # no new row may overtake them (paho calls on_connect before its resend loop).
        self._carried_over: set[int] = set()
        # False once a read of the outbox came back short and nobody has said "new rows"
        # since: turns woken only by PUBACKs then skip the query (and the outbox lock).
        self._rows_unread = True
        # Rows not yet handed to paho for want of room in flight, in order: the next ones
        # after the cursor (staged, or read back from the outbox). mosquitto's default Receive
        # Maximum is 20 messages, less than one busy batch; reading the rest back from the
        # outbox as room frees was a tenth of the agent's CPU at saturation.
        self._ready: deque[OutboxEntry] = deque()
        self._ready_bytes = 0
        self._ready_unsettled: set[int] = set()  # of those, rows whose commit is not known yet
        # Commits rolled back so far (see settled): a read-back that overlapped one may hold
        # rows stored afterwards under the rolled-back ids, ahead of their turn.
        self._rollbacks = 0
        # Rows sent before their commit was known, and those of them already acknowledged.
        self._uncommitted: dict[int, OutboxEntry] = {}
        # Rows sent before their commit was known and already answered: (row id, None when
        # acknowledged, else why it was refused). Counted, logged and deleted once the commit
        # is known; forgotten if it rolls back (such a row was never read).
        self._acked_uncommitted: list[tuple[int, str | None]] = []
        self._last_status_json: str | None = None
        self._outbox_problem: str | None = None

        self.published = 0  # outbox rows handed to paho (resends by paho not counted)
        self.sent_before_commit = 0  # of those, handed over while their commit still ran
        self.acked = 0  # rows the broker acknowledged and the outbox deleted
        self.failed = 0  # rows the broker (or paho) refused and the publisher dropped
        self.connects = 0
        self.connect_failures = 0
        self.last_error: str | None = None

    # -- the client -----------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        if self._mqtt5:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=mqtt.MQTTv5)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=mqtt.MQTTv311, clean_session=True)
        client.enable_logger(_PAHO_LOG)
        if s.tls:
            try:
                client.tls_set(ca_certs=_str(s.ca_file), certfile=_str(s.certfile),
                               keyfile=_str(s.keyfile), cert_reqs=ssl.CERT_REQUIRED,
                               tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(f"mqtt TLS files cannot be used (ca_file={s.ca_file}, "
                                  f"certfile={s.certfile}, keyfile={s.keyfile}): {exc}") from exc
            client.tls_insecure_set(s.tls_insecure)
        if s.username is not None:
            client.username_pw_set(s.username, s.password_value())
        client.will_set(self.topics.status, OFFLINE_STATUS_JSON, qos=QOS, retain=True,
                        properties=self._message_properties(STATUS_SCHEMA, PacketTypes.WILLMESSAGE))
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        # paho's own limit stays above ours (+1 for a status message): the pump is the limiter.
        client.max_inflight_messages_set(s.max_inflight + 1)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _message_properties(self, schema: str,
                            packet_type: int = PacketTypes.PUBLISH) -> Properties | None:
        if not self._mqtt5:
            return None
        properties = _PackedOnce(packet_type)
        properties.ContentType = CONTENT_TYPE
        properties.PayloadFormatIndicator = 1
        properties.UserProperty = [("schema", schema)]
        return properties

    def _publish_properties(self, schema: str) -> Properties | None:
        # One immutable Properties per schema: paho keeps it with the message for resends.
        if schema not in self._properties_by_schema:
            self._properties_by_schema[schema] = self._message_properties(schema)
        return self._properties_by_schema[schema]

    # -- public API -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected

    def start(self, status_provider: Callable[[], str] | None = None) -> None:
        """Connect in the background (retrying with backoff) and start the pump.

        ``status_provider`` returns the current status JSON; it is called on every connect
        (from the pump thread). Raises :class:`PublisherError` if started twice."""
        if self._thread is not None or self._stopped:
            raise PublisherError("the publisher can be started once")
        self._status_provider = status_provider
        s = self.settings
        log.info("MQTT: connecting to %s as %s (MQTT %s)", s.url, self.client_id, s.protocol)
        if self._mqtt5:
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s, clean_start=True)
        else:
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self._wake_network_r, self._wake_network_w = socket.socketpair()
        self._wake_network_r.setblocking(False)
        self._wake_network_w.setblocking(False)
        self._network = threading.Thread(target=self._run_network, name="cbs-mqtt-network",
                                         daemon=True)
        self._network.start()
        self._thread = threading.Thread(target=self._pump, name="cbs-publisher", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Wake the pump: the outbox has new rows."""
        with self._wake:
            self._poked = True
            self._wake.notify()

    # -- the outbox's StagingListener (called on the service thread, lock held) -------------

    def staged(self, entries: Sequence[OutboxEntry]) -> None:
        """Rows inserted in an outbox transaction, commit under way: send them now if they are
        next in order (see the module docstring).

        When the pump is idle (nothing queued for it, its state free) this thread sends them
        itself, as the pump would have with this event first in its queue: waking the pump
        to do it cost a thread hand-over on the way to the broker (about 0.3 ms). Otherwise
        the rows go to the pump's queue. Never blocks on the pump (it may be waiting for the
        outbox lock this thread holds)."""
        if self._thread is None or self._stopping or not self._thread.is_alive():
            return  # no pump to send them: they are read back from the outbox in turn
        staged = tuple(entries)
        if self._state.acquire(blocking=False):
            try:
                with self._wake:
                    idle = not self._events and not self._pump_busy
                if idle:
                    self._send_staged(staged)
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

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the pump, publish the ``offline`` status and wait for its PUBACK (at most
        ``timeout_s``, default ``settings.stop_timeout_s``), then disconnect cleanly so the
        last will is not sent. Rows still in the outbox stay there for the next start.
        Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        timeout = self.settings.stop_timeout_s if timeout_s is None else timeout_s
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=max(timeout, 1.0))
            if self._connected:
                self._publish_offline(timeout)
            with self._state:
                self._network_stop = True  # before the disconnect: no reconnect after it
                self._client.disconnect()
                self._flush_at_stop(timeout)
            self._poke_network()
            if self._network is not None:
                self._network.join(timeout=max(timeout, 1.0))
        for end in (self._wake_network_r, self._wake_network_w):
            if end is not None:
                end.close()
        self._connected = False
        log.info("MQTT: stopped (%d published, %d acknowledged, %d refused, %d waiting in the "
                 "outbox)", self.published, self.acked, self.failed, self.outbox.depth())

    def _publish_offline(self, timeout_s: float) -> None:
        try:
            with self._state:
                info = self._client.publish(self.topics.status, OFFLINE_STATUS_JSON, qos=QOS,
                                            retain=True,
                                            properties=self._publish_properties(STATUS_SCHEMA))
                self._flush_later()
            info.wait_for_publish(timeout_s)  # the network thread reads the PUBACK
        except (RuntimeError, ValueError) as exc:
            log.warning("MQTT: offline status not delivered: %s", exc)
            return
        if not info.is_published():
            log.warning("MQTT: offline status not acknowledged within %.1f s", timeout_s)

    # -- paho callbacks (network thread): record and wake, nothing else ---------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self.connect_failures += 1
            self._note_error(f"broker refused the connection: {reason_code}")
            return
        receive_maximum = getattr(properties, "ReceiveMaximum", None) if properties else None
        self._reconnect_delay = None  # a successful CONNACK resets the backoff, as in paho
        with self._wake:
            self._connected = True
            self.connects += 1
            self._events.append(_Up(receive_maximum))
            self._wake.notify_all()
        self.last_error = None
        log.info("MQTT: connected to %s", self.settings.url)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self.connect_failures += 1
        self._note_error(f"cannot connect to {self.settings.url}")

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        with self._wake:
            was_connected = self._connected
            self._connected = False
            self._events.append(_Down(str(reason_code)))
            self._wake.notify_all()
        self._poke_network()  # a write in another thread may have found the link down
        if was_connected and not self._stopping:
            log.warning("MQTT: connection lost (%s); reconnecting", reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        with self._wake:
            # Only the first of a run of PUBACKs wakes the pump: it gathers the rest (below).
            # None does while rows wait in memory: this thread sends them right after its
            # read (_refill_here), or the pump finds the PUBACKs when its turn ends.
            wake = not self._events and not self._ready
            self._events.append(_Acked(mid, reason_code.value, reason_code))
            if wake:
                self._wake.notify()

    def _note_error(self, message: str) -> None:
        # Once per outage at WARNING; the retries (with backoff) at DEBUG.
        if message != self.last_error:
            log.warning("MQTT: %s; retrying with backoff", message)
        else:
            log.debug("MQTT: %s; retrying", message)
        self.last_error = message

    # -- the pump thread --------------------------------------------------------------------

    def _pump(self) -> None:
        try:
            while True:
                with self._wake:
                    if not (self._events or self._poked or self._stopping):
                        self._wake.wait(timeout=self._idle_wait())
                    if (self._events and not (self._poked or self._stopping)
                            and not self._ready  # rows wait for the room these acks free
                            and len(self._events) < _ACK_GATHER_MAX
                            and all(type(event) is _Acked for event in self._events)):
                        self._wake.wait(timeout=_ACK_GATHER_S)
                    events = list(self._events)
                    self._events.clear()
                    poked = self._poked or not events  # told of new rows, or idle: look again
                    self._poked = False
                    stopping = self._stopping
                    self._pump_busy = True  # staged() must not overtake these events
                try:
                    self._turn(events, poked, stopping)
                finally:
                    with self._wake:
                        self._pump_busy = False
                if stopping:
                    return
        except Exception:  # a bug here must not silently stop publishing
            log.exception("MQTT: publisher pump failed; no more messages will be sent")
            raise

    def _turn(self, events: list[_Event], poked: bool, stopping: bool) -> None:
        """One pump turn. The delivery state and paho are used under ``_state``; the outbox
        (whose lock the service holds through a commit's fsync) and the status provider are
        called without it, so that a slow disk never keeps the network thread from reading
        PUBACKs and sending keepalives."""
        with self._state:
            if poked:
                self._rows_unread = True
            self._handle(events)
            done = self._deletes_due(stopping)
        if done:
            try:
                self.outbox.ack_many(done)
            except OutboxError as exc:
                self._outbox_failed(exc)
                with self._state:  # retried next turn
                    self._unacked_done[:0] = done
                    if self._done_since is None:
                        self._done_since = time.monotonic()
            else:
                self._outbox_recovered()
        if stopping or not self._link_up:
            return
        self._send_status()
        self._send_rows()

    def _deletes_due(self, stopping: bool) -> list[int]:
        """The acknowledged rows to delete now (see ``_DELETE_BATCH_ROWS``); ``_state`` held."""
        if not self._unacked_done:
            self._done_since = None
            return []
        now = time.monotonic()
        if self._done_since is None:
            self._done_since = now
        if (stopping or len(self._unacked_done) >= _DELETE_BATCH_ROWS
                or now - self._done_since >= _DELETE_DELAY_S):
            done, self._unacked_done = self._unacked_done, []
            self._done_since = None
            return done
        return []

    def _idle_wait(self) -> float:
        """How long an idle pump sleeps: until acknowledged rows are due for deletion."""
        since = self._done_since
        if since is None:
            return _IDLE_WAKE_S
        return max(0.0, min(_IDLE_WAKE_S, since + _DELETE_DELAY_S - time.monotonic()))

    def _handle(self, events: list[_Event]) -> None:
        done = self._unacked_done
        for event in events:
            if isinstance(event, _Acked):
                self._acked(event, done)
            elif isinstance(event, _Staged):
                self._send_staged(event.entries)
            elif isinstance(event, _Settled):
                self._settle(event, done)
            elif isinstance(event, _Up):
                self._link_up = True
                self._rows_unread = True
                self._limit = min(self.settings.max_inflight,
                                  event.receive_maximum or self.settings.max_inflight)
                with self._wake:
                    self._status_due = True
                    self._retained_due = bool(self.on_connect_retained)
                    if self._status_provider is not None:
                        self._status_json = None  # ask the provider for the current one
            else:
                self._link_up = False
                self._carried_over = set(self._inflight)

    def _acked(self, event: _Acked, done: list[int]) -> None:
        if event.mid in self._status_mids:
            self._status_mids.discard(event.mid)
            if event.reason_code >= 0x80:
                log.error("MQTT: broker refused the status on %s: %s", self.topics.status,
                          event.reason)
            return
        self._carried_over.discard(event.mid)
        entry = self._inflight.pop(event.mid, None)
        if entry is None:
            log.debug("MQTT: PUBACK for unknown mid %d", event.mid)
            return
        refusal = None if event.reason_code < 0x80 else (
            f"broker refused {entry.message_id} on {entry.topic} ({event.reason}, "
            f"0x{event.reason_code:02X}); dropped from the outbox")
        if entry.row_id in self._uncommitted:
            self._acked_uncommitted.append((entry.row_id, refusal))
        else:
            done.append(entry.row_id)
            self._count_answer(refusal)

    def _count_answer(self, refusal: str | None) -> None:
        if refusal is None:
            self.acked += 1
        else:
            self.failed += 1
            log.error("MQTT: %s", refusal)

    def _send_status(self) -> None:
        """Publish the status if one is due (the provider is asked without ``_state``)."""
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
        with self._state:
            self._publish_status(payload or self._last_status_json)

    def _publish_status(self, payload: str | None) -> None:
        """The status, after the connect's retained messages (Home Assistant discovery): the
        broker keeps one connection's messages in order, so whoever sees ``online`` finds the
        discovery configs already retained."""
        if payload is None:
            return
        if self._retained_due:
            self._retained_due = False
            for topic, retained in self.on_connect_retained:
                info = self._client.publish(topic, retained, qos=QOS, retain=True)
                self._status_mids.add(info.mid)
        info = self._client.publish(self.topics.status, payload, qos=QOS, retain=True,
                                    properties=self._publish_properties(STATUS_SCHEMA))
        self._status_mids.add(info.mid)
        self._last_status_json = payload
        self._flush_later()

    def _send_staged(self, entries: tuple[OutboxEntry, ...]) -> None:
        """Rows whose commit is still running: if they come next (right after the cursor and
        the rows already waiting in memory), keep them in memory and send what fits in
        flight now. Otherwise older rows wait in the outbox, and these are read back after
        them."""
        if not self._link_up:
            return  # read back after the reconnect: an outage may evict or expire rows
        if not entries or entries[0].row_id != self._last_known_row() + 1:
            return
        self._keep_ready(entries, settled=False)  # the rest is read back in turn (see _settle)
        self._send_ready()

    def _keep_ready(self, entries: Sequence[OutboxEntry], *, settled: bool) -> bool:
        """Queue rows in memory, in order, while the memory bound allows; False when some
        did not fit (they are read back from the outbox later)."""
        for entry in entries:
            if self._ready_bytes >= _READY_MAX_BYTES:
                return False
            self._ready.append(entry)
            self._ready_bytes += len(entry.payload)
            if not settled:
                self._ready_unsettled.add(entry.row_id)
        return True

    def _last_known_row(self) -> int:
        """The last row sent or waiting in memory: a staged batch that starts right after
        it leaves nothing unsent in between (row ids only grow)."""
        return self._ready[-1].row_id if self._ready else self._cursor

    def _send_ready(self) -> None:
        """Hand the rows waiting in memory to paho, as many as fit in flight; ``_state``
        held. Rows whose commit is not yet known are sent early (see the module docstring)."""
        ready = self._ready
        if not ready or not self._link_up or self._carried_over:
            return  # the link is down, or paho still resends what was in flight: keep order
        room = self._limit - len(self._inflight) - len(self._status_mids)
        if room <= 0:
            return
        taken = [ready[i] for i in range(min(room, len(ready)))]
        unsettled = self._ready_unsettled
        early = [entry for entry in taken if entry.row_id in unsettled]
        for entry in early:
            self._uncommitted[entry.row_id] = entry
        sent = self._publish_rows(taken)
        for _ in range(sent):
            entry = ready.popleft()
            self._ready_bytes -= len(entry.payload)
            if entry.row_id in unsettled:
                unsettled.discard(entry.row_id)
                self.sent_before_commit += 1
        for entry in taken[sent:]:  # paho did not take them: they stay in memory
            self._uncommitted.pop(entry.row_id, None)

    def _forget_ready_from(self, row_id: int) -> None:
        """Drop the rows waiting in memory from ``row_id`` on (their commit rolled back)."""
        ready = self._ready
        while ready and ready[-1].row_id >= row_id:
            entry = ready.pop()
            self._ready_bytes -= len(entry.payload)
            self._ready_unsettled.discard(entry.row_id)
            self._rows_unread = True  # committed rows may come back under those ids

    def _settle(self, event: _Settled, done: list[int]) -> None:
        rows = range(event.first_row, event.last_row + 1)
        if event.committed:
            self._ready_unsettled.difference_update(rows)
            if event.last_row > self._last_known_row():
                self._rows_unread = True  # committed rows neither sent nor in memory: read back
        else:
            self._forget_ready_from(event.first_row)
        if not any(row in self._uncommitted for row in rows):
            return  # none of them was sent early
        for row in rows:
            self._uncommitted.pop(row, None)
        answered = [(row, refusal) for row, refusal in self._acked_uncommitted if row in rows]
        self._acked_uncommitted = [(row, refusal) for row, refusal in self._acked_uncommitted
                                   if row not in rows]
        if event.committed:
            for row, refusal in answered:
                done.append(row)
                self._count_answer(refusal)
            return
        # Rolled back: those rows do not exist, and their ids may come back with other
        # messages. Forget them and send whatever is stored after the last committed row.
        for mid, entry in list(self._inflight.items()):
            if entry.row_id in rows:
                del self._inflight[mid]
                self._carried_over.discard(mid)
        self._move_cursor(min(self._cursor, event.first_row - 1))
        self._rows_unread = True
        log.debug("MQTT: rows %d..%d were sent before a commit that failed", event.first_row,
                  event.last_row)

    def _send_rows(self) -> None:
        """Send the rows waiting in memory; when there are none and the outbox holds rows
        not yet read, read the next ``_READ_BACK_ROWS`` after the cursor (without
        ``_state``) into memory and send what fits (with it), unless the cursor moved
        meanwhile (rows sent by staged()) or a commit was rolled back meanwhile (rows stored
        since may reuse its ids, while its rows still count as sent): then they are read
        again next turn. Reading a batch ahead, not just the room in flight, keeps it to one
        query per batch when PUBACKs free room a few messages at a time."""
        with self._state:
            self._send_ready()
            if self._ready or self._carried_over:  # no room yet, or paho still resends
                return
            room = self._limit - len(self._inflight) - len(self._status_mids)
            if room <= 0 or not self._rows_unread:
                return
            cursor, generation = self._cursor, self._cursor_generation
        with self._wake:
            rollbacks = self._rollbacks
        try:
            rows = self.outbox.pending(after_row=cursor, limit=_READ_BACK_ROWS)
        except OutboxError as exc:
            self._outbox_failed(exc)
            return
        with self._wake:
            rolled_back = self._rollbacks != rollbacks
        with self._state:
            if (self._cursor_generation != generation or self._carried_over
                    or not self._link_up or self._ready or rolled_back):
                self._rows_unread = True
                self._poked_again()
                return
            all_kept = self._keep_ready(rows, settled=True)
            self._rows_unread = len(rows) >= _READ_BACK_ROWS or not all_kept
            self._send_ready()

    def _poked_again(self) -> None:
        with self._wake:
            self._poked = True

    def _publish_rows(self, rows: Sequence[OutboxEntry]) -> int:
        """Hand rows to paho in order; returns how many it took (the rest waits)."""
        taken = 0
        for entry in rows:
            try:
                info = self._client.publish(entry.topic, entry.payload, qos=QOS,
                                            retain=entry.retain,
                                            properties=self._publish_properties(entry.schema))
            except ValueError as exc:  # the topic or payload can never be sent
                refusal = (f"cannot publish {entry.message_id} on {entry.topic} ({exc}); "
                           "dropped from the outbox")
                if entry.row_id in self._uncommitted:
                    self._acked_uncommitted.append((entry.row_id, refusal))
                else:
                    self._unacked_done.append(entry.row_id)
                    self._count_answer(refusal)
                self._move_cursor(entry.row_id)
                taken += 1
                continue
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                # Not taken by paho (its queue is full): try this row again next turn.
                log.warning("MQTT: paho did not take %s: %s", entry.message_id,
                            mqtt.error_string(info.rc))
                self._flush_later()
                with self._wake:  # a direct send from staged() has no pump turn coming
                    self._poked = True
                    self._wake.notify()
                return taken
            # Any other code (SUCCESS, NO_CONN, CONN_LOST when the write itself failed): paho
            # holds the message and sends it once (re)connected.
            self._inflight[info.mid] = entry
            self._move_cursor(entry.row_id)
            self.published += 1
            taken += 1
            log.debug("MQTT: sent row %d (%s) on %s as mid %d", entry.row_id, entry.message_id,
                      entry.topic, info.mid)
        self._flush_later()
        return taken

    # -- the network thread -------------------------------------------------------------------

    def _poke_network(self) -> None:
        """Wake the network thread out of its select."""
        wake = self._wake_network_w
        if wake is None:
            return
        try:
            wake.send(b"\0")
        except OSError:
            pass  # already woken (the pair's buffer is full) or closed at stop

    def _flush_at_stop(self, timeout_s: float) -> None:
        """With ``_state`` held, after ``disconnect()``: write what paho could not write at
        once (a full socket buffer), as paho's own loop does before it ends, so that the
        broker sees DISCONNECT (and no last will)."""
        client = self._client
        deadline = time.monotonic() + max(timeout_s, 0.1)
        while client.want_write() and time.monotonic() < deadline:
            sock = client.socket()
            if sock is None:
                return
            try:
                select.select([], [sock], [], 0.05)
            except (OSError, ValueError, TypeError):
                return
            if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    def _flush_later(self) -> None:
        """Called with ``_state`` held after publishing: paho wrote what the socket took at
        once; if some is left (a full socket buffer), the network thread must wait for the
        socket to become writable, so wake it to look."""
        if self._client.want_write():
            self._poke_network()

    def _run_network(self) -> None:
        """paho's ``loop_forever``, with ``_state`` held around every call into paho and
        released while waiting (see the module docstring)."""
        client = self._client
        first = True
        while not self._network_stop:
            try:
                if client.socket() is None:
                    if not first and not self._backoff():
                        return
                    first = False
                    self._connect(client)
                    continue
                self._network_turn(client)
            except Exception:  # never let the thread die: paho's state is reset by reconnecting
                log.exception("MQTT: network loop error; reconnecting")
                self._drop_connection(client)

    def _connect(self, client: mqtt.Client) -> None:
        try:
            with self._state:
                if self._network_stop:
                    return
                client.reconnect()
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS, DNS
            log.debug("MQTT: connect failed: %s", exc)
            self._on_connect_fail(client, None)

    def _drop_connection(self, client: mqtt.Client) -> None:
        """After an error paho did not handle itself: tell the pump the link is down (so that
        paho's resends go first after the reconnect), wait the backoff, connect again
        (``reconnect`` closes the old socket)."""
        if client.socket() is not None:
            self._on_disconnect(client, None, None,
                                ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), None)
        if self._backoff():
            self._connect(client)

    def _backoff(self) -> bool:
        """Wait before the next connection attempt (``reconnect_min_s`` doubling up to
        ``reconnect_max_s``); False when told to stop meanwhile."""
        s = self.settings
        delay = self._reconnect_delay
        delay = s.reconnect_min_s if delay is None else min(delay * 2, s.reconnect_max_s)
        self._reconnect_delay = delay
        deadline = time.monotonic() + delay
        while not self._network_stop:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._wait_for_wake([], [], min(remaining, _NETWORK_WAIT_S))
        return False

    def _wait_for_wake(self, rlist: list[object], wlist: list[object],
                       timeout_s: float) -> tuple[list[object], list[object]]:
        wake = self._wake_network_r
        assert wake is not None
        try:
            readable, writable, _ = select.select([*rlist, wake], wlist, [], timeout_s)
        except (OSError, ValueError, TypeError) as exc:
            if self._network_stop:  # the socket was closed under us by stop()
                return [], []
            raise PublisherError(f"waiting for the broker's socket failed: {exc}") from exc
        if wake in readable:
            try:
                while wake.recv(4096):
                    pass
            except OSError:
                pass
        return readable, writable

    def _network_turn(self, client: mqtt.Client) -> None:
        """One turn of paho's ``_loop``: wait for the socket (or a wake-up), then read, write
        and keep alive. A lost connection is seen by paho, which calls ``on_disconnect``; the
        next turn then reconnects."""
        with self._state:
            sock = client.socket()
            if sock is None:
                return
            wlist = [sock] if client.want_write() else []
            pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS: bytes decrypted
        readable, writable = self._wait_for_wake([sock], wlist,
                                                 0.0 if pending else _NETWORK_WAIT_S)
        with self._state:
            if client.socket() is not sock:
                return  # disconnected meanwhile (stop)
            if sock in readable or pending:
                if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                    return
                self._refill_here()
            if sock in writable or client.want_write():
                if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                    return
            client.loop_misc()

    def _refill_here(self) -> None:
        """With ``_state`` held, right after reading PUBACKs: when rows wait in memory for the
        room those PUBACKs free, and the pump is idle with nothing but PUBACKs queued, take
        them here and send the next rows, as the pump would have (same code, same lock).
        With a broker window of 20 messages a busy link frees room every few PUBACKs, and
        waking the pump for each refill was a thread hand-over per round trip. Deletes stay
        with the pump (they touch the outbox): it is woken when the first is waiting, to
        time the batch, or when a batch is full."""
        if not self._ready or not self._link_up:
            return
        with self._wake:
            if (self._pump_busy or not self._events
                    or not all(type(event) is _Acked for event in self._events)):
                return
            events = list(self._events)
            self._events.clear()
        waiting = bool(self._unacked_done)
        self._handle(events)
        self._send_ready()
        if self._unacked_done and (not waiting
                                   or len(self._unacked_done) >= _DELETE_BATCH_ROWS):
            with self._wake:
                self._wake.notify()

    def _move_cursor(self, row_id: int) -> None:
        self._cursor = row_id
        self._cursor_generation += 1

    def _outbox_failed(self, exc: OutboxError) -> None:
        if self._outbox_problem != str(exc):
            log.error("MQTT: %s (retrying)", exc)
            self._outbox_problem = str(exc)

    def _outbox_recovered(self) -> None:
        if self._outbox_problem is not None:
            log.warning("MQTT: outbox usable again")
            self._outbox_problem = None


class _PackedOnce(Properties):
    """MQTT 5 properties that are the same on every message of a schema: encoded once.
    paho encodes a message's properties on every publish (and resend); ours never change
    after they are made, and encoding them was a tenth of paho's cost per message."""

    _packed: bytes | None = None

    def pack(self) -> bytes:
        if self._packed is None:  # paho's __setattr__ admits property names only
            object.__setattr__(self, "_packed", super().pack())  # type: ignore[no-untyped-call]
        return self._packed  # type: ignore[return-value]


def _str(path: object) -> str | None:
    return None if path is None else str(path)
