"""The broker stopped for a while and started again while keys are read: every session
arrives, exactly as read — and in reading order.

Real processes: ``cbs-sim serial`` -> ``cbs-agent run`` -> a private mosquitto -> a subscriber.
The broker keeps persistence and the subscriber a persistent session (MQTT 5 session expiry),
as an integrator's would: messages the broker accepted while the subscriber was still
reconnecting wait for it, so what the test sees is what the agent delivered. The agent holds
what it reads during the outage in its outbox and sends it when the broker is back
(redeliveries allowed: the contract is at least once, deduplicated on ``readout_id``).

Order is asserted by its own test, with outages in quick succession. paho calls
``on_connect`` before its resend loop, so the publisher sends no new row after a reconnect
until what was in flight at the disconnect has been acknowledged (the mosquitto log,
``log_type all``, shows resends (d1) before new PUBLISHes (d0)).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
WAIT_S = 60.0


@dataclass
class Outages:
    truth: list[dict[str, Any]]
    payloads: list[dict[str, Any]]
    counts: dict[str, int]
    logged: list[str]
    read_while_down: int


def _run_outages(tmp_path: Path, make_broker, make_subscriber, *, sessions: int, outages: int,
                 delivered_before: int, read_during: int, seed: int,
                 broker_config: str = "") -> Outages:
    broker = make_broker(persistence=True, extra_config=broker_config)
    subscriber = make_subscriber(broker, [f"{BASE}/readout", f"{BASE}/rejected"],
                                 persistent=True, client_id="fault-broker-restart")
    sim = SimulatorProcess(tmp_path, "serial", "--seed", str(seed), "--sessions", str(sessions),
                           "--interval-s", "0.1", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "2000", "--linger")
    # A short reconnect cap keeps the test short; the backoff itself is the publisher's.
    agent = AgentProcess(tmp_path, "--serial", sim.port, "--broker", broker.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(tmp_path / "state"),
                         env={"CBS_MQTT__RECONNECT_MAX_S": "2"})
    read_while_down = 0
    try:
        for outage in range(outages):
            before = len(first_deliveries(subscriber.snapshot())[0])
            subscriber.wait_for(lambda ms, n=before: len(first_deliveries(ms)[0])
                                >= n + delivered_before, WAIT_S,
                                what=f"readouts before outage {outage + 1}")
            broker.stop()
            logged = len(agent.logged_readout_ids())
            wait_until(lambda n=logged: len(agent.logged_readout_ids()) >= n + read_during,
                       WAIT_S, f"{read_during} keys read while the broker is down")
            read_while_down += len(agent.logged_readout_ids()) - logged
            broker.start()
        wait_until(lambda: len(sim.truth()) >= sessions, WAIT_S, "every session played")
        subscriber.wait_for(lambda ms: len(first_deliveries(ms)[0]) >= sessions, WAIT_S,
                            what=f"{sessions} readouts")
    except AssertionError:
        print(f"--- agent log ---\n{agent.tail(60)}\n--- simulator log ---\n{sim.tail()}\n"
              f"--- broker log ---\n{broker.log_text()[-3000:]}")
        raise
    finally:
        agent.stop()
        sim.stop()
    payloads, counts = first_deliveries(subscriber.snapshot())  # same id -> same bytes
    return Outages(sim.truth(), payloads, counts, agent.logged_readout_ids(), read_while_down)


def test_broker_restarts_lose_nothing(tmp_path: Path, make_broker, make_subscriber) -> None:
    run = _run_outages(tmp_path, make_broker, make_subscriber, sessions=45, outages=2,
                       delivered_before=5, read_during=8, seed=31)
    truth, payloads = run.truth, run.payloads
    assert len(truth) == 45 and not any(r["disturbed"] for r in truth)
    assert len(payloads) == len(truth), "a session arrived twice under different ids, or extra"
    by_key = {session_key(r): r for r in truth}
    assert len(by_key) == len(truth)
    for payload in payloads:  # every one exactly as read, none missing (counted above)
        assert "readout_id" in payload
        assert_readout_matches(by_key[readout_key(payload)], payload)
    assert {readout_key(p) for p in payloads} == set(by_key)
    assert set(run.logged) == {p["readout_id"] for p in payloads}
    print(f"\nbroker stopped x2: sessions sent {len(truth)}, {run.read_while_down} read while "
          f"it was down, delivered {len(payloads)}, duplicates "
          f"{sum(run.counts.values()) - len(run.counts)}, lost 0; order "
          f"{'kept' if _arrival(run) == [r['n'] for r in truth] else 'NOT kept'}")


def test_broker_restarts_keep_reading_order(tmp_path: Path, make_broker, make_subscriber) -> None:
    # Five short outages, each as soon as the agent is back: rows in flight at every stop.
    # The broker logs every PUBLISH (d0: first send, d1: a resend) as evidence.
    run = _run_outages(tmp_path, make_broker, make_subscriber, sessions=60, outages=5,
                       delivered_before=1, read_during=2, seed=31, broker_config="log_type all")
    assert len(run.payloads) == len(run.truth) == 60
    assert _arrival(run) == [r["n"] for r in run.truth], "sessions in order of first arrival"


def _arrival(run: Outages) -> list[int | None]:
    """Ground-truth numbers of the sessions in order of first arrival."""
    numbers = {session_key(r): r["n"] for r in run.truth}
    return [numbers.get(readout_key(p)) for p in run.payloads]
