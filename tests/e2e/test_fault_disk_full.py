"""The state directory's disk fills up while keys are read, then space comes back; and the
agent starting on a read-only (or full) state directory.

Real failures, not mocks: the agent runs in a private mount namespace (``unshare -m``) whose
state directory is a small tmpfs; the test fills it (and frees it) from inside that namespace
with ``nsenter``. Nothing is mounted in the machine's own namespace. Skipped, with the reason,
where mounting is not permitted (not root, no unshare).

Why no "turns read-only while running" case: Linux refuses to remount a filesystem read-only
while a process holds files on it open for writing (EBUSY) — and the agent always holds its
SQLite files open — so that happens in the field only after an ext4 error
(``errors=remount-ro``), which a test cannot produce without a loop device. A read-only state
directory is therefore tested where it really occurs: at start-up, after a reboot.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
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

SITE, READER = "e2e", "diskfull"
BASE = f"cbs/v1/{SITE}/{READER}"
TMPFS_SIZE = "8m"
HELD_READOUTS = 4
WAIT_S = 60.0


def _require_private_mounts(directory: Path) -> None:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.skip("unshare/nsenter not installed: cannot give the agent a private tmpfs")
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "none",
                            str(directory)], check=False, capture_output=True, text=True,
                           timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"mounting a private tmpfs is not permitted here (needs root or "
                    f"CAP_SYS_ADMIN): {probe.stderr.strip()}")


def _tmpfs_prefix(state: Path, *options: str) -> list[str]:
    """Run the agent in a new mount namespace with ``state`` on a tmpfs; ``options`` are extra
    shell commands run before the agent (e.g. a remount)."""
    setup = " && ".join([f'mount -t tmpfs -o size={TMPFS_SIZE} none "$0"', *options,
                         'exec "$@"'])
    return ["unshare", "-m", "sh", "-c", setup, str(state)]


def _in_agent_namespace(agent: AgentProcess, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(agent.pid), "-m", "--", *command], check=False,
                          capture_output=True, text=True, timeout=60)


def _statuses(messages: list) -> list[dict[str, Any]]:
    return [s for s in (m.json() for m in messages) if s.get("state") == "online"]


def test_disk_full_holds_readouts_and_delivers_them_when_space_returns(
        tmp_path: Path, mosquitto: MosquittoBroker, make_subscriber) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _require_private_mounts(state)
    outcomes = make_subscriber(mosquitto, [f"{BASE}/readout", f"{BASE}/rejected"])
    status = make_subscriber(mosquitto, f"{BASE}/status")
    sim = SimulatorProcess(tmp_path, "serial", "--seed", "51", "--sessions", "0",
                           "--interval-s", "0.15", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "2000")
    agent = AgentProcess(tmp_path, "--serial", sim.port, "--broker", mosquitto.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(state),
                         env={"CBS_MQTT__STATUS_INTERVAL_S": "1"}, prefix=_tmpfs_prefix(state))
    pid = agent.pid
    filler = f"{state}/filler"
    try:
        outcomes.wait_for(lambda ms: len(first_deliveries(ms)[0]) >= 5, WAIT_S,
                          what="readouts before the disk fills")
        # Fill the disk from inside the agent's namespace (dd stops at ENOSPC).
        fill = _in_agent_namespace(agent, "dd", "if=/dev/zero", f"of={filler}", "bs=256k")
        assert "No space left" in fill.stderr, fill.stderr

        failing = status.wait_for(lambda ms: any(s["outbox"]["error"] for s in _statuses(ms)),
                                  WAIT_S, what="status: outbox.error")
        first_error = next(s for s in _statuses(failing) if s["outbox"]["error"])
        readouts_at_error = first_error["counters"]["readouts"]
        held = status.wait_for(
            lambda ms: any(s["outbox"]["error"] and s["counters"]["readouts"]
                           >= readouts_at_error + HELD_READOUTS for s in _statuses(ms)),
            WAIT_S, what=f"{HELD_READOUTS} more keys read while the disk is full")
        while_full = [s for s in _statuses(held) if s["outbox"]["error"]][-1]
        log_while_full = agent.log_text()

        assert _in_agent_namespace(agent, "rm", filler).returncode == 0  # space returns
        recovered = status.wait_for(
            lambda ms: (ss := _statuses(ms)) and ss[-1]["outbox"]["error"] is None
            and ss[-1]["outbox"]["depth"] == 0 and ss[-1]["counters"]["readouts"]
            >= while_full["counters"]["readouts"] + 3, WAIT_S,
            what="status: outbox writable and empty again, keys read")
        truth = sim.truth()
        outcomes.wait_for(lambda ms: len(first_deliveries(ms)[0]) >= len(truth), WAIT_S,
                          what=f"the {len(truth)} sessions played so far")
    except AssertionError:
        print(f"--- agent log ---\n{agent.tail(60)}\n--- simulator log ---\n{sim.tail()}")
        raise
    finally:
        agent.stop()
        sim.stop()

    # The error is clear, in the status and the log; the held readouts are counted.
    error = while_full["outbox"]["error"]
    assert f"{state}/outbox.sqlite3" in error and "disk is full" in error, error
    held_readouts = while_full["counters"]["readouts"] - readouts_at_error + 1
    # The status still says the outbox cannot commit: the last readout's two messages (readout
    # and vehicles/{vin}) are held and counted. Not necessarily every readout read since the
    # disk filled: the log starts over once the publisher checkpointed it, reusing its space,
    # so some commits succeed on a full disk (those readouts are stored and delivered).
    assert while_full["outbox"]["depth"] >= 2
    not_stored = log_while_full.count("(NOT STORED yet")
    assert 1 <= not_stored <= held_readouts + 1, (not_stored, held_readouts)
    assert "outbox cannot commit" in log_while_full and "database or disk is full" in log_while_full
    # No crash, no restart, no log flood (one line per new error text, not per retry).
    assert agent.pid == pid and agent.starts == 1
    log = agent.log_text()
    assert "Traceback" not in log
    # The error may clear and come back while the disk is still full (a checkpointed log
    # reuses its space, so a commit can succeed); each "cannot commit" line opens such an
    # episode or names a new error text, never a retry of the same one.
    failed = [line.split("outbox cannot commit: ", 1)[1].split(" (holding", 1)[0]
              for line in log.splitlines() if "outbox cannot commit: " in line]
    healed = log.count("outbox writable again")
    assert healed >= 1
    assert len(failed) <= healed + len(set(failed)), (len(failed), healed, set(failed))
    # An episode ends only at a commit and starts only at a readout's (or reminder's) commit:
    # there are no more of them than readouts read from the error until space returned.
    read_in_all = _statuses(recovered)[-1]["counters"]["readouts"] - readouts_at_error + 1
    assert healed <= read_in_all + 1, (healed, read_in_all)

    # Everything read, before, during and after, arrived in order, exactly as read.
    payloads, counts = first_deliveries(outcomes.snapshot())
    assert not any(r["disturbed"] for r in truth)
    for record, payload in zip(truth, payloads[:len(truth)], strict=True):
        assert record["expected"] == "readout" and "readout_id" in payload
        assert readout_key(payload) == session_key(record)
        assert_readout_matches(record, payload)
    assert set(agent.logged_readout_ids()) <= {p.get("readout_id") for p in payloads}
    duplicates = sum(counts.values()) - len(counts)
    print(f"\ndisk full: sessions sent {len(truth)}, {held_readouts} read while full (status depth "
          f"{while_full['outbox']['depth']}), delivered {len(payloads)}, duplicates "
          f"{duplicates} (most copies of one: {max(counts.values())}), lost 0; final status "
          f"depth {_statuses(recovered)[-1]['outbox']['depth']}")
    # Held messages may go out once more when they are finally stored, not again and again:
    # a readout sent while its commit ran goes out again once stored if that commit failed
    # (the disk can turn full and free again several times while the log is reused), and a
    # retry of held messages is never sent before its commit.
    assert max(counts.values()) <= 2, counts


@pytest.mark.parametrize("condition", ["read-only", "full"])
def test_agent_starting_on_an_unwritable_state_dir_runs_and_recovers(
        tmp_path: Path, mosquitto: MosquittoBroker, make_subscriber, condition: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _require_private_mounts(state)
    outcomes = make_subscriber(mosquitto, [f"{BASE}/readout", f"{BASE}/rejected"])
    status = make_subscriber(mosquitto, f"{BASE}/status")
    sim = SimulatorProcess(tmp_path, "serial", "--seed", "52", "--sessions", "6",
                           "--interval-s", "0.15", "--dwell-s", "0.02", "--baudrate", "0",
                           "--vehicles", "2000", "--linger")
    setup = ('mount -o remount,ro "$0"' if condition == "read-only"
             else '(dd if=/dev/zero of="$0/filler" bs=256k 2>/dev/null || true)')
    agent = AgentProcess(tmp_path, "--serial", sim.port, "--broker", mosquitto.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(state),
                         env={"CBS_MQTT__STATUS_INTERVAL_S": "1"},
                         prefix=_tmpfs_prefix(state, setup))
    try:
        wait_until(lambda: not agent.running()
                   or any(s["outbox"]["error"] for s in _statuses(status.snapshot())),
                   WAIT_S, "status: outbox.error")
        assert agent.running(), f"the agent exited:\n{agent.tail()}"
        wait_until(lambda: len(sim.truth()) >= 6, WAIT_S, "sessions played")
        status.wait_for(lambda ms: _statuses(ms)[-1]["counters"]["readouts"] >= 6, WAIT_S,
                        what="keys read while the state directory is unwritable")
        heal = (["mount", "-o", "remount,rw", str(state)] if condition == "read-only"
                else ["rm", f"{state}/filler"])
        assert _in_agent_namespace(agent, *heal).returncode == 0
        outcomes.wait_for(lambda ms: len(first_deliveries(ms)[0]) >= 6, WAIT_S,
                          what="the held readouts")
    finally:
        agent.stop()
        sim.stop()
    for record, payload in zip(sim.truth(), first_deliveries(outcomes.snapshot())[0], strict=True):
        assert_readout_matches(record, payload)
