"""A USB-CAN adapter unplugged and plugged back (the simulator closes its pseudo-terminal and
opens a new one behind the same --link name): the agent reopens it with backoff, says so in its
status, and reads on."""

from __future__ import annotations

from pathlib import Path

from broker import MosquittoBroker
from expectations import assert_readout_matches
from processes import AgentProcess, SimulatorProcess

SITE, READER = "e2e", "canbay"
BASE = f"cbs/v1/{SITE}/{READER}"


def test_adapter_unplugged_and_back(tmp_path: Path, mosquitto: MosquittoBroker,
                                    make_subscriber) -> None:
    subscriber = make_subscriber(mosquitto, f"{BASE}/#")
    link = tmp_path / "ttyACM-keyreader"
    sim = SimulatorProcess(tmp_path, "can", "--seed", "8", "--sessions", "12", "--interval-s",
                           "0.05", "--vehicles", "6", "--bus-load", "0.2", "--link", str(link),
                           "--reopen-every", "4")
    agent = AgentProcess(tmp_path, "--can-interface", "fastslcan", "--can-channel", str(link),
                         "--broker", mosquitto.url, "--site", SITE, "--reader", READER,
                         "--state-dir", str(tmp_path / "state"))
    try:
        sim.wait_exit(120)
        truth = [r for r in sim.truth() if not r["disturbed"]]
        assert len(truth) >= 9
        outcomes = subscriber.wait_for(
            lambda ms: len([m for m in ms if m.topic == f"{BASE}/readout"]) >= len(truth), 60,
            what="every readout")
        readouts = [m.json() for m in outcomes if m.topic == f"{BASE}/readout"]
        # A session disturbed by the unplug may or may not arrive; every other one must.
        def identity(vin: str, vehicle: dict) -> tuple:
            return vin, vehicle["mileage_km"], vehicle["data_date"]
        by_identity = {identity(r["vehicle"]["vin"], r["vehicle"]): r for r in readouts}
        for record in truth:
            session = record["session"]
            key = identity(session["vin"], session["vehicle"])
            assert key in by_identity, f"session {record['n']} ({key}) did not arrive"
            assert_readout_matches(record, by_identity[key])
        statuses = [m.json() for m in subscriber.snapshot() if m.topic == f"{BASE}/status"
                    and m.json().get("reader")]
        connected = [s["reader"]["connected"] for s in statuses]
        assert False in connected and connected[-1] is True or connected.count(True) >= 2
        assert max(s["counters"]["reconnects"] for s in statuses) >= 2
    except AssertionError:
        print("--- agent log ---\n" + agent.tail() + "\n--- simulator log ---\n" + sim.tail())
        raise
    finally:
        agent.stop()
        sim.stop()
