"""The command link: a second MQTT connection of the agent that takes integrators' requests on
``{prefix}/{site}/{reader}/command/+`` and sends the answers to their response topics.

Why a connection of its own and not the publisher's: the publisher's link is tuned for one job
(the ordered, acknowledged stream of readouts, with its window and its resends), and a flood of
requests must never sit in front of a readout. Commands are rare and may wait; paho's own
``loop_start`` thread runs this one. What a request means is decided elsewhere
(:mod:`agent.contract.commands` parses, the application carries out): this module only moves
bytes and properties. Answers are not kept in the outbox: a request whose answer is lost is
asked again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.contract.commands import RESPONSE_SCHEMA
from agent.contract.topics import Topics
from agent.mqtt.paho_link import new_client, request_properties, response_properties
from agent.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """Where the answer to one request goes; ``topic`` is None when the requester gave no
    response topic (MQTT 3.1.1, or a fire-and-forget request)."""

    topic: str | None
    correlation: bytes | None
    _send: Callable[[str, bytes, bytes | None], None]

    def send(self, payload: bytes) -> bool:
        """Publish the answer (QoS 1, not retained); False when there is nowhere to send it."""
        if self.topic is None:
            return False
        self._send(self.topic, payload, self.correlation)
        return True


Handler = Callable[[str, bytes, Reply], None]


class CommandLink:
    """Subscribes to the reader's command topics and hands each request to ``handler``
    (on paho's thread: the handler must return quickly and answer later if it has to wait)."""

    def __init__(self, settings: MqttSettings, topics: Topics, handler: Handler, *,
                 client_id: str) -> None:
        self.settings = settings
        self.topics = topics
        self._handler = handler
        self._client: Any = new_client(settings, client_id)
        self._client.reconnect_delay_set(max(1, round(settings.reconnect_min_s)),
                                         max(1, round(min(settings.reconnect_max_s, 30.0))))
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.received = 0

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def start(self) -> None:
        s = self.settings
        if s.protocol != "5":
            log.warning("commands: MQTT %s has no response topics; requests are carried out "
                        "but cannot be answered (use MQTT 5)", s.protocol)
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def _on_connect(self, client: Any, _userdata: object, _flags: object, reason_code: Any,
                    _properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("commands: broker refused the connection: %s", reason_code)
            return
        client.subscribe(self.topics.commands, qos=1)
        self._subscribed.set()
        log.info("commands: listening on %s", self.topics.commands)

    def _on_message(self, _client: Any, _userdata: object, message: Any) -> None:
        self.received += 1
        name = self.topics.command_name(message.topic)
        if name is None:
            return
        response_topic, correlation = request_properties(message)
        reply = Reply(response_topic, correlation, self._publish)
        try:
            self._handler(name, bytes(message.payload), reply)
        except Exception:  # a bug in one command must not stop the others
            log.exception("commands: %s failed", name)

    def _publish(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        properties = (response_properties(correlation, RESPONSE_SCHEMA)
                      if self.settings.protocol == "5" else None)
        try:
            self._client.publish(topic, payload, qos=1, retain=False, properties=properties)
        except ValueError as exc:  # a response topic paho refuses (wildcards)
            log.warning("commands: cannot answer on %r: %s", topic, exc)
