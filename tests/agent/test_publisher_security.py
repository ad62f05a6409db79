"""TLS, passwords and the example ACL (examples/mosquitto/) against a real mosquitto.

Certificates are generated per test with the openssl CLI (tests skip without it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from broker import (
    MosquittoBroker,
    Subscriber,
    TestCertificates,
    free_port,
    make_certificates,
    wait_until,
    write_password_file,
)
from paho.mqtt.enums import CallbackAPIVersion

from agent.contract.topics import Topics
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.store.outbox import Outbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mosquitto"
DESK1 = Topics("cbs/v1", "S1", "desk1")
DESK2 = Topics("cbs/v1", "S1", "desk2")
AGENT_USER = "cbs-agent-S1-desk1"
AGENT_PASSWORD = "agent-pw-7f3c9e"
INTEGRATOR_PASSWORD = "integrator-pw-2b8d1a"


@pytest.fixture
def certs(tmp_path: Path) -> TestCertificates:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(AGENT_PASSWORD + "\n")
    return path


@pytest.fixture
def publishers(tmp_path: Path) -> Iterator[Callable[..., MqttPublisher]]:
    made: list[tuple[MqttPublisher, Outbox]] = []

    def factory(topics: Topics = DESK1, **settings: Any) -> MqttPublisher:
        settings.setdefault("reconnect_min_s", 0.05)
        settings.setdefault("reconnect_max_s", 0.5)
        outbox = Outbox(tmp_path / f"outbox-{len(made)}.sqlite3")
        publisher = MqttPublisher(MqttSettings(**settings), outbox, topics)
        made.append((publisher, outbox))
        return publisher

    yield factory
    for publisher, outbox in made:
        publisher.stop(timeout_s=2)
        outbox.close()


def put(publisher: MqttPublisher, topic: str, n: int, *, retain: bool = False) -> None:
    publisher.outbox.put(topic, f'{{"n": {n}}}'.encode(), retain=retain, schema="cbs.readout/1",
                         message_id=f"m{n}")


def test_tls_with_client_certificate_and_password(
        certs: TestCertificates, password_file: Path, caplog: pytest.LogCaptureFixture,
        make_broker: Callable[..., MosquittoBroker], make_subscriber: Callable[..., Subscriber],
        publishers: Callable[..., MqttPublisher]) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker(allow_anonymous=False, tls=certs, require_certificate=True,
                         users={AGENT_USER: AGENT_PASSWORD, "integrator": INTEGRATOR_PASSWORD})
    assert broker.url.startswith("mqtts://127.0.0.1:")
    subscriber = make_subscriber(broker, "cbs/v1/#", username="integrator",
                                 password=INTEGRATOR_PASSWORD, certfile=certs.client_cert,
                                 keyfile=certs.client_key)
    publisher = publishers(url=broker.url, ca_file=certs.ca_cert, certfile=certs.client_cert,
                           keyfile=certs.client_key, username=AGENT_USER,
                           password_file=password_file)
    put(publisher, DESK1.readout, 1)
    publisher.start()
    assert subscriber.wait_for_count(1, DESK1.readout)[0].json() == {"n": 1}
    wait_until(lambda: publisher.outbox.depth() == 0, what="an empty outbox")
    assert AGENT_PASSWORD not in caplog.text


def test_wrong_password_is_refused_and_never_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        make_broker: Callable[..., MosquittoBroker],
        publishers: Callable[..., MqttPublisher]) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker(allow_anonymous=False, users={AGENT_USER: AGENT_PASSWORD})
    wrong = "wrong-pw-91c4"
    publisher = publishers(url=broker.url, username=AGENT_USER, password=wrong)
    put(publisher, DESK1.readout, 1)
    publisher.start()
    wait_until(lambda: publisher.connect_failures >= 2, what="two refused connections")
    assert publisher.connects == 0 and not publisher.connected
    assert publisher.last_error is not None and "refused" in publisher.last_error
    assert publisher.outbox.depth() == 1
    assert wrong not in caplog.text
    refusals = [r for r in caplog.records if r.name == "agent.mqtt.publisher"
                and "refused" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(refusals) == 1  # a warning once per outage, the retries at DEBUG


def test_the_broker_host_name_is_checked_unless_insecure(
        tmp_path: Path, make_broker: Callable[..., MosquittoBroker],
        make_subscriber: Callable[..., Subscriber],
        publishers: Callable[..., MqttPublisher]) -> None:
    # The certificate names another host: the chain is fine, the name is not.
    certs = make_certificates(tmp_path / "other-certs", server_dns=("broker.example",), server_ips=())
    broker = make_broker(tls=certs)
    checked = publishers(url=broker.url, ca_file=certs.ca_cert)
    checked.start()
    wait_until(lambda: checked.connect_failures >= 2, what="failed TLS handshakes")
    assert checked.connects == 0

    insecure = publishers(url=broker.url, ca_file=certs.ca_cert, tls_insecure=True,
                          client_id="cbs-agent-insecure")
    insecure.start()
    assert insecure.wait_connected(15)


# -- the example broker configuration and ACL ------------------------------------------------


def example_broker(tmp_path: Path, certs: TestCertificates,
                   make_broker: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """examples/mosquitto/mosquitto.conf as shipped, with its paths and port pointed here."""
    port = free_port()
    passwords = write_password_file(tmp_path / "cbs-agent.passwd", {
        AGENT_USER: AGENT_PASSWORD, "integrator": INTEGRATOR_PASSWORD})
    text = (EXAMPLES / "mosquitto.conf").read_text()
    for old, new in {
        "listener 8883": f"listener {port} 127.0.0.1",
        "/etc/mosquitto/cbs-agent.passwd": str(passwords),
        "/etc/mosquitto/cbs-agent.acl": str(EXAMPLES / "acl"),
        "/etc/mosquitto/certs/ca.crt": str(certs.ca_cert),
        "/etc/mosquitto/certs/server.crt": str(certs.server_cert),
        "/etc/mosquitto/certs/server.key": str(certs.server_key),
        "/var/lib/mosquitto/": f"{tmp_path}/",
    }.items():
        assert old in text, f"the example no longer contains {old!r}"
        text = text.replace(old, new)
    return make_broker(config_text=text, port=port, tls=certs)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_example_acl_confines_the_agent_to_its_own_topics(
        protocol: str, tmp_path: Path, certs: TestCertificates, password_file: Path,
        caplog: pytest.LogCaptureFixture, make_broker: Callable[..., MosquittoBroker],
        make_subscriber: Callable[..., Subscriber],
        publishers: Callable[..., MqttPublisher]) -> None:
    broker = example_broker(tmp_path, certs, make_broker)
    integrator = make_subscriber(broker, "cbs/v1/#", username="integrator",
                                 password=INTEGRATOR_PASSWORD, protocol=protocol)
    publisher = publishers(url=broker.url, ca_file=certs.ca_cert, username=AGENT_USER,
                           password_file=password_file, protocol=protocol)
    put(publisher, DESK1.readout, 0)
    put(publisher, DESK2.readout, 1)  # another reader's topic: denied
    put(publisher, DESK1.vehicle("WBA8E5107FK123456"), 2, retain=True)
    put(publisher, "cbs/v1/S2/vehicles/WBA8E5107FK123456", 3, retain=True)  # another site: denied
    put(publisher, DESK1.readout, 4)
    publisher.start()

    integrator.wait_for(lambda ms: any(m.topic == DESK1.readout and m.json() == {"n": 4} for m in ms),
                        what="the last allowed message")
    wait_until(lambda: publisher.outbox.depth() == 0, what="an empty outbox")
    received = {(m.topic, m.json()["n"]) for m in integrator.snapshot() if m.topic != DESK1.status}
    assert received == {(DESK1.readout, 0), (DESK1.vehicle("WBA8E5107FK123456"), 2),
                        (DESK1.readout, 4)}
    if protocol == "5":
        # PUBACK 0x87: seen, counted, logged, dropped; the connection stays open.
        assert publisher.failed == 2
        refused = [r.getMessage() for r in caplog.records
                   if r.name == "agent.mqtt.publisher" and r.levelno == logging.ERROR]
        assert any("m1" in m and DESK2.readout in m and "Not authorized" in m for m in refused)
    else:
        # MQTT 3.1.1 has no reason codes: the broker acknowledges and discards.
        assert publisher.failed == 0


def test_example_acl_lets_an_integrator_read_but_not_write(
        tmp_path: Path, certs: TestCertificates, password_file: Path,
        make_broker: Callable[..., MosquittoBroker], make_subscriber: Callable[..., Subscriber],
        publishers: Callable[..., MqttPublisher]) -> None:
    broker = example_broker(tmp_path, certs, make_broker)
    watcher = make_subscriber(broker, "cbs/v1/#", username="integrator",
                              password=INTEGRATOR_PASSWORD)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="integrator-writer",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set("integrator", INTEGRATOR_PASSWORD)
    client.tls_set(ca_certs=str(certs.ca_cert))
    acked = threading.Event()
    reasons: list[int] = []

    def on_publish(*args: Any) -> None:
        reasons.append(args[3].value)
        acked.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(DESK1.readout, b'{"n": 99}', qos=1)
        assert acked.wait(15)
    finally:
        client.disconnect()
        client.loop_stop()
    assert reasons == [0x87]
    # A marker from the agent, sent after the refusal: once it is in, the refused message
    # would have been too.
    agent = publishers(url=broker.url, ca_file=certs.ca_cert, username=AGENT_USER,
                       password_file=password_file)
    put(agent, DESK1.readout, 100)
    agent.start()
    messages = watcher.wait_for(lambda ms: any(m.payload == b'{"n": 100}' for m in ms),
                                what="the agent's marker")
    assert all(m.payload != b'{"n": 99}' for m in messages)


def _publish_reason(broker: MosquittoBroker, certs: TestCertificates, user: str, password: str,
                    topic: str) -> int:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-commands",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(certs.ca_cert))
    reasons: list[int] = []
    acked = threading.Event()

    def on_publish(*args: Any) -> None:
        reasons.append(args[3].value)
        acked.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, b"", qos=1)
        assert acked.wait(15)
    finally:
        client.disconnect()
        client.loop_stop()
    return reasons[0]


def test_example_acl_lets_only_integrators_send_commands(
        tmp_path: Path, certs: TestCertificates,
        make_broker: Callable[..., MosquittoBroker]) -> None:
    broker = example_broker(tmp_path, certs, make_broker)
    command = f"{DESK1.base}/command/ping"
    assert _publish_reason(broker, certs, "integrator", INTEGRATOR_PASSWORD, command) == 0x10
    # The agent itself may not (its ACL names its own topics, not its command topics).
    assert _publish_reason(broker, certs, AGENT_USER, AGENT_PASSWORD, command) == 0x87
    # The agent may answer under an integrator's response topics.
    assert _publish_reason(broker, certs, AGENT_USER, AGENT_PASSWORD,
                           "cbs/v1/responses/integrator/1") in (0x00, 0x10)


# -- connection errors say their cause and the likely fix (once per change, at WARNING) --------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "agent.mqtt.publisher" and r.levelno == logging.WARNING]


def test_a_wrong_ca_says_the_certificate_is_not_trusted(
        tmp_path: Path, certs: TestCertificates, caplog: pytest.LogCaptureFixture,
        make_broker: Callable[..., MosquittoBroker],
        publishers: Callable[..., MqttPublisher]) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker(tls=certs)
    other = make_certificates(tmp_path / "another-ca")
    publisher = publishers(url=broker.url, ca_file=other.ca_cert)
    publisher.start()
    wait_until(lambda: publisher.connect_failures >= 3, what="refused TLS handshakes")
    said = [m for m in _warnings(caplog) if "not trusted" in m]
    assert len(said) == 1, _warnings(caplog)  # once, not per retry
    assert "certificate verify failed" in said[0] and "ca_file" in said[0]


def test_plain_mqtt_to_a_tls_port_suggests_mqtts(
        certs: TestCertificates, caplog: pytest.LogCaptureFixture,
        make_broker: Callable[..., MosquittoBroker],
        publishers: Callable[..., MqttPublisher]) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker(tls=certs)
    publisher = publishers(url=f"mqtt://{broker.host}:{broker.port}")
    publisher.start()
    wait_until(lambda: publisher.connect_failures >= 3, what="failed connections")
    said = [m for m in _warnings(caplog) if "mqtts://" in m]
    assert len(said) == 1, _warnings(caplog)
    assert f"{broker.port}" in said[0]


def test_nothing_listening_says_so(caplog: pytest.LogCaptureFixture,
                                   publishers: Callable[..., MqttPublisher]) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    publisher = publishers(url=f"mqtt://127.0.0.1:{port}")
    publisher.start()
    wait_until(lambda: publisher.connect_failures >= 3, what="refused connections")
    said = [m for m in _warnings(caplog) if "connection refused" in m]
    assert len(said) == 1 and "is the broker running" in said[0], _warnings(caplog)
