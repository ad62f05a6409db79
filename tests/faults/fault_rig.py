"""What every fault scenario needs: a simulated reader, an agent started the ways faults need
(through the SQLite shim, logging through a pipe, under a file-size limit, in a private mount
namespace), and the tally every scenario reports.

The tally (:class:`Tally`) counts readouts, never guesses:

* **read**: readout ids the agent logged as read (``readout <id>: VIN ...``; the log line
  comes after the outbox commit, or, while the outbox cannot commit, says the readout is held);
* **delivered**: those that reached the subscriber;
* **duplicated**: extra copies that arrived (same id, same bytes: allowed, at least once);
* **lost**: read and never delivered. Every lost id must be one the agent *named* in its log
  as undeliverable (refused by the broker, dropped, on damaged pages); any other is a failure.

Each scenario prints its tally and, when ``CBS_FAULT_REPORT`` names a file, appends it there
as a JSON line (docs/robustness.md's table is made from such a run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from broker import MosquittoBroker, die_with_parent
from processes import AgentProcess, SimulatorProcess, first_deliveries, wait_until

SITE = "faults"
WAIT_S = 60.0
SHIM = Path(__file__).resolve().parent / "sqlite_shim.py"
FAST_SIM = ("--interval-s", "0.15", "--dwell-s", "0.02", "--baudrate", "0", "--vehicles", "2000")
FAST_AGENT_ENV = {"CBS_MQTT__STATUS_INTERVAL_S": "1", "CBS_MQTT__RECONNECT_MAX_S": "1",
                  "CBS_MQTT__STOP_TIMEOUT_S": "2"}


def base(reader: str) -> str:
    return f"cbs/v1/{SITE}/{reader}"


def outcome_topics(reader: str) -> list[str]:
    return [f"{base(reader)}/readout", f"{base(reader)}/rejected"]


def simulator(workdir: Path, seed: int, *args: str, sessions: int = 0) -> SimulatorProcess:
    return SimulatorProcess(workdir, "serial", "--seed", str(seed), "--sessions", str(sessions),
                            *FAST_SIM, *args)


class FaultAgent(AgentProcess):
    """:class:`AgentProcess` that can run through :mod:`sqlite_shim` (``shim_flag``) and log
    through a pipe (``pipe_log``: a file-size limit on the agent must not cut its own log;
    a thread of the test copies the pipe to the log file)."""

    def __init__(self, workdir: Path, *args: str, shim_flag: Path | None = None,
                 pipe_log: bool = False, **kwargs: Any) -> None:
        self.shim_flag = shim_flag
        self.pipe_log = pipe_log
        self._copiers: list[threading.Thread] = []
        super().__init__(workdir, *args, **kwargs)

    def start(self) -> FaultAgent:
        command = ([sys.executable, str(SHIM), str(self.shim_flag), "run", *self.args]
                   if self.shim_flag is not None
                   else [sys.executable, "-m", "agent", "run", *self.args])
        if not self.pipe_log:
            log = self.log_path.open("a")
            self.process = subprocess.Popen([*self.prefix, *command], stdout=log, stderr=log,
                                            cwd=self.workdir, env=self.env,
                                            preexec_fn=die_with_parent)
            log.close()
        else:
            self.process = subprocess.Popen([*self.prefix, *command], stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, cwd=self.workdir,
                                            env=self.env, preexec_fn=die_with_parent)
            copier = threading.Thread(target=self._copy, args=(self.process.stdout,),
                                      daemon=True)
            copier.start()
            self._copiers.append(copier)
        self.starts += 1
        return self

    def _copy(self, pipe: Any) -> None:
        with self.log_path.open("ab") as log:
            for line in pipe:
                log.write(line)
                log.flush()

    def log_text(self) -> str:
        for copier in self._copiers:
            if not copier.is_alive():
                copier.join()
        return super().log_text()


def agent_args(sim: SimulatorProcess, broker: MosquittoBroker, reader: str,
               state: Path) -> tuple[str, ...]:
    return ("--serial", sim.port, "--broker", broker.url, "--site", SITE, "--reader", reader,
            "--state-dir", str(state))


def statuses(messages: Iterable[Any]) -> list[dict[str, Any]]:
    return [s for s in (m.json() for m in messages) if s.get("state") == "online"]


def readouts_read(status_messages: Iterable[Any]) -> int:
    ss = statuses(status_messages)
    return ss[-1]["counters"]["readouts"] if ss else 0


# -- private mounts -----------------------------------------------------------------------------


def private_mounts_allowed(directory: Path) -> str | None:
    """None when ``unshare -rm`` may mount a tmpfs here (a user and mount namespace: no root
    needed where the kernel allows unprivileged user namespaces), else why not."""
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "none",
                            str(directory)], check=False, capture_output=True, text=True,
                           timeout=10)
    if probe.returncode != 0:
        return f"unshare -rm cannot mount a tmpfs here: {probe.stderr.strip()}"
    return None


def tmpfs_prefix(state: Path, size: str, *setup: str) -> list[str]:
    """Run the agent in its own user and mount namespace with ``state`` on a ``size`` tmpfs;
    ``setup`` runs before the agent (e.g. a remount). The shell execs: the pid is the agent's.
    The test reaches the agent's view of ``state`` through ``/proc/PID/root``."""
    script = " && ".join([f'mount -t tmpfs -o size={size} none "$0"', *setup, 'exec "$@"'])
    return ["unshare", "-rm", "sh", "-c", script, str(state)]


