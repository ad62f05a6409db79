"""The agent killed with SIGKILL at random moments while keys are read (a power cut, an OOM
kill): after each restart it carries on, and nothing it had read is lost.

Real processes: ``cbs-sim serial`` plays key reads without end on a pseudo-terminal behind a
stable ``--link`` path (as udev names a USB reader); ``cbs-agent run`` reads that path and is
killed and restarted over and over; a private mosquitto and a subscriber take what arrives.

Which sessions must arrive (the honest criterion)
    "A readout that was read completely is delivered at least once." A session counts as
    *read* once the agent has committed it to its outbox, and the agent logs
    ``readout <id>: VIN ...`` only after that commit. So:

    1. every readout id the agent logged, in any of its lives, arrives at least once;
    2. every session played while an agent was up and that agent was then given all the time
       it needed (the *idle* kills below wait, bounded, until everything played to it has
       arrived, and only then kill) arrives — the agent neither skipped nor dropped one.

    A session cut by a kill, or played completely but still unread in the pty or in the
    agent's memory when the kill came, was never read: it may be lost (the reader has no
    acknowledgement to replay it). The simulator marks sessions the agent was not listening to
    for (part of) as ``disturbed``.

Also: a redelivered readout has the same ``readout_id`` and the same bytes; no session arrives
under two ids; every readout carries exactly the data the simulator sent; first arrivals come
in reading order.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from broker import MosquittoBroker
from processes import (
    AgentProcess,
    SimulatorProcess,
    first_deliveries,
    pair_in_order,
    wait_until,
)

SITE, READER = "e2e", "killed"
BASE = f"cbs/v1/{SITE}/{READER}"
KILLS = 22
IDLE_EVERY = 5  # every 5th life ends with an idle kill (criterion 2)
BLIND_EVERY = 7  # every 7th life is killed blind, maybe during start-up
CONNECTED = "reader {} connected"
WAIT_S = 30.0


def test_sigkill_at_random_moments_loses_no_read_readout(tmp_path: Path, mosquitto: MosquittoBroker,
                                                         make_subscriber) -> None:
    seed = int(os.environ.get("CBS_FAULT_SEED", "20260"))
    rng = random.Random(seed)
    subscriber = make_subscriber(mosquitto, [f"{BASE}/readout", f"{BASE}/rejected"])
    link = tmp_path / "reader"
    sim = SimulatorProcess(tmp_path, "serial", "--seed", "21", "--sessions", "0",
                           "--interval-s", "0.05", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "2000", "--link", str(link))
    agent = AgentProcess(tmp_path, "--serial", str(link), "--broker", mosquitto.url,
                         "--site", SITE, "--reader", READER,
                         "--state-dir", str(tmp_path / "state"))
    connected_line = CONNECTED.format(link)
    kills = idle_kills = blind_kills = 0
    idle_checked: set[int] = set()

    def delivered_sessions() -> set[int]:
        """Ground-truth ``n`` of every session whose outcome arrived (paired in order)."""
        truth = sim.truth()
        payloads, _ = first_deliveries(subscriber.snapshot())
        pairing = pair_in_order(truth, payloads, exact=False)
        return {truth[j]["n"] for j in pairing.pairs.values()}

    def connections() -> int:
        return agent.log_text().count(connected_line)

    opened_before, started_at = 0, time.time()
    try:
        for life in range(1, KILLS + 1):
            idle = life % IDLE_EVERY == 0
            blind = not idle and life % BLIND_EVERY == 0
            if blind:  # anywhere in the life, start-up (imports, outbox open) included
                time.sleep(rng.uniform(0.05, 1.5))
                blind_kills += 1
            else:
                wait_until(lambda before=opened_before: connections() > before, WAIT_S,
                           f"life {life}: the agent to open the reader")
            if idle:
                # Sessions played wholly to this life; the first one is left out: it may have
                # started while pyserial's open was still flushing the input (a race no agent
                # can close), everything after it is the agent's to read.
                wait_until(lambda since=started_at: len(_played_to(sim.truth(), since)) >= 4, WAIT_S,
                           f"life {life}: sessions played")
                played = {r["n"] for r in _played_to(sim.truth(), started_at)[1:]}
                wait_until(lambda want=played: want <= delivered_sessions(), WAIT_S,
                           f"life {life}: the {len(played)} sessions read while idle to arrive")
                idle_checked |= played
                idle_kills += 1
            elif not blind:
                time.sleep(rng.uniform(0.0, 1.2))
            assert agent.running(), f"life {life}: the agent died by itself\n{agent.tail()}"
            agent.kill()
            kills += 1
            opened_before, started_at = connections(), time.time()
            agent.start()

        # The last life: it must deliver what the others left in the outbox and read on.
        wait_until(lambda: connections() > opened_before, WAIT_S,
                   "the last life to open the reader")
        wait_until(lambda: len(_played_to(sim.truth(), started_at)) >= 3, WAIT_S,
                   "sessions played to the last life")
        logged = set(agent.logged_readout_ids())
        wait_until(lambda: logged <= _ids(subscriber), WAIT_S,
                   "every logged readout to arrive")
        sim.stop()
        assert agent.terminate() == 0
    except AssertionError:
        print(f"seed {seed}\n--- agent log ---\n{agent.tail(60)}\n--- simulator log ---\n"
              f"{sim.tail()}")
        raise
    finally:
        agent.stop()
        sim.stop()

    truth = sim.truth()
    messages = subscriber.snapshot()
    payloads, counts = first_deliveries(messages)  # asserts: same id, same bytes
    readouts = [p for p in payloads if "readout_id" in p]
    logged = agent.logged_readout_ids()

    lost = set(logged) - {p["readout_id"] for p in readouts}
    assert not lost, f"{len(lost)} readouts the agent logged as read never arrived: {sorted(lost)}"
    # Each outcome is the next session's in reading order, with exactly the data read: a
    # session delivered under a second id would pair with nothing, one out of order is late.
    pairing = pair_in_order(truth, payloads)
    assert not pairing.unpaired, f"outcomes that are no session's: {pairing.unpaired[:5]}"
    assert not pairing.late, f"outcomes out of reading order: {pairing.late[:5]}"
    assert idle_checked <= {truth[j]["n"] for j in pairing.pairs.values()}

    assert kills >= 20
    undisturbed = [r for r in truth if not r["disturbed"]]
    print(f"\nSIGKILL x{kills} ({idle_kills} idle, {blind_kills} blind, seed {seed}): "
          f"sessions played {len(truth)} ({len(undisturbed)} undisturbed), read (logged) "
          f"{len(set(logged))}, delivered {len(readouts)} readouts + "
          f"{len(payloads) - len(readouts)} rejections, duplicates "
          f"{sum(counts.values()) - len(counts)}, checked idle {len(idle_checked)}, lost 0")


def _played_to(truth: list[dict[str, Any]], since: float) -> list[dict[str, Any]]:
    """Sessions written whole to the port while an agent that started at ``since`` held it."""
    return [r for r in truth if r["at"] > since and not r["disturbed"]]


def _ids(subscriber: Any) -> set[str]:
    payloads, _ = first_deliveries(subscriber.snapshot())
    return {p["readout_id"] for p in payloads if "readout_id" in p}
