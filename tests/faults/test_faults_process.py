"""The reader is unplugged in the middle of a session; the agent is SIGKILLed every second.

* **Unplugged mid-session**: ``cbs-sim serial --unplug-mid-session 4`` cuts every fourth
  read in half, closes its pseudo-terminal (the agent's read fails with a hang-up) and opens a
  new one behind the same link. The cut session promises nothing (the truth marks it
  disturbed); every other one must arrive, exactly as sent.
* **SIGKILL every second**: the agent is killed one second after each start, over and over,
  while keys are read. The receipt criterion: every readout the agent logged as read, in any
  of its lives, arrives (the log line follows the outbox commit).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from broker import MosquittoBroker
from expectations import assert_readout_matches
from fault_rig import (
    FAST_AGENT_ENV,
    WAIT_S,
    FaultAgent,
    agent_args,
    outcome_topics,
    simulator,
    tally,
    wait_delivered,
)
from processes import first_deliveries, pair_in_order, wait_until

SESSIONS = 16
UNPLUG_EVERY = 4
KILLS = 60  # every second for a minute, as the audit asked
KILL_AFTER_S = 1.0


def test_reader_unplugged_mid_session(tmp_path: Path, mosquitto: MosquittoBroker,
                                      make_subscriber) -> None:
    started = time.monotonic()
    reader = "unplug"
    outcomes = make_subscriber(mosquitto, outcome_topics(reader))
    sim = simulator(tmp_path, 91, "--linger", "--unplug-mid-session", str(UNPLUG_EVERY),
                    sessions=SESSIONS)
    agent = FaultAgent(tmp_path, *agent_args(sim, mosquitto, reader, tmp_path / "state"),
                       env=FAST_AGENT_ENV)
    try:
        wait_until(lambda: len(sim.truth()) >= SESSIONS, WAIT_S, "every session played")
        truth = sim.truth()
        promised = [r for r in truth if not r["disturbed"]]
        outcomes.wait_for(lambda ms: len(pair_in_order(truth, first_deliveries(ms)[0]).pairs)
                          >= len(promised), WAIT_S, what="every undisturbed session")
        wait_delivered(outcomes, agent, "every readout logged as read")
    except AssertionError:
        print(f"--- agent log ---\n{agent.tail(60)}\n--- simulator log ---\n{sim.tail()}")
        raise
    finally:
        agent.stop()
        sim.stop()
    payloads, _ = first_deliveries(outcomes.snapshot())
    pairing = pair_in_order(truth, payloads)
    cut = [r for r in truth if r["disturbed"]]
    log = agent.log_text()
    result = tally("reader unplugged mid-session", f"cbs-sim --unplug-mid-session "
                   f"{UNPLUG_EVERY}: half a session, then a new pty", [log],
                   outcomes.snapshot(), started=started,
                   notes=f"{len(cut)} sessions cut; {log.count(' lost:')} reader losses")
    assert len(cut) == SESSIONS // UNPLUG_EVERY
    assert not pairing.missing(truth) and not pairing.unpaired and not pairing.late
    for index, record_index in pairing.pairs.items():
        record = truth[record_index]
        if record["expected"] == "readout" and not record["disturbed"]:
            assert_readout_matches(record, payloads[index])
    assert not result.lost and "Traceback" not in log
    assert log.count(" lost:") >= len(cut)  # each unplug noticed


def test_sigkill_every_second(tmp_path: Path, mosquitto: MosquittoBroker,
                              make_subscriber) -> None:
    started = time.monotonic()
    reader = "kill"
    rng = random.Random(int(os.environ.get("CBS_FAULT_SEED", "7")))
    outcomes = make_subscriber(mosquitto, outcome_topics(reader))
    sim = simulator(tmp_path, 92)
    agent = FaultAgent(tmp_path, *agent_args(sim, mosquitto, reader, tmp_path / "state"),
                       env=FAST_AGENT_ENV)
    try:
        for _ in range(KILLS):
            time.sleep(KILL_AFTER_S * rng.uniform(0.7, 1.3))
            agent.kill()
            agent.start()
        wait_until(lambda: len(agent.logged_readout_ids()) > 0, WAIT_S, "a readout in the log")
        time.sleep(2.0)  # the last life reads a little undisturbed
        wait_delivered(outcomes, agent, "every readout logged as read, in any life")
    except AssertionError:
        print(f"--- agent log ---\n{agent.tail(60)}")
        raise
    finally:
        agent.stop()
        sim.stop()
    log = agent.log_text()
    result = tally(f"SIGKILL every {KILL_AFTER_S:.0f} s, x{KILLS}",
                   "SIGKILL 0.7-1.3 s after each start, restarted at once", [log],
                   outcomes.snapshot(), started=started,
                   notes=f"{agent.starts} lives, {len(sim.truth())} sessions played")
    assert not result.lost
    assert "Traceback" not in log
