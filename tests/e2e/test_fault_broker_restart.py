"""The broker stopped for a while and started again, twice, while keys are read: every
session arrives, in reading order, exactly as read.

Real processes: ``cbs-sim serial`` -> ``cbs-agent run`` -> a private mosquitto -> a subscriber.
The broker keeps persistence and the subscriber a persistent session (MQTT 5 session expiry),
as an integrator's would: messages the broker accepted while the subscriber was still
reconnecting wait for it, so what the test sees is what the agent delivered. The agent holds
what it reads during the outage in its outbox and sends it when the broker is back
(redeliveries allowed: the contract is at least once, deduplicated on ``readout_id``).
"""

from __future__ import annotations

from pathlib import Path

from expectations import assert_readout_matches
from processes import (
    AgentProcess,
    SimulatorProcess,
    first_deliveries,
    readout_key,
    session_key,
    wait_until,
)

SITE, READER = "e2e", "outage"
BASE = f"cbs/v1/{SITE}/{READER}"
SESSIONS = 45
OUTAGES = 2
READ_DURING_OUTAGE = 8
WAIT_S = 60.0


def test_broker_restarts_lose_nothing_and_keep_order(tmp_path: Path, make_broker,
                                                     make_subscriber) -> None:
    broker = make_broker(persistence=True)
    subscriber = make_subscriber(broker, [f"{BASE}/readout", f"{BASE}/rejected"],
                                 persistent=True, client_id="fault-broker-restart")
    sim = SimulatorProcess(tmp_path, "serial", "--seed", "31", "--sessions", str(SESSIONS),
                           "--interval-s", "0.1", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "2000", "--linger")
    # A short reconnect cap keeps the test short; the backoff itself is the publisher's.
    agent = AgentProcess(tmp_path, "--serial", sim.port, "--broker", broker.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(tmp_path / "state"),
                         env={"CBS_MQTT__RECONNECT_MAX_S": "2"})
    read_while_down = 0
    try:
        for outage in range(OUTAGES):
            delivered = len(first_deliveries(subscriber.snapshot())[0])
            subscriber.wait_for(lambda ms, before=delivered: len(first_deliveries(ms)[0])
                                >= before + 5, WAIT_S,
                                what=f"readouts before outage {outage + 1}")
            broker.stop()
            logged = len(agent.logged_readout_ids())
            wait_until(lambda before=logged: len(agent.logged_readout_ids())
                       >= before + READ_DURING_OUTAGE,
                       WAIT_S, f"{READ_DURING_OUTAGE} keys read while the broker is down")
            read_while_down += len(agent.logged_readout_ids()) - logged
            broker.start()
        wait_until(lambda: len(sim.truth()) >= SESSIONS, WAIT_S, "every session played")
        subscriber.wait_for(lambda ms: len(first_deliveries(ms)[0]) >= SESSIONS, WAIT_S,
                            what=f"{SESSIONS} readouts")
    except AssertionError:
        print(f"--- agent log ---\n{agent.tail(60)}\n--- simulator log ---\n{sim.tail()}\n"
              f"--- broker log ---\n{broker.log_text()[-3000:]}")
        raise
    finally:
        agent.stop()
        sim.stop()

    truth = sim.truth()
    messages = subscriber.snapshot()
    payloads, counts = first_deliveries(messages)  # same id -> same bytes
    assert len(truth) == SESSIONS and not any(r["disturbed"] for r in truth)
    assert len(payloads) == SESSIONS, "a session arrived twice under different ids, or extra"
    numbers = {session_key(r): r["n"] for r in truth}
    arrival = [numbers.get(readout_key(p)) for p in payloads]
    assert arrival == [r["n"] for r in truth], f"sessions in order of first arrival: {arrival}"
    for record, payload in zip(truth, payloads, strict=True):  # in reading order
        assert record["expected"] == "readout" and "readout_id" in payload
        assert readout_key(payload) == session_key(record)
        assert_readout_matches(record, payload)
    assert set(agent.logged_readout_ids()) == {p["readout_id"] for p in payloads}
    print(f"\nbroker stopped x{OUTAGES}: sessions sent {len(truth)}, {read_while_down} read while "
          f"it was down, delivered {len(payloads)}, duplicates "
          f"{sum(counts.values()) - len(counts)}, lost 0")
