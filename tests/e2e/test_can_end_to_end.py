"""End to end over CAN with real processes: `cbs-sim can` emulating an SLCAN USB-CAN adapter on
a pseudo-terminal, with background vehicle traffic -> `cbs-agent run --can-interface slcan` ->
a private mosquitto -> a test subscriber."""

from __future__ import annotations

from pathlib import Path

import pytest
from broker import MosquittoBroker
from expectations import assert_readout_matches
from processes import AgentProcess, SimulatorProcess

SITE, READER = "e2e", "bay2"
BASE = f"cbs/v1/{SITE}/{READER}"


def _outcomes(messages: list) -> list:
    return [m for m in messages if m.topic in (f"{BASE}/readout", f"{BASE}/rejected")]


@pytest.mark.parametrize(("interface", "bus_load", "fault_rate"), [
    ("slcan", "0.3", "0"),  # python-can's stock interface
    ("fastslcan", "0.6", "0.03"),  # ours, through python-can's plugin entry point
])
def test_can_sessions_among_background_traffic(tmp_path: Path, mosquitto: MosquittoBroker,
                                               make_subscriber, interface: str, bus_load: str,
                                               fault_rate: str) -> None:
    sessions = 30
    subscriber = make_subscriber(mosquitto, f"cbs/v1/{SITE}/#")
    sim = SimulatorProcess(tmp_path, "can", "--seed", "5", "--sessions", str(sessions),
                           "--interval-s", "0.05", "--vehicles", "10", "--bus-load", bus_load,
                           "--fault-rate", fault_rate)
    agent = AgentProcess(tmp_path, "--can-interface", interface, "--can-channel", sim.port,
                         "--broker", mosquitto.url, "--site", SITE, "--reader", READER,
                         "--state-dir", str(tmp_path / "state"))
    try:
        sim.wait_exit(180)
        truth = sim.truth()
        subscriber.wait_for(lambda ms: len(_outcomes(ms)) >= len(truth), 60, what="all outcomes")
        outcomes = _outcomes(subscriber.snapshot())
        assert len(outcomes) == len(truth)
        for record, message in zip(truth, outcomes, strict=True):
            payload = message.json()
            assert payload["transport"] == "can"
            if record["expected"] == "readout":
                assert message.topic.endswith("/readout"), (record["faults"], payload)
                assert_readout_matches(record, payload)
            else:
                assert payload["reason"] == record["reason"], (record["faults"], payload["detail"])
    except AssertionError:
        print("--- agent log ---\n" + agent.tail() + "\n--- simulator log ---\n" + sim.tail())
        raise
    finally:
        agent.stop()
        sim.stop()
