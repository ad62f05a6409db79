"""Home Assistant checks our discovery payloads itself: its own MQTT discovery code and
schemas (the ``homeassistant`` package, in a cached virtualenv made by .ci/ha-venv.sh) read
every config message the agent publishes. And ``cbs-agent ha remove`` withdraws a reader's
entities from a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from broker import MosquittoBroker, Subscriber, free_port

from agent.contract.ha_discovery import discovery_messages, node_id_for
from agent.contract.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Path(__file__).with_name("ha") / "ha_validate.py"
TOPICS = Topics("cbs/v1", "S1", "desk1")


@pytest.fixture(scope="module")
def ha_python() -> str:
    done = subprocess.run(["bash", str(ROOT / ".ci" / "ha-venv.sh")], capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        pytest.skip(f"homeassistant cannot be installed here: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def _validate(ha_python: str, messages: list[tuple[str, str]]) -> dict:
    done = subprocess.run([ha_python, str(VALIDATOR)], input=json.dumps(messages),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _version(text: str) -> tuple[int, int]:
    year, month = text.split(".")[:2]
    return int(year), int(month)


def test_home_assistant_accepts_every_discovery_payload(ha_python: str) -> None:
    messages = discovery_messages(TOPICS, "S1", "desk1")
    report = _validate(ha_python, messages)
    assert len(report["results"]) == len(messages)
    # MQTT sensors take `options` (the states of an enum sensor) from Home Assistant 2024.9
    # on; an older one drops the key and shows the state without the list. 2024.3 is the
    # newest that runs on Python 3.11.
    tolerated = {"options"} if _version(report["version"]) < (2024, 9) else set()
    for result in report["results"]:
        assert result["errors"] == [], (report["version"], result)
        assert set(result["dropped"]) <= tolerated, (report["version"], result)


def test_home_assistant_rejects_what_it_should(ha_python: str) -> None:
    """The check has teeth: a wrong device class, a misspelt key and a wildcard topic."""
    node = node_id_for("S1", "desk1")
    bad = [
        (f"homeassistant/sensor/{node}/x/config",
         json.dumps({"state_topic": "a/b", "device_class": "kilometres"})),
        (f"homeassistant/sensor/{node}/y/config",
         json.dumps({"state_topic": "a/b", "unit_of_measurment": "km"})),
        ("homeassistant/sensor/a+b/config", json.dumps({"state_topic": "a/b"})),
    ]
    results = _validate(ha_python, bad)["results"]
    assert results[0]["errors"] and "device_class" in results[0]["errors"][0]
    assert results[1]["dropped"] == ["unit_of_measurment"]
    assert results[2]["errors"] == ["not a discovery topic Home Assistant reads"]


def _retain(broker: MosquittoBroker, messages: list[tuple[str, str]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retainer")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _retained(broker: MosquittoBroker, topic_filter: str) -> list[str]:
    with Subscriber.for_broker(broker, topic_filter) as sub:
        time.sleep(1.0)  # retained messages follow the SUBACK at once
        return sorted(m.topic for m in sub.snapshot() if m.retain and m.payload)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=60)


def test_ha_remove_clears_the_readers_retained_configs(mosquitto: MosquittoBroker) -> None:
    node = node_id_for("S1", "desk1")
    ours = discovery_messages(TOPICS, "S1", "desk1")
    stale = (f"homeassistant/sensor/{node}/an_entity_of_an_older_agent/config", "{}")
    other = discovery_messages(Topics("cbs/v1", "S1", "desk2"), "S1", "desk2")
    _retain(mosquitto, [*ours, stale, *other])
    assert len(_retained(mosquitto, "homeassistant/#")) == len(ours) + 1 + len(other)

    done = _cli("ha", "remove", "--broker", mosquitto.url, "--site", "S1", "--reader", "desk1")
    assert done.returncode == 0, done.stderr
    assert f"removed {len(ours) + 1} Home Assistant entities of S1/desk1" in done.stdout
    left = _retained(mosquitto, "homeassistant/#")
    assert left == sorted(topic for topic, _ in other)  # desk2 keeps its entities


def test_ha_remove_says_why_when_the_broker_is_unreachable() -> None:
    port = free_port()
    done = _cli("ha", "remove", "--broker", f"mqtt://127.0.0.1:{port}", "--site", "S1",
                "--reader", "desk1")
    assert done.returncode == 1
    assert done.stderr.strip() == (f"cbs-agent: cannot reach the broker at 127.0.0.1:{port}: "
                                   "connection refused")
