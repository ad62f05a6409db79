"""The state directory fails: full or read-only, while the agent runs and when it starts.

How each is injected (real filesystems where Linux allows it):

* **full, running**: a 4 MiB tmpfs in the agent's own user and mount namespace
  (``unshare -rm``, no root needed where user namespaces are allowed), filled through
  ``/proc/PID/root``; and, everywhere, a file-size limit set on the running agent
  (``prlimit --fsize``: EFBIG on every write, as on a full disk), lifted again;
* **read-only, running**: the SQLite shim (tests/faults/sqlite_shim.py): every write fails
  with SQLITE_READONLY while a flag file exists. Linux refuses to remount a filesystem
  read-only under a process that holds files open for writing (EBUSY);
* **read-only / full at start**: the tmpfs remounted ``ro`` (or filled) before the agent
  starts, or a file-size limit of 0 from the start; then healed.

The promise: the agent keeps reading, holds what it cannot store (``status.outbox.error``),
and delivers everything once the disk takes writes again; nothing read is lost.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from broker import MosquittoBroker
from fault_rig import (
    FAST_AGENT_ENV,
    FaultAgent,
    agent_args,
    fill,
    in_agent_view,
    limit_file_size,
    outcome_topics,
    private_mounts_allowed,
    simulator,
    statuses,
    tally,
    tmpfs_prefix,
    wait_delivered,
    wait_read,
    wait_until,
)

HELD = 3


def _require(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} (util-linux) is not installed")


def _error_shown(status, *, timeout_s: float = 30.0) -> dict:
    messages = status.wait_for(lambda ms: any(s["outbox"]["error"] for s in statuses(ms)),
                               timeout_s, what="status: outbox.error")
    return next(s for s in statuses(messages) if s["outbox"]["error"])


@pytest.mark.parametrize("how", ["tmpfs", "fsize", "readonly-shim"])
def test_state_fails_while_running_and_heals(how: str, tmp_path: Path,
                                             mosquitto: MosquittoBroker, make_subscriber) -> None:
    started = time.monotonic()
    reader = f"run-{how}"
    state = tmp_path / "state"
    state.mkdir()
    prefix: list[str] = []
    flag = tmp_path / "readonly.flag"
    if how == "tmpfs":
        if (why := private_mounts_allowed(state)) is not None:
            pytest.skip(why)
        prefix = tmpfs_prefix(state, "4m")
    if how == "fsize":
        _require("prlimit")
    outcomes = make_subscriber(mosquitto, outcome_topics(reader))
    status = make_subscriber(mosquitto, f"cbs/v1/faults/{reader}/status")
    sim = simulator(tmp_path, 61)
    agent = FaultAgent(tmp_path, *agent_args(sim, mosquitto, reader, state), env=FAST_AGENT_ENV,
                       prefix=prefix, pipe_log=how == "fsize",
                       shim_flag=flag if how == "readonly-shim" else None)
    try:
        wait_read(status, 3, "readouts before the fault")
        if how == "tmpfs":
            fill(in_agent_view(agent, state))
        elif how == "fsize":
            limit_file_size(agent.pid, 0)
        else:
            flag.write_text("readonly\n")
        first = _error_shown(status)
        wait_read(status, first["counters"]["readouts"] + HELD, f"{HELD} keys read meanwhile")
        if how == "tmpfs":
            (in_agent_view(agent, state) / "filler").unlink()
        elif how == "fsize":
            limit_file_size(agent.pid, "unlimited")
        else:
            flag.unlink()
        status.wait_for(lambda ms: (ss := statuses(ms)) and ss[-1]["outbox"]["error"] is None
                        and ss[-1]["outbox"]["depth"] == 0, 30, what="the outbox healed")
        wait_read(status, first["counters"]["readouts"] + HELD + 2, "keys read after healing")
        wait_delivered(outcomes, agent, "every readout logged as read")
    except AssertionError:
        print(f"--- agent log ---\n{agent.tail(60)}")
        raise
    finally:
        agent.stop()
        sim.stop()
    log = agent.log_text()
    result = tally(f"state {how} while running", {
        "tmpfs": "4 MiB tmpfs (unshare -rm) filled, then freed",
        "fsize": "prlimit --fsize=0 on the running agent, then unlimited",
        "readonly-shim": "SQLite shim: SQLITE_READONLY on every write, then not"}[how],
        [log], outcomes.snapshot(), started=started,
        notes=f"status said: ...{first['outbox']['error'][-60:]}")
    assert result.read >= HELD + 5 and not result.lost
    assert agent.starts == 1 and agent.running() is False and "Traceback" not in log
    assert "outbox writable again" in log
    assert result.duplicated <= result.read  # a held readout may go out twice, not more


@pytest.mark.parametrize("how", ["read-only-tmpfs", "full-tmpfs", "fsize"])
def test_state_unwritable_at_start_then_healed(how: str, tmp_path: Path,
                                               mosquitto: MosquittoBroker,
                                               make_subscriber) -> None:
    started = time.monotonic()
    reader = f"start-{how}"
    state = tmp_path / "state"
    state.mkdir()
    prefix: list[str] = []
    if how.endswith("tmpfs"):
        if (why := private_mounts_allowed(state)) is not None:
            pytest.skip(why)
        if how.startswith("read-only"):
            _require("nsenter")
        setup = ('mount -o remount,ro "$0"' if how.startswith("read-only")
                 else '(dd if=/dev/zero of="$0/filler" bs=256k 2>/dev/null || true)')
        prefix = tmpfs_prefix(state, "4m", setup)
    else:
        _require("prlimit")
        prefix = ["prlimit", "--fsize=0:unlimited", "--"]
    outcomes = make_subscriber(mosquitto, outcome_topics(reader))
    status = make_subscriber(mosquitto, f"cbs/v1/faults/{reader}/status")
    sim = simulator(tmp_path, 62, "--linger", sessions=5)
    agent = FaultAgent(tmp_path, *agent_args(sim, mosquitto, reader, state), env=FAST_AGENT_ENV,
                       prefix=prefix, pipe_log=True)
    try:
        _error_shown(status)
        assert agent.running(), agent.tail()
        wait_read(status, 5, "keys read while the state directory is unwritable")
        if how == "read-only-tmpfs":
            subprocess.run(["nsenter", "-t", str(agent.pid), "-U", "-m", "--preserve-credentials",
                            "mount", "-o", "remount,rw", str(state)], check=True, timeout=30)
        elif how == "full-tmpfs":
            (in_agent_view(agent, state) / "filler").unlink()
        else:
            limit_file_size(agent.pid, "unlimited")
        wait_delivered(outcomes, agent, "the held readouts")
    except (AssertionError, subprocess.CalledProcessError):
        print(f"--- agent log ---\n{agent.tail(60)}")
        raise
    finally:
        agent.stop()
        sim.stop()
    log = agent.log_text()
    result = tally(f"state {how} at start", {
        "read-only-tmpfs": "tmpfs remounted ro before the agent starts, then rw",
        "full-tmpfs": "tmpfs filled before the agent starts, then freed",
        "fsize": "prlimit --fsize=0 from the start, then unlimited"}[how],
        [log], outcomes.snapshot(), started=started)
    assert result.read == 5 and not result.lost and "Traceback" not in log


def test_clean_stop_while_the_outbox_cannot_commit(tmp_path: Path, mosquitto: MosquittoBroker,
                                                   make_subscriber) -> None:
    started = time.monotonic()
    reader = "stop-held"
    flag = tmp_path / "full.flag"
    outcomes = make_subscriber(mosquitto, outcome_topics(reader))
    status = make_subscriber(mosquitto, f"cbs/v1/faults/{reader}/status")
    sim = simulator(tmp_path, 63, "--linger", sessions=6)
    flag.write_text("full\n")
    agent = FaultAgent(tmp_path, *agent_args(sim, mosquitto, reader, tmp_path / "state"),
                       env=FAST_AGENT_ENV, shim_flag=flag)
    try:
        wait_read(status, 4, "keys read while nothing can be stored")
        wait_until(lambda: len(agent.logged_readout_ids()) >= 4, 30, "readouts logged")
        agent.terminate()
        time.sleep(1.0)  # what the broker had, the subscriber has
    finally:
        agent.stop()
        sim.stop()
    result = tally("clean stop with readouts held", "SQLite shim: SQLITE_FULL on every write; "
                   "SIGTERM", [agent.log_text()], outcomes.snapshot(), started=started)
    assert result.read >= 4
    result.assert_nothing_silently_lost()
