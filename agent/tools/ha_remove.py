"""``cbs-agent ha remove``: withdraw one reader's Home Assistant entities.

Home Assistant deletes an MQTT-discovered entity when its retained config topic is cleared
(an empty retained message). This clears every config topic the agent publishes for the
reader (:func:`~agent.contract.ha_discovery.removal_messages`) and any other retained config
still under the reader's node id (left by an older agent with other entities), and waits for
the broker to acknowledge each. An agent that still runs with ``[mqtt]
home_assistant_discovery`` on publishes them again when it next connects.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from agent.contract.ha_discovery import node_id_for, removal_messages
from agent.contract.topics import Topics
from agent.errors import BrokerUnreachableError
from agent.mqtt.paho_link import new_client
from agent.tools.mqtt_client import connect_failure

if TYPE_CHECKING:
    from agent.mqtt.settings import MqttSettings

#: How long the broker has to hand over retained configs after the SUBACK.
RETAINED_SETTLE_S = 0.5


def remove_entities(mqtt: MqttSettings, site: str, reader: str, *, ha_prefix: str,
                    out: TextIO, timeout_s: float = 10.0) -> list[str]:
    """Clear the reader's discovery topics on the broker; returns the topics cleared.
    Raises :class:`BrokerUnreachableError` with one line saying why when it cannot."""
    topics = Topics(mqtt.prefix, site, reader)
    known = [topic for topic, _ in removal_messages(topics, site, reader, ha_prefix)]
    found: set[str] = set()
    connected = threading.Event()
    subscribed = threading.Event()
    refusal: list[str] = []

    def on_connect(client: Any, _userdata: Any, _flags: Any, reason_code: Any,
                   _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            refusal.append(f"the broker refused the connection: {reason_code}")
        connected.set()

    def on_subscribe(*_args: Any) -> None:
        subscribed.set()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        if message.retain and message.payload:
            found.add(message.topic)

    client = new_client(mqtt, f"cbs-ha-remove-{os.getpid()}")  # ConfigError: TLS files
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
    except OSError as exc:
        raise BrokerUnreachableError(connect_failure(mqtt, exc)) from exc
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise BrokerUnreachableError(f"no answer (CONNACK) from the broker at {mqtt.host}:{mqtt.port} "
                                f"within {timeout_s:g} s")
        if refusal:
            raise BrokerUnreachableError(refusal[0])
        leftovers = f"{ha_prefix}/+/{node_id_for(site, reader)}/+/config"
        client.subscribe(leftovers, qos=1)
        if not subscribed.wait(timeout_s):
            raise BrokerUnreachableError(f"the broker did not confirm the subscription to {leftovers}")
        time.sleep(RETAINED_SETTLE_S)
        client.unsubscribe(leftovers)
        cleared = sorted(set(known) | found)
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in cleared]
        deadline = time.monotonic() + timeout_s
        for topic, info in zip(cleared, infos):
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise BrokerUnreachableError(f"the broker did not acknowledge clearing {topic} "
                                    f"within {timeout_s:g} s")
        for topic in cleared:
            out.write(f"cleared {topic}\n")
        out.write(f"removed {len(cleared)} Home Assistant entities of {site}/{reader}"
                  f" ({len(found)} were retained on the broker)\n")
        return cleared
    finally:
        client.disconnect()
        client.loop_stop()
