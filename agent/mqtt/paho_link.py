"""The link to the broker: the one module that imports paho-mqtt (2.x, callback API v2).

:func:`new_client` builds a configured paho client from :class:`MqttSettings` (TLS, credentials,
protocol) for every MQTT client of the product: the publisher, ``watch``, ``check-config``.

:class:`PahoLink` runs the publisher's connection. Its network thread (``cbs-mqtt-network``)
runs paho's client the way paho's own ``loop_forever`` does (select, ``loop_read`` /
``loop_write`` / ``loop_misc``), connects and reconnects with exponential backoff
(``reconnect_min_s`` doubling up to ``reconnect_max_s``, reset by a successful CONNACK) and
tells a :class:`LinkListener` what happened, as plain values.

One lock (:attr:`PahoLink.lock`) is held by whoever calls into paho; the network thread
releases it while it waits in select. paho calls the listener from whichever thread holds it
(a write that finds the connection gone calls ``link_down`` there), so the listener only
records and wakes.

Why not paho's ``loop_start``: with its thread, ``publish()`` only queues the packet and wakes
that thread to write it, a thread hand-over on every message's way to the broker (about 0.3 ms
on the appliance class of machine, a tenth of the latency budget); without it, paho writes the
packet to the socket in the publishing thread, which holds the lock.

Connection errors are explained once per change at WARNING, with the likely fix (an
untrusted certificate, plain MQTT to a TLS port, a refused login); the retries are at DEBUG.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import ConfigError, PublisherError
from agent.mqtt.connect_errors import closed_hint, explain_connect_error, explain_refusal
from agent.mqtt.settings import MqttSettings

log = logging.getLogger("agent.mqtt.publisher")  # operators filter on the publisher's name

CONTENT_TYPE = "application/json"
QOS = 1
_NETWORK_WAIT_S = 1.0  # the network thread's select: paho's keepalive needs a turn this often


class _PahoNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR after every disconnect, even a
    clean one; we log connection changes ourselves, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_PAHO_LOG = logging.getLogger("agent.mqtt.publisher.paho")
_PAHO_LOG.addFilter(_PahoNoise())


class Unsendable(ValueError):
    """paho refuses this message outright (an invalid topic or payload): it never can be sent."""


def new_client(settings: MqttSettings, client_id: str) -> Any:
    """A paho client with the configured protocol, TLS and credentials (not yet connected).
    Raises :class:`ConfigError` when the TLS files cannot be used."""
    if settings.protocol == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
    client.enable_logger(_PAHO_LOG)
    if settings.tls:
        try:
            client.tls_set(ca_certs=_str(settings.ca_file), certfile=_str(settings.certfile),
                           keyfile=_str(settings.keyfile), cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(
                f"mqtt TLS files cannot be used (ca_file={settings.ca_file}, "
                f"certfile={settings.certfile}, keyfile={settings.keyfile}): {exc}") from exc
        client.tls_insecure_set(settings.tls_insecure)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password_value())
    return client


def is_success(rc: int) -> bool:
    """paho's result code says success."""
    return rc == MQTTErrorCode.MQTT_ERR_SUCCESS


def error_string(rc: int) -> str:
    """paho's words for a result code."""
    return str(mqtt.error_string(rc))