def in_agent_view(agent: AgentProcess, path: Path) -> Path:
    """``path`` as the agent's mount namespace has it."""
    return Path(f"/proc/{agent.pid}/root") / path.relative_to("/")


def fill(directory: Path) -> None:
    """Write zeros into ``directory`` until the filesystem is full."""
    result = subprocess.run(["dd", "if=/dev/zero", f"of={directory / 'filler'}", "bs=256k"],
                            check=False, capture_output=True, text=True, timeout=60)
    assert "No space left" in result.stderr, result.stderr


def limit_file_size(pid: int, size: int | str) -> None:
    """``prlimit``: the agent may write no file beyond ``size`` bytes (0: no write at all;
    ``unlimited`` lifts it). Python ignores SIGXFSZ, so writes fail with EFBIG."""
    subprocess.run(["prlimit", "--pid", str(pid), f"--fsize={size}:unlimited"], check=True,
                   timeout=10)


# -- the tally ----------------------------------------------------------------------------------

_NAMED_UNDELIVERABLE = (
    re.compile(r"broker refused (\S+) on "),
    re.compile(r"dropped the oldest \((\S+) on "),
    re.compile(r"not delivered: (.*)$", re.MULTILINE),
    re.compile(r"may not have been delivered: (.*)$", re.MULTILINE),
)


def named_undeliverable(log: str) -> set[str]:
    """Readout ids the agent's log names as refused, dropped or not delivered."""
    named: set[str] = set()
    for pattern in _NAMED_UNDELIVERABLE:
        for match in pattern.finditer(log):
            named.update(part.strip() for part in match.group(1).split(",") if part.strip())
    return named


@dataclass
class Tally:
    scenario: str
    injected: str
    read: int
    delivered: int
    duplicated: int
    lost: list[str] = field(default_factory=list)
    lost_named: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: str = ""

    def line(self) -> str:
        lost = f"lost {len(self.lost)}"
        if self.lost:
            lost += f" (named by the agent: {len(self.lost_named)})"
        return (f"{self.scenario}: read {self.read}, delivered {self.delivered}, duplicated "
                f"{self.duplicated}, {lost}; {self.seconds:.0f} s"
                + (f"; {self.notes}" if self.notes else ""))

    def report(self) -> None:
        print(f"\nFAULT {self.line()}")
        target = os.environ.get("CBS_FAULT_REPORT")
        if target:
            with open(target, "a") as handle:
                handle.write(json.dumps(asdict(self)) + "\n")

    def assert_nothing_silently_lost(self) -> None:
        silent = sorted(set(self.lost) - set(self.lost_named))
        assert not silent, f"{self.scenario}: lost without a word: {silent}"


def tally(scenario: str, injected: str, logs: Sequence[str], messages: Iterable[Any], *,
          started: float, notes: str = "", report: bool = True) -> Tally:
    """Count what the agent's ``logs`` say it read against the outcome ``messages``."""
    from processes import READOUT_LOG_LINE
    text = "\n".join(logs)
    read = list(dict.fromkeys(READOUT_LOG_LINE.findall(text)))
    payloads, counts = first_deliveries(messages)
    arrived = {p.get("readout_id") for p in payloads}
    lost = [rid for rid in read if rid not in arrived]
    named = named_undeliverable(text)
    result = Tally(scenario, injected, len(read), len(read) - len(lost),
                   sum(counts.values()) - len(counts), lost, [rid for rid in lost if rid in named],
                   time.monotonic() - started, notes)
    if report:
        result.report()
    return result


def wait_read(status: Any, at_least: int, what: str, timeout_s: float = WAIT_S) -> None:
    status.wait_for(lambda ms: readouts_read(ms) >= at_least, timeout_s, what=what)


def wait_delivered(outcomes: Any, agent: AgentProcess, what: str,
                   timeout_s: float = WAIT_S) -> None:
    """Until every readout the agent logged as read has arrived."""
    def done(messages: list[Any]) -> bool:
        arrived = {p.get("readout_id") for p in first_deliveries(messages)[0]}
        return set(agent.logged_readout_ids()) <= arrived
    outcomes.wait_for(done, timeout_s, what=what)


__all__ = ["FaultAgent", "Tally", "WAIT_S", "agent_args", "fill", "in_agent_view",
           "limit_file_size", "outcome_topics", "private_mounts_allowed", "simulator",
           "statuses", "tally", "tmpfs_prefix", "wait_delivered", "wait_read", "wait_until"]
