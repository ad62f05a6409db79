"""End to end with real processes: `cbs-sim serial` on a pseudo-terminal -> `cbs-agent run` ->
a private mosquitto on loopback -> a test subscriber.

Every session the simulator played arrives, in order, as the readout or rejection its ground
truth says, with exactly the data the simulator sent.
"""

from __future__ import annotations

from pathlib import Path

from broker import MosquittoBroker, Subscriber
from expectations import assert_readout_matches
from processes import AgentProcess, SimulatorProcess, wait_until

SITE, READER = "e2e", "desk1"
BASE = f"cbs/v1/{SITE}/{READER}"


def _outcomes(messages: list) -> list:
    return [m for m in messages if m.topic in (f"{BASE}/readout", f"{BASE}/rejected")]


def _run(tmp_path: Path, broker: MosquittoBroker, subscriber: Subscriber, sessions: int,
         *sim_args: str) -> tuple[SimulatorProcess, AgentProcess]:
    sim = SimulatorProcess(tmp_path, "serial", "--seed", "11", "--sessions", str(sessions),
                           "--interval-s", "0.02", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "12", *sim_args)
    agent = AgentProcess(tmp_path, "--serial", sim.port, "--broker", broker.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(tmp_path / "state"))
    try:
        # The simulator drains and exits after its last read (an interrupted read adds a retry,
        # so the truth may hold more records than --sessions); a lingering one stays up.
        if "--linger" in sim_args:
            wait_until(lambda: len(sim.truth()) >= sessions, 120, f"{sessions} sessions played")
        else:
            sim.wait_exit(180)
        truth = sim.truth()
        subscriber.wait_for(lambda ms: len(_outcomes(ms)) >= len(truth), 60,
                            what=f"{len(truth)} readouts/rejections")
    except AssertionError:
        print("--- agent log ---\n" + agent.tail() + "\n--- simulator log ---\n" + sim.tail())
        raise
    return sim, agent


def test_clean_sessions_arrive_exactly(tmp_path: Path, mosquitto: MosquittoBroker,
                                       make_subscriber) -> None:
    subscriber = make_subscriber(mosquitto, f"cbs/v1/{SITE}/#")
    sim, agent = _run(tmp_path, mosquitto, subscriber, 30)
    try:
        truth = sim.truth()
        outcomes = _outcomes(subscriber.snapshot())
        assert len(outcomes) == len(truth) == 30
        for record, message in zip(truth, outcomes, strict=True):
            assert record["expected"] == "readout"
            assert message.topic.endswith("/readout")
            payload = message.json()
            assert_readout_matches(record, payload)
            # MQTT 5 properties of the contract
            assert message.content_type == "application/json"
            assert ("schema", "cbs.readout/1") in message.user_properties
        vehicles = {m.topic for m in subscriber.snapshot() if "/vehicles/" in m.topic}
        assert vehicles == {f"cbs/v1/{SITE}/vehicles/{r['vin']}" for r in truth}
        ids = [m.json()["readout_id"] for m in outcomes]
        assert len(set(ids)) == len(ids)
    finally:
        agent.stop()
        sim.stop()


def test_faulty_sessions_are_rejected_with_the_right_reason(tmp_path: Path,
                                                            mosquitto: MosquittoBroker,
                                                            make_subscriber) -> None:
    subscriber = make_subscriber(mosquitto, f"cbs/v1/{SITE}/#")
    sim, agent = _run(tmp_path, mosquitto, subscriber, 60, "--fault-rate", "0.04")
    try:
        truth = sim.truth()
        outcomes = _outcomes(subscriber.snapshot())
        assert len(outcomes) == len(truth)
        rejected = 0
        for record, message in zip(truth, outcomes, strict=True):
            payload = message.json()
            if record["expected"] == "readout":
                assert message.topic.endswith("/readout"), (record["faults"], payload)
                assert_readout_matches(record, payload)
            else:
                rejected += 1
                assert message.topic.endswith("/rejected"), (record["faults"], payload)
                assert payload["reason"] == record["reason"], (record["faults"], payload["detail"])
                assert payload["key_id"] in (record["key_id"], None)
                assert payload["detail"]
        assert rejected >= 5, "the fault rate should have produced rejections"
    finally:
        agent.stop()
        sim.stop()


def test_status_is_retained_and_goes_offline_on_shutdown(tmp_path: Path, mosquitto: MosquittoBroker,
                                                         make_subscriber) -> None:
    watcher = make_subscriber(mosquitto, f"{BASE}/status")
    sim, agent = _run(tmp_path, mosquitto, make_subscriber(mosquitto, f"{BASE}/#"), 3, "--linger")
    try:
        late = make_subscriber(mosquitto, f"{BASE}/status")
        retained = late.wait_for(lambda ms: any(m.retain for m in ms), 20, what="retained status")
        online = [m.json() for m in retained if m.retain][-1]
        assert online["state"] == "online"
        assert online["reader"] == {"transport": "serial", "port": sim.port, "connected": True}
        assert online["agent_version"] and online["since"].endswith("Z")
        assert online["counters"]["readouts"] >= 0 and online["outbox"]["depth"] >= 0
        assert agent.terminate() == 0
        watcher.wait_for(lambda ms: ms and ms[-1].json()["state"] == "offline", 20, what="offline")
        after = make_subscriber(mosquitto, f"{BASE}/status")
        final = after.wait_for(lambda ms: any(m.retain for m in ms), 20, what="retained offline")
        assert [m.json() for m in final if m.retain][-1] == {"schema": "cbs.status/1", "state": "offline"}
    finally:
        agent.stop()
        sim.stop()
