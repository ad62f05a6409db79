"""Integrators' commands over MQTT 5 request/response, against a real agent, a real mosquitto
and a paho MQTT 5 client; and the metrics endpoint, scraped and parsed by prometheus_client.

Good requests get their answer with the request's correlation data; bad ones (malformed JSON,
unknown command, wrong argument types, over 64 KiB, a flood, no response topic) get an error
answer where there is a response topic, are counted, and never hurt the agent: it keeps
reading keys."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from broker import MosquittoBroker, free_port
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from processes import AgentProcess, SimulatorProcess, wait_until
from prometheus_client.parser import text_string_to_metric_families

SITE, READER = "cmd", "desk1"
BASE = f"cbs/v1/{SITE}/{READER}"
WAIT_S = 20.0


class Requester:
    """An integrator: a paho MQTT 5 client with its own response topic."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.response_topic = f"integrator/{uuid.uuid4().hex}/responses"
        self.answers: dict[bytes, dict[str, Any]] = {}
        self.received: list[tuple[str, bytes | None, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dms-{uuid.uuid4().hex[:8]}",
                             protocol=paho.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe(self.response_topic, qos=1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        assert self._subscribed.wait(10)
        self.client = client

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        body = json.loads(message.payload)
        with self._lock:
            self.received.append((message.topic, correlation, body))
            if correlation is not None:
                self.answers[bytes(correlation)] = body

    def send(self, command: str, payload: bytes | str = b"", *, respond: bool = True) -> bytes:
        correlation = uuid.uuid4().bytes
        properties = Properties(PacketTypes.PUBLISH)
        if respond:
            properties.ResponseTopic = self.response_topic
            properties.CorrelationData = correlation
        self.client.publish(f"{BASE}/command/{command}", payload, qos=1, properties=properties)
        return correlation

    def ask(self, command: str, payload: bytes | str = b"") -> dict[str, Any]:
        correlation = self.send(command, payload)
        wait_until(lambda: correlation in self.answers, WAIT_S, f"the answer to {command}")
        return self.answers[correlation]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def running(tmp_path: Path, mosquitto: MosquittoBroker):
    sim = SimulatorProcess(tmp_path, "serial", "--seed", "5", "--sessions", "0",
                           "--interval-s", "0.3", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "3")
    metrics_port = free_port()
    agent = AgentProcess(tmp_path, "--serial", sim.port, "--broker", mosquitto.url,
                         "--site", SITE, "--reader", READER, "--state-dir", str(tmp_path / "state"),
                         "--metrics-port", str(metrics_port),
                         env={"CBS_COMMANDS__RATE_PER_S": "2", "CBS_COMMANDS__BURST": "40"})
    requester = Requester(mosquitto)
    try:
        wait_until(lambda: "commands: listening" in agent.log_text(), WAIT_S, "the command link")
        yield agent, requester, metrics_port
    finally:
        requester.close()
        agent.stop()
        sim.stop()


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_good_commands_are_answered(running) -> None:
    agent, requester, _ = running
    ping = requester.ask("ping")
    assert ping["schema"] == "cbs.response/1" and ping["command"] == "ping"
    assert ping["ok"] is True and ping["error"] is None
    assert ping["result"]["version"] and ping["result"]["uptime_s"] >= 0
    status = requester.ask("status")
    assert status["ok"] and status["result"]["schema"] == "cbs.status/1"
    assert status["result"]["state"] == "online"
    # republish: the vehicle topic of a vehicle read, retained, again
    wait_until(lambda: agent.logged_readout_ids(), WAIT_S, "a key read")
    vin = next(line.split("VIN ")[1].split(",")[0] for line in agent.log_text().splitlines()
               if "readout " in line and "VIN " in line)
    answer = requester.ask("republish", json.dumps({"vin": vin}))
    assert answer["ok"], answer
    assert answer["result"]["vin"] == vin and answer["result"]["topic"] == (
        f"cbs/v1/{SITE}/vehicles/{vin}")
    unknown = requester.ask("republish", json.dumps({"vin": "WBA00000000000000"}))
    assert not unknown["ok"] and unknown["error"]["code"] == "not_found"


@pytest.mark.parametrize(("command", "payload", "code"), [
    ("ping", b"{not json", "malformed"),
    ("ping", b"\xff\xfe", "malformed"),
    ("reboot", b"", "unknown_command"),
    ("republish", b'{"vin": 12345}', "bad_arguments"),
    ("republish", b'{"vin": "not a vin"}', "bad_arguments"),
    ("republish", b'[1, 2, 3]', "bad_arguments"),
    ("ping", b'{"extra": true}', "bad_arguments"),
    ("ping", b"[" * 100_000, "too_large"),
    ("clear_faults", b"", "disabled"),
    ("diagnose", b'{"protocol": "kwp"}', "bad_arguments"),
])
def test_bad_requests_get_an_error_answer(running, command: str, payload: bytes,
                                          code: str) -> None:
    _, requester, _ = running
    answer = requester.ask(command, payload)
    assert answer["schema"] == "cbs.response/1"
    assert answer["ok"] is False and answer["result"] is None
    assert answer["error"]["code"] == code, answer
    assert answer["error"]["detail"]
    assert requester.ask("ping")["ok"]  # the agent is unharmed


def test_a_flood_is_cut_and_counted_and_the_agent_keeps_reading(running) -> None:
    agent, requester, port = running
    before = len(agent.logged_readout_ids())
    correlations = [requester.send("ping") for _ in range(150)]
    wait_until(lambda: all(c in requester.answers for c in correlations), WAIT_S,
               "an answer to every request of the flood")
    codes = [requester.answers[c]["error"]["code"] if not requester.answers[c]["ok"] else "ok"
             for c in correlations]
    assert codes.count("ok") >= 40 and codes.count("rate_limited") >= 50, codes
    # Requests with no response topic: carried out or refused, counted, never answered.
    time.sleep(1.0)  # a token for it (2 a second)
    answered = len(requester.received)
    requester.send("reboot", respond=False)
    wait_until(lambda: scrape(port)["cbs_commands_unanswered_total"][()] >= 1, WAIT_S,
               "the unanswered request counted")
    assert len(requester.received) == answered
    wait_until(lambda: len(agent.logged_readout_ids()) > before + 1, WAIT_S, "keys still read")
    assert agent.running() and "Traceback" not in agent.log_text()
    metrics = scrape(port)
    assert metrics["cbs_commands_total"][(("result", "rate_limited"),)] >= 50


def test_metrics_are_scraped_and_parsed(running) -> None:
    agent, _, port = running
    wait_until(lambda: len(agent.logged_readout_ids()) >= 2, WAIT_S, "two key reads")
    wait_until(lambda: scrape(port)["cbs_delivery_seconds_count"][()] >= 2, WAIT_S,
               "deliveries timed")
    metrics = scrape(port)
    assert metrics["cbs_readouts_total"][()] >= 2
    assert metrics["cbs_frames_total"][()] > 0
    assert metrics["cbs_broker_connected"][()] == 1.0
    assert metrics["cbs_reader_connected"][()] == 1.0
    assert "cbs_outbox_depth" in metrics and "cbs_outbox_oldest_age_seconds" in metrics
    assert metrics["cbs_acknowledged_total"][()] >= 2
    assert 0 < metrics["cbs_delivery_seconds_sum"][()] < 60
    assert "cbs_vehicle_test_seconds_count" in metrics


def test_diagnose_runs_a_vehicle_test_on_the_daemons_channel(
        tmp_path: Path, mosquitto: MosquittoBroker, make_subscriber: Any) -> None:
    """``run`` with a [diagnostics] channel (a simulated car on its own SLCAN pty): the
    ``diagnose`` command tests the car now, answers with the report's id, and the report
    itself arrives on the diagnosis topic through the outbox; the metrics count it."""
    car = SimulatorProcess(tmp_path, "vehicle", "--ecus", "0x12,0x40,0x60", name="car")
    keys = SimulatorProcess(tmp_path, "serial", "--seed", "5", "--sessions", "0",
                            "--interval-s", "1.0", "--baudrate", "0", "--vehicles", "3")
    reports = make_subscriber(mosquitto, f"{BASE}/diagnosis")
    metrics_port = free_port()
    agent = AgentProcess(tmp_path, "--serial", keys.port, "--broker", mosquitto.url,
                         "--site", SITE, "--reader", READER, "--state-dir", str(tmp_path / "state"),
                         "--metrics-port", str(metrics_port),
                         env={"CBS_DIAGNOSTICS__CAN_INTERFACE": "slcan",
                              "CBS_DIAGNOSTICS__CAN_CHANNEL": car.port,
                              "CBS_DIAGNOSTICS__ADDRESSES": "[18, 64, 96]"})
    requester = Requester(mosquitto)
    try:
        wait_until(lambda: "commands: listening" in agent.log_text(), WAIT_S, "the command link")
        # The watcher notices the car by itself once; then the command asks for another test.
        reports.wait_for(lambda ms: len(ms) >= 1, 60, what="the watcher's own vehicle test")
        answer = requester.ask("diagnose")
        assert answer["ok"], answer
        diagnosis_id = answer["result"]["diagnosis_id"]
        assert answer["result"]["outcome"] == "complete" and answer["result"]["stored"]
        got = reports.wait_for(lambda ms: any(m.json()["diagnosis_id"] == diagnosis_id
                                              for m in ms), WAIT_S, what="the asked-for report")
        assert len({m.json()["diagnosis_id"] for m in got}) >= 2
        wrong = requester.ask("diagnose", json.dumps({"protocol": "obd2"}))
        assert not wrong["ok"] and wrong["error"]["code"] == "unavailable"
        metrics = scrape(metrics_port)
        assert metrics["cbs_vehicle_tests_total"][(("outcome", "complete"),)] >= 2
        assert metrics["cbs_vehicle_test_seconds_count"][()] >= 2
        assert "Traceback" not in agent.log_text()
    finally:
        requester.close()
        agent.stop()
        keys.stop()
        car.stop()
