"""The serial reader unplugged and plugged back, again and again: the agent notices, says so in
its status, reopens the port by itself and reads on without losing a session.

``cbs-sim serial --link PATH`` stands in for a USB reader with a stable udev name: on every
re-plug (``--reopen-every N``, and once more on SIGUSR1) it closes its pseudo-terminal — the
agent's read fails with a hang-up — and opens a new one behind the same link path. The agent
runs with ``--serial PATH`` and is never restarted.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from broker import MosquittoBroker
from expectations import assert_readout_matches
from processes import (
    AgentProcess,
    SimulatorProcess,
    first_deliveries,
    readout_key,
    session_key,
    wait_until,
)

SITE, READER = "e2e", "replug"
BASE = f"cbs/v1/{SITE}/{READER}"
SESSIONS = 24
REOPEN_EVERY = 6
WAIT_S = 60.0


def test_reader_unplugged_and_replugged(tmp_path: Path, mosquitto: MosquittoBroker,
                                        make_subscriber) -> None:
    outcomes = make_subscriber(mosquitto, [f"{BASE}/readout", f"{BASE}/rejected"])
    statuses = make_subscriber(mosquitto, f"{BASE}/status")
    link = tmp_path / "reader"
    sim = SimulatorProcess(tmp_path, "serial", "-v", "--seed", "41", "--sessions", str(SESSIONS),
                           "--interval-s", "0.1", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "2000", "--link", str(link),
                           "--reopen-every", str(REOPEN_EVERY), "--linger")
    agent = AgentProcess(tmp_path, "--serial", str(link), "--broker", mosquitto.url,
                         "--site", SITE, "--reader", READER,
                         "--state-dir", str(tmp_path / "state"))
    replugs = SESSIONS // REOPEN_EVERY - 1
    try:
        wait_until(lambda: len(sim.truth()) >= SESSIONS, WAIT_S, "every session played")
        sim.replug()  # one more, by signal, while lingering
        replugs += 1
        wait_until(lambda: sim.log_path.read_text().count("re-plugging") >= replugs, WAIT_S,
                   "the SIGUSR1 re-plug")
        outcomes.wait_for(lambda ms: len(first_deliveries(ms)[0]) >= SESSIONS, WAIT_S,
                          what=f"{SESSIONS} readouts")
        wait_until(lambda: agent.log_text().count(f"reader {link} connected") >= replugs + 1,
                   WAIT_S, "the agent to reopen the last port")
        statuses.wait_for(lambda ms: _reader_states(ms)[-1:] == [True], WAIT_S,
                          what="status: reader connected again")
    except AssertionError:
        print(f"--- agent log ---\n{agent.tail(60)}\n--- simulator log ---\n{sim.tail()}")
        raise
    finally:
        agent.stop()
        sim.stop()

    # Every session, in order, exactly as sent: none fell into a re-plug.
    truth = sim.truth()
    payloads, counts = first_deliveries(outcomes.snapshot())
    assert len(truth) == len(payloads) == SESSIONS
    for record, payload in zip(truth, payloads, strict=True):
        assert not record["disturbed"] and record["expected"] == "readout"
        assert readout_key(payload) == session_key(record)
        assert_readout_matches(record, payload)

    # Each re-plug was noticed (a hang-up) and healed by the agent itself.
    log = agent.log_text()
    assert log.count(f"reader {link} lost") == replugs
    assert log.count(f"reader {link} connected") == replugs + 1
    assert "Traceback" not in log
    # The status said so: connected, then not, then connected again.
    states = _reader_states(statuses.snapshot())
    transitions = [(a, b) for a, b in pairwise(states) if a != b]
    assert (True, False) in transitions and (False, True) in transitions, states
    assert states[-1] is True
    print(f"\nreader re-plugged x{replugs}: sessions sent {len(truth)}, delivered "
          f"{len(payloads)}, duplicates {sum(counts.values()) - len(counts)}, lost 0; status "
          f"showed {transitions.count((True, False))} disconnects and "
          f"{transitions.count((False, True))} reconnects")


def _reader_states(messages: list) -> list[bool]:
    """reader.connected of every online status, in arrival order."""
    states = []
    for message in messages:
        status = message.json()
        if status.get("state") == "online":
            states.append(status["reader"]["connected"])
    return states
