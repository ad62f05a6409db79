"""Home Assistant discovery from the running agent: switched on by configuration, the agent
publishes retained discovery configs on connect, pointing at its own status topic."""

from __future__ import annotations

import json
from pathlib import Path

from broker import MosquittoBroker
from processes import AgentProcess, SimulatorProcess


def test_discovery_messages_on_connect(tmp_path: Path, mosquitto: MosquittoBroker,
                                       make_subscriber) -> None:
    sim = SimulatorProcess(tmp_path, "serial", "--sessions", "1", "--baudrate", "0", "--linger")
    AgentProcess(tmp_path, "--serial", sim.port, "--broker", mosquitto.url, "--site", "ws1",
                 "--reader", "desk1", "--state-dir", str(tmp_path / "state"),
                 env={"CBS_MQTT__HOME_ASSISTANT_DISCOVERY": "true"})
    status = make_subscriber(mosquitto, "cbs/v1/ws1/desk1/status")
    status.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms), 30, what="online")
    # Subscribing after the agent connected: what arrives was retained.
    ha = make_subscriber(mosquitto, "homeassistant/#")
    configs = ha.wait_for(lambda ms: len(ms) >= 2, 30, what="discovery configs")
    assert all(m.retain for m in configs)
    payloads = [json.loads(m.payload) for m in configs]
    topics = [m.topic for m in configs]
    assert all(t.startswith("homeassistant/") and t.endswith("/config") for t in topics)
    assert all("unique_id" in p and "device" in p for p in payloads)
    assert any("cbs/v1/ws1/desk1/status" in json.dumps(p) for p in payloads)
