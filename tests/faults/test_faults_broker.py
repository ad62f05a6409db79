"""The broker refuses, or is gone for a long time.

* **ACL refusal (MQTT 5)**: the broker's ACL lets the agent write its status but not its
  readout topic. mosquitto answers each refused PUBLISH with PUBACK 0x87; the agent logs the
  message's id, counts it, drops it, and goes on over the same connection (what
  examples/mosquitto/acl says; checked here with a bare client too).
* **Refused connection (CONNACK 0x86, bad user name or password)**, then the broker's
  password file fixed: nothing is lost while refused; everything arrives afterwards.
* **Broker gone for minutes**, compressed: the agent's reconnect backoff is capped at 1 s
  instead of 60 s (``CBS_MQTT__RECONNECT_MAX_S``), so 20 s away are as many failed
  reconnects as 20 minutes at the default cap; keys are read all the while.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from broker import write_password_file
from fault_rig import (
    FAST_AGENT_ENV,
    FaultAgent,
    agent_args,
    outcome_topics,
    simulator,
    tally,
    wait_delivered,
    wait_read,
    wait_until,
)
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "agent-secret"
DOWN_S = 20.0
EXAMPLE_QUEUE = "max_queued_messages 10000"  # as in examples/mosquitto/mosquitto.conf


def _acl(tmp_path: Path, reader: str) -> Path:
    acl = tmp_path / "acl"
    acl.write_text(f"user cbs-agent-faults-{reader}\n"
                   f"topic write cbs/v1/faults/{reader}/status\n"
                   f"topic write cbs/v1/faults/vehicles/#\n"
                   "user watcher\ntopic read cbs/v1/#\n")
    return acl


def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "agent-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def test_acl_refusal_is_named_per_readout_and_keeps_the_connection(
        tmp_path: Path, make_broker, make_subscriber) -> None:
    started = time.monotonic()
    reader = "acl"
    broker = make_broker(allow_anonymous=False, acl_file=_acl(tmp_path, reader),
                         users={f"cbs-agent-faults-{reader}": PASSWORD, "watcher": "w"},
                         extra_config=EXAMPLE_QUEUE)
    outcomes = make_subscriber(broker, outcome_topics(reader), username="watcher",
                               password="w")
    status = make_subscriber(broker, f"cbs/v1/faults/{reader}/status", username="watcher",
                             password="w")
    sim = simulator(tmp_path, 81, "--linger", "--faults", "", "--fault-rate", "0",
                    sessions=8)
    env = {**FAST_AGENT_ENV, "CBS_MQTT__USERNAME": f"cbs-agent-faults-{reader}",
           "CBS_MQTT__PASSWORD_FILE": str(_password_file(tmp_path))}
    agent = FaultAgent(tmp_path, *agent_args(sim, broker, reader, tmp_path / "state"), env=env)
    try:
        wait_read(status, 8, "every key read")
        wait_until(lambda: agent.log_text().count("broker refused") >= 8, 30,
                   "every readout refused")
        status.wait_for(lambda ms: ms[-1].json()["outbox"]["depth"] == 0, 30,
                        what="the outbox emptied")
    finally:
        agent.stop()
        sim.stop()
    log = agent.log_text()
    result = tally("broker ACL refuses the readout topic (MQTT 5)",
                   "mosquitto acl_file without write on .../readout", [log],
                   outcomes.snapshot(), started=started,
                   notes=f"connections: {log.count('MQTT: connected')}")
    assert result.read == 8 and result.delivered == 0
    result.assert_nothing_silently_lost()  # each refused readout is named, with 0x87
    assert log.count("Not authorized") >= 8
    assert log.count("MQTT: connected") == 1, "the broker closed the connection"
    assert "connection lost" not in log


@pytest.mark.parametrize("queue", [EXAMPLE_QUEUE, "max_queued_messages 0"])
@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_what_the_broker_does_with_a_refused_publish(tmp_path: Path, make_broker, queue: str,
                                                      protocol: int) -> None:
    """What examples/mosquitto/acl says mosquitto does, with a bare client: MQTT 5 gets
    PUBACK 0x87, MQTT 3.1.1 a plain PUBACK (the message is dropped), and the connection stays
    open, unless ``max_queued_messages 0``: then the broker closes it after the PUBACK."""
    broker = make_broker(allow_anonymous=False, acl_file=_acl(tmp_path, "bare"),
                         users={"cbs-agent-faults-bare": PASSWORD, "watcher": "w"},
                         extra_config=queue)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare", protocol=protocol)
    client.username_pw_set("cbs-agent-faults-bare", PASSWORD)
    client.reconnect_delay_set(5, 5)  # a close must show, not be papered over at once
    acks: dict[int, int] = {}
    disconnects: list[Any] = []
    done = threading.Condition()

    def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with done:
            acks[mid] = getattr(reason, "value", reason)
            done.notify_all()

    client.on_publish = on_publish
    client.on_disconnect = lambda *args: disconnects.append(args)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        denied = client.publish("cbs/v1/faults/bare/readout", b"x", qos=1).mid
        with done:
            assert done.wait_for(lambda: denied in acks, 15)
        time.sleep(0.5)
        closed = bool(disconnects)
    finally:
        client.disconnect()
        client.loop_stop()
    assert acks[denied] == (0x87 if protocol == mqtt.MQTTv5 else 0)
    assert closed == (queue == "max_queued_messages 0")
    comment = (ROOT / "examples/mosquitto/acl").read_text()
    assert "0x87" in comment and "the connection stays open" in comment
    assert "max_queued_messages 0" in comment
    example = (ROOT / "examples/mosquitto/mosquitto.conf").read_text()
    assert f"\n{EXAMPLE_QUEUE}\n" in example


def test_refused_connection_holds_everything_until_the_broker_lets_it_in(
        tmp_path: Path, make_broker, make_subscriber) -> None:
    started = time.monotonic()
    reader = "connack"
    broker = make_broker(allow_anonymous=False, users={"watcher": "w"})  # no agent user yet
    outcomes = make_subscriber(broker, outcome_topics(reader), username="watcher",
                               password="w", persistent=True, client_id="watcher-connack")
    sim = simulator(tmp_path, 82, "--linger", sessions=10)
    env = {**FAST_AGENT_ENV, "CBS_MQTT__USERNAME": f"cbs-agent-faults-{reader}",
           "CBS_MQTT__PASSWORD_FILE": str(_password_file(tmp_path))}
    agent = FaultAgent(tmp_path, *agent_args(sim, broker, reader, tmp_path / "state"), env=env)
    try:
        wait_until(lambda: len(agent.logged_readout_ids()) + agent.log_text().count(
            "rejected session") >= 10, 60, "every key read while refused")
        refused_log = agent.log_text()
        write_password_file(broker.workdir / "passwords",
                            {"watcher": "w", f"cbs-agent-faults-{reader}": PASSWORD})
        broker.restart()
        wait_delivered(outcomes, agent, "every readout after the broker let the agent in")
    finally:
        agent.stop()
        sim.stop()
    result = tally("broker refuses the connection (CONNACK 0x86), then accepts",
                   "mosquitto password file without the agent's user; added, restarted",
                   [agent.log_text()], outcomes.snapshot(), started=started)
    assert "refused the connection" in refused_log or "not authorized" in refused_log.lower()
    assert result.read >= 5 and not result.lost


def test_broker_gone_for_minutes_compressed(tmp_path: Path, make_broker,
                                            make_subscriber) -> None:
    started = time.monotonic()
    reader = "gone"
    # The broker keeps sessions across its restart, as a production one does: what the
    # subscriber sees is what the agent delivered.
    mosquitto = make_broker(persistence=True)
    outcomes = make_subscriber(mosquitto, outcome_topics(reader), persistent=True,
                               client_id="watcher-gone")
    status = make_subscriber(mosquitto, f"cbs/v1/faults/{reader}/status")
    sim = simulator(tmp_path, 83)
    agent = FaultAgent(tmp_path, *agent_args(sim, mosquitto, reader, tmp_path / "state"),
                       env=FAST_AGENT_ENV)
    try:
        wait_read(status, 3, "readouts before the broker goes")
        before = len(agent.logged_readout_ids())
        mosquitto.stop()
        time.sleep(DOWN_S)
        while_gone = len(agent.logged_readout_ids()) - before
        mosquitto.start()
        wait_read(status, before + while_gone + 3, "keys read after the broker came back")
        wait_delivered(outcomes, agent, "everything read, before, during and after")
    finally:
        agent.stop()
        sim.stop()
    result = tally(f"broker gone {DOWN_S:.0f} s (reconnect cap 1 s: ~{DOWN_S:.0f} min at 60 s)",
                   "mosquitto SIGTERM, started again on the same port", [agent.log_text()],
                   outcomes.snapshot(), started=started,
                   notes=f"{while_gone} read while the broker was gone")
    assert while_gone >= 10 and not result.lost
    assert agent.starts == 1 and agent.running() is False
