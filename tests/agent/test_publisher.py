"""The publisher against a real mosquitto: order, properties, status, last will, outages.

No timed assertions: every wait is for an event (a message, a counter, a state) and bounded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broker import MosquittoBroker, Received, Subscriber, wait_until

from agent.contract.topics import Topics
from agent.domain.models import OFFLINE_STATUS_JSON
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.store.outbox import Outbox

TOPICS = Topics("cbs/v1", "S1", "desk1")
VIN = "WBA8E5107FK123456"
ONLINE = '{"schema": "cbs.status/1", "state": "online"}'


def settings_for(broker: MosquittoBroker, **options: Any) -> MqttSettings:
    return MqttSettings(url=broker.url, reconnect_min_s=0.05, reconnect_max_s=0.5, **options)


def put_readout(outbox: Outbox, n: int, *, vehicle: bool = False) -> None:
    payload = f'{{"schema": "cbs.readout/1", "readout_id": "r{n}", "n": {n}}}'.encode()
    outbox.put(TOPICS.readout, payload, retain=False, schema="cbs.readout/1", message_id=f"r{n}")
    if vehicle:
        outbox.put(TOPICS.vehicle(VIN), payload, retain=True, schema="cbs.readout/1",
                   message_id=f"r{n}")


def numbers(messages: list[Received]) -> list[int]:
    return [int(m.json()["n"]) for m in messages]


def first_occurrences(values: list[int]) -> list[int]:
    seen: set[int] = set()
    return [v for v in values if not (v in seen or seen.add(v))]  # type: ignore[func-returns-value]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def make_publisher(outbox: Outbox) -> Iterator[Callable[..., MqttPublisher]]:
    publishers: list[MqttPublisher] = []

    def factory(settings: MqttSettings, box: Outbox | None = None) -> MqttPublisher:
        publisher = MqttPublisher(settings, box or outbox, TOPICS)
        publishers.append(publisher)
        return publisher

    yield factory
    for publisher in publishers:
        publisher.stop(timeout_s=2)


def test_delivers_in_order_with_mqtt5_properties(mosquitto: MosquittoBroker, outbox: Outbox,
                                                 make_publisher: Callable[..., MqttPublisher],
                                                 make_subscriber: Callable[..., Subscriber]) -> None:
    subscriber = make_subscriber(mosquitto, "cbs/v1/#")
    for n in range(100):  # waiting before the publisher starts
        put_readout(outbox, n, vehicle=n % 10 == 0)
    publisher = make_publisher(settings_for(mosquitto))
    publisher.start(lambda: ONLINE)
    assert publisher.wait_connected(10)
    for n in range(100, 200):  # arriving while it runs
        put_readout(outbox, n, vehicle=n % 10 == 0)
        publisher.notify()

    readouts = subscriber.wait_for_count(200, TOPICS.readout)
    assert numbers(readouts) == list(range(200))
    for message in readouts:
        assert message.qos == 1 and not message.retain
        assert message.content_type == "application/json"
        assert message.user_properties == (("schema", "cbs.readout/1"),)
        assert message.payload_format_indicator == 1
    wait_until(lambda: outbox.depth() == 0, what="an empty outbox")
    wait_until(lambda: publisher.acked == 220, what="220 acknowledgements")
    assert publisher.published == 220 and publisher.failed == 0

    status = subscriber.wait_for_count(1, TOPICS.status)[0]
    assert status.payload == ONLINE.encode()
    assert status.user_property == {"schema": "cbs.status/1"}
    assert status.content_type == "application/json"

    # The vehicle topic is retained: a late subscriber gets the latest readout of the VIN.
    late = make_subscriber(mosquitto, TOPICS.vehicles_filter)
    vehicle = late.wait_for_count(1)[0]
    assert vehicle.retain and vehicle.topic == TOPICS.vehicle(VIN) and vehicle.json()["n"] == 190


def test_delivers_in_order_with_mqtt311(mosquitto: MosquittoBroker, outbox: Outbox,
                                        make_publisher: Callable[..., MqttPublisher],
                                        make_subscriber: Callable[..., Subscriber]) -> None:
    subscriber = make_subscriber(mosquitto, "cbs/v1/#", protocol="3.1.1")
    for n in range(50):
        put_readout(outbox, n)
    publisher = make_publisher(settings_for(mosquitto, protocol="3.1.1"))
    publisher.start(lambda: ONLINE)
    readouts = subscriber.wait_for_count(50, TOPICS.readout)
    assert numbers(readouts) == list(range(50))
    wait_until(lambda: outbox.depth() == 0, what="an empty outbox")
    assert subscriber.wait_for_count(1, TOPICS.status)[0].payload == ONLINE.encode()


def test_status_on_connect_on_demand_and_offline_on_stop(
        mosquitto: MosquittoBroker, make_publisher: Callable[..., MqttPublisher],
        make_subscriber: Callable[..., Subscriber]) -> None:
    subscriber = make_subscriber(mosquitto, TOPICS.status)
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return ONLINE

    publisher = make_publisher(settings_for(mosquitto))
    publisher.start(provider)
    subscriber.wait_for_count(1)
    assert len(calls) == 1

    changed = '{"schema": "cbs.status/1", "state": "online", "agent_version": "x"}'
    publisher.publish_status(changed)
    assert subscriber.wait_for_count(2)[1].payload == changed.encode()

    publisher.stop()
    assert not publisher.connected
    offline = subscriber.wait_for_count(3)[2]
    assert offline.payload == OFFLINE_STATUS_JSON.encode()
    assert offline.user_property == {"schema": "cbs.status/1"}
    # stop() waited for the PUBACK, so the broker already holds it as the retained status.
    late = make_subscriber(mosquitto, TOPICS.status)
    retained = late.wait_for_count(1)[0]
    assert retained.retain and retained.payload == OFFLINE_STATUS_JSON.encode()


WILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from agent.mqtt.settings import MqttSettings
    from agent.store.outbox import Outbox
    from agent.mqtt.publisher import MqttPublisher
    from agent.contract.topics import Topics

    url, outbox_path, protocol = sys.argv[1:4]
    settings = MqttSettings(url=url, protocol=protocol, reconnect_min_s=0.05, reconnect_max_s=0.5)
    publisher = MqttPublisher(settings, Outbox(outbox_path), Topics("cbs/v1", "S1", "desk1"))
    publisher.start(lambda: '{"schema": "cbs.status/1", "state": "online"}')
    time.sleep(120)  # until the test kills us
""")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_last_will_when_the_agent_is_killed(protocol: str, tmp_path: Path, mosquitto: MosquittoBroker,
                                            make_subscriber: Callable[..., Subscriber]) -> None:
    subscriber = make_subscriber(mosquitto, TOPICS.status)
    agent = subprocess.Popen([sys.executable, "-c", WILL_SCRIPT, mosquitto.url,
                              str(tmp_path / "o.db"), protocol])
    try:
        subscriber.wait_for(lambda ms: any(m.payload == ONLINE.encode() for m in ms),
                            what="the agent's online status")
        agent.kill()  # SIGKILL: no chance to say goodbye
        agent.wait(timeout=10)
        messages = subscriber.wait_for(
            lambda ms: ms[-1].payload == OFFLINE_STATUS_JSON.encode(), what="the last will")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(timeout=10)
    will = messages[-1]
    assert will.topic == TOPICS.status and will.qos == 1
    if protocol == "5":
        assert will.content_type == "application/json"
        assert will.user_property == {"schema": "cbs.status/1"}
    late = make_subscriber(mosquitto, TOPICS.status)
    retained = late.wait_for_count(1)[0]
    assert retained.retain and retained.payload == OFFLINE_STATUS_JSON.encode()