def response_properties(correlation: bytes | None, schema: str) -> Properties:
    """MQTT 5 properties of a command's answer: the request's correlation data, our content
    type and schema."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = CONTENT_TYPE
    properties.PayloadFormatIndicator = 1
    properties.UserProperty = [("schema", schema)]
    if correlation is not None:
        properties.CorrelationData = correlation
    return properties


def request_properties(message: Any) -> tuple[str | None, bytes | None]:
    """A received message's MQTT 5 ``ResponseTopic`` and ``CorrelationData`` (None, None
    under MQTT 3.1.1 or when the sender set none)."""
    properties = getattr(message, "properties", None)
    if properties is None:
        return None, None
    topic = getattr(properties, "ResponseTopic", None)
    correlation = getattr(properties, "CorrelationData", None)
    return (topic or None), (bytes(correlation) if correlation is not None else None)


class LinkListener(Protocol):
    """What the link tells the publisher; called with :attr:`PahoLink.lock` held, from
    whichever thread holds it. Each must return at once and only record and wake."""

    def link_up(self, receive_maximum: int | None) -> None: ...

    def link_down(self, reason: str) -> None: ...

    def puback(self, mid: int, reason_code: int, reason: str) -> None: ...

    def connect_failed(self, message: str) -> None: ...

    def after_read(self) -> None:
        """The network thread has just read from the socket (PUBACKs, say)."""


class PahoLink:
    """The publisher's connection to the broker (see the module docstring)."""

    def __init__(self, settings: MqttSettings, client_id: str, listener: LinkListener, *,
                 will_topic: str, will_payload: str, will_schema: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self._listener = listener
        self._mqtt5 = settings.protocol == "5"
        self._properties_by_schema: dict[str, Properties | None] = {}
        self.lock = threading.Lock()
        self.client = client = new_client(settings, client_id)
        client.will_set(will_topic, will_payload, qos=QOS, retain=True,
                        properties=self._message_properties(will_schema, PacketTypes.WILLMESSAGE))
        client.reconnect_delay_set(settings.reconnect_min_s,  # type: ignore[arg-type]
                                   settings.reconnect_max_s)
        # paho's own limit stays above ours (+1 for a status message): the window limits.
        client.max_inflight_messages_set(settings.max_inflight + 1)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._network: threading.Thread | None = None
        self._stop = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._reconnect_delay: float | None = None
        self._accepted = False  # a CONNACK came on the current socket
        self.last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and keep connected until :meth:`stop`."""
        s = self.settings
        if self._mqtt5:
            self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s, clean_start=True)
        else:
            self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._network = threading.Thread(target=self._run, name="cbs-mqtt-network", daemon=True)
        self._network.start()

    def disconnect(self, timeout_s: float) -> None:
        """Disconnect cleanly (the broker then does not send the last will) and stop the
        network thread."""
        with self.lock:
            self._stop = True  # before the disconnect: no reconnect after it
            self.client.disconnect()
            self._flush_at_stop(timeout_s)
        self.poke()
        if self._network is not None:
            self._network.join(timeout=max(timeout_s, 1.0))
        for end in (self._wake_r, self._wake_w):
            if end is not None:
                end.close()

    # -- publishing (lock held) ---------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, *, retain: bool,
                schema: str | None) -> int | None:
        """Hand one message to paho at QoS 1; the caller holds :attr:`lock`. Returns its
        message id (paho sends it, and resends it after a reconnect, until its PUBACK), or
        None when paho's queue is full (try again later). Raises :class:`Unsendable`."""
        properties = None if schema is None else self._publish_properties(schema)
        try:
            info = self.client.publish(topic, payload, qos=QOS, retain=retain,
                                       properties=properties)
        except ValueError as exc:
            raise Unsendable(str(exc)) from exc
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            log.warning("MQTT: paho did not take a message on %s: %s", topic,
                        mqtt.error_string(info.rc))
            return None
        # Any other code (SUCCESS, NO_CONN, CONN_LOST when the write itself failed): paho
        # holds the message and sends it once (re)connected.
        return int(info.mid)

    def publish_and_wait(self, topic: str, payload: str, schema: str, timeout_s: float) -> bool:
        """Publish retained and wait for the PUBACK (read by the network thread); True when
        it came within ``timeout_s``."""
        try:
            with self.lock:
                info = self.client.publish(topic, payload, qos=QOS, retain=True,
                                           properties=self._publish_properties(schema))
                self.flush_later()
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            log.warning("MQTT: %s not delivered: %s", topic, exc)
            return False
        return bool(info.is_published())

    def publish_all_and_wait(self, messages: list[tuple[str, bytes, bool, str]],
                             timeout_s: float) -> list[bool]:
        """Publish ``(topic, payload, retain, schema)`` messages at QoS 1 and wait, together at
        most ``timeout_s``, for their PUBACKs; one flag per message: acknowledged in time.
        For messages that never reached the outbox, at stop (see MqttPublisher.stop)."""
        infos: list[Any] = []
        with self.lock:
            for topic, payload, retain, schema in messages:
                try:
                    infos.append(self.client.publish(topic, payload, qos=QOS, retain=retain,
                                                     properties=self._publish_properties(schema)))
                except ValueError as exc:
                    log.error("MQTT: cannot publish on %s: %s", topic, exc)
                    infos.append(None)
            self.flush_later()
        deadline = time.monotonic() + timeout_s
        for info in infos:
            if info is None:
                continue
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        return [info is not None and bool(info.is_published()) for info in infos]

    def flush_later(self) -> None:
        """After publishing, lock held: paho wrote what the socket took at once; if some is
        left (a full socket buffer), wake the network thread to wait until it is writable."""
        if self.client.want_write():
            self.poke()

    def poke(self) -> None:
        """Wake the network thread out of its select."""
        wake = self._wake_w
        if wake is None:
            return
        try:
            wake.send(b"\0")
        except OSError:
            pass  # already woken (the pair's buffer is full) or closed at stop

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

    # -- paho callbacks: record and tell ------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._note_error(explain_refusal(str(reason_code), self.settings))
            self._listener.connect_failed(str(reason_code))
            return
        self._accepted = True
        receive_maximum = getattr(properties, "ReceiveMaximum", None) if properties else None
        self._reconnect_delay = None  # a successful CONNACK resets the backoff, as in paho
        self._listener.link_up(receive_maximum)
        self.last_error = None
        log.info("MQTT: connected to %s", self.settings.url)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._failed(f"cannot connect to {self.settings.url}")

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        accepted, self._accepted = self._accepted, False
        self._listener.link_down(str(reason_code))
        self.poke()  # a write in another thread may have found the link down
        if self._stop:
            return
        if accepted:
            log.warning("MQTT: connection lost (%s); reconnecting", reason_code)
        elif self.last_error is None or "refused the connection" not in self.last_error:
            self._failed(f"{self.settings.host}:{self.settings.port} closed the connection "
                         f"({reason_code}): {closed_hint(self.settings)}")

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        self._listener.puback(mid, reason_code.value, str(reason_code)
                              if reason_code.value >= 0x80 else "")

    def _failed(self, message: str) -> None:
        self._note_error(message)
        self._listener.connect_failed(message)

    def _note_error(self, message: str) -> None:
        # Once per change at WARNING; the retries (with backoff) at DEBUG.
        if message != self.last_error:
            log.warning("MQTT: %s; retrying with backoff", message)
        else:
            log.debug("MQTT: %s; retrying", message)
        self.last_error = message

    # -- the network thread -------------------------------------------------------------------

    def _run(self) -> None:
        """paho's ``loop_forever``, with :attr:`lock` held around every call into paho and
        released while waiting."""
        client = self.client
        first = True
        while not self._stop:
            try:
                if client.socket() is None:
                    if not first and not self._backoff():
                        return
                    first = False
                    self._connect(client)
                    continue
                self._turn(client)
            except Exception:  # never let the thread die: paho's state is reset by reconnecting
                log.exception("MQTT: network loop error; reconnecting")
                self._drop_connection(client)

    def _connect(self, client: mqtt.Client) -> None:
        try:
            with self.lock:
                if self._stop:
                    return
                self._accepted = False
                client.reconnect()
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS, DNS
            log.debug("MQTT: connect failed: %r", exc)
            self._failed(explain_connect_error(exc, self.settings))

    def _drop_connection(self, client: mqtt.Client) -> None:
        """After an error paho did not handle itself: tell the listener the link is down (so
        that paho's resends go first after the reconnect), wait the backoff, connect again
        (``reconnect`` closes the old socket)."""
        if client.socket() is not None:
            with self.lock:
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
        while not self._stop:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._wait([], [], min(remaining, _NETWORK_WAIT_S))
        return False

    def _wait(self, rlist: list[object], wlist: list[object],
              timeout_s: float) -> tuple[list[object], list[object]]:
        wake = self._wake_r
        assert wake is not None
        try:
            readable, writable, _ = select.select([*rlist, wake], wlist, [], timeout_s)
        except (OSError, ValueError, TypeError) as exc:
            if self._stop:  # the socket was closed under us by disconnect()
                return [], []
            raise PublisherError(f"waiting for the broker's socket failed: {exc}") from exc
        if wake in readable:
            try:
                while wake.recv(4096):
                    pass
            except OSError:
                pass
        return readable, writable

    def _turn(self, client: mqtt.Client) -> None:
        """One turn of paho's ``_loop``: wait for the socket (or a wake-up), then read, write
        and keep alive. A lost connection is seen by paho, which calls ``on_disconnect``; the
        next turn then reconnects."""
        with self.lock:
            sock = client.socket()
            if sock is None:
                return
            wlist = [sock] if client.want_write() else []
            pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS: bytes decrypted
        readable, writable = self._wait([sock], wlist, 0.0 if pending else _NETWORK_WAIT_S)
        with self.lock:
            if client.socket() is not sock:
                return  # disconnected meanwhile (stop)
            if sock in readable or pending:
                if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                    return
                self._listener.after_read()
            if sock in writable or client.want_write():
                if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                    return
            client.loop_misc()

    def _flush_at_stop(self, timeout_s: float) -> None:
        """With :attr:`lock` held, after ``disconnect()``: write what paho could not write at
        once (a full socket buffer), as paho's own loop does before it ends, so that the
        broker sees DISCONNECT (and no last will)."""
        client = self.client
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