def test_broker_restart_mid_stream_loses_nothing(
        make_broker: Callable[..., MosquittoBroker], outbox: Outbox,
        make_publisher: Callable[..., MqttPublisher],
        make_subscriber: Callable[..., Subscriber]) -> None:
    broker = make_broker(persistence=True)
    # A persistent session: the broker queues for the integrator while it is away too.
    subscriber = make_subscriber(broker, TOPICS.readout, persistent=True,
                                 client_id="integrator-restart")
    for n in range(150):
        put_readout(outbox, n)
    publisher = make_publisher(settings_for(broker))
    publisher.start(lambda: ONLINE)
    subscriber.wait_for_count(10)

    broker.stop()  # mid-stream: some rows are in flight, some still in the outbox
    wait_until(lambda: not publisher.connected, what="the publisher to notice")
    for n in range(150, 300):
        put_readout(outbox, n)
        publisher.notify()
    assert outbox.depth() >= 150  # nothing can be acknowledged while the broker is down

    broker.start()
    wait_until(lambda: outbox.depth() == 0, timeout_s=30, what="an empty outbox")
    messages = subscriber.wait_for(lambda ms: set(numbers(ms)) == set(range(300)),
                                   timeout_s=30, what="all 300 readouts")
    # At least once (a message in flight at the stop may come twice), and in order.
    assert first_occurrences(numbers(messages)) == list(range(300))
    assert publisher.connects >= 2


def test_outbox_survives_an_agent_restart_while_the_broker_is_down(
        make_broker: Callable[..., MosquittoBroker], tmp_path: Path,
        make_publisher: Callable[..., MqttPublisher],
        make_subscriber: Callable[..., Subscriber]) -> None:
    broker = make_broker()
    broker.stop()
    path = tmp_path / "restart.sqlite3"
    first_box = Outbox(path)
    for n in range(20):
        put_readout(first_box, n)
    first = make_publisher(settings_for(broker), first_box)
    first.start(lambda: ONLINE)
    wait_until(lambda: first.connect_failures >= 1, what="a failed connection attempt")
    first.stop(timeout_s=1)
    assert first.connects == 0 and first_box.depth() == 20
    first_box.close()

    broker.start()
    subscriber = make_subscriber(broker, TOPICS.readout)
    second_box = Outbox(path)  # the agent starts again
    second = make_publisher(settings_for(broker), second_box)
    second.start(lambda: ONLINE)
    assert numbers(subscriber.wait_for_count(20)) == list(range(20))
    wait_until(lambda: second_box.depth() == 0, what="an empty outbox")
    second.stop()
    second_box.close()


def test_password_is_hidden_in_repr_and_settings_dump(tmp_path: Path) -> None:
    secret = "hunter2-s3cret"
    settings = MqttSettings(username="agent", password=secret)
    assert secret not in repr(settings) and secret not in str(settings)
    assert secret not in str(settings.model_dump())
    assert secret not in settings.model_dump_json()
    assert settings.password_value() == secret
