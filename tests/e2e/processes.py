"""Real processes for end-to-end tests: the simulators and the agent, as an appliance runs them.

Every process logs to a file in the test's directory; on a failure the test prints the tail.
Every wait is bounded.

The fault tests (tests/e2e/test_fault_*.py) and the soak (bench/soak.py) also use the helpers
at the end: what the agent's log says it read (:meth:`AgentProcess.logged_readout_ids`: the
agent logs a readout only after the outbox committed it), its resident memory
(:meth:`AgentProcess.rss_kib`), and matching delivered payloads to the simulator's ground truth
(:func:`session_key`, :func:`readout_key`, :func:`first_deliveries`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker import die_with_parent

START_TIMEOUT_S = 20.0
_STARTED: list[SimulatorProcess | AgentProcess] = []


def stop_all() -> None:
    """Stop every process these helpers started (the e2e conftest calls it after each test)."""
    while _STARTED:
        _STARTED.pop().stop()


class SimulatorProcess:
    """``cbs-sim serial|can`` on a pseudo-terminal; :attr:`port` is the path it printed."""

    def __init__(self, workdir: Path, kind: str, *args: str, name: str = "sim") -> None:
        self.workdir = workdir
        self.truth_path = workdir / f"{name}-truth.jsonl"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        # The agent opens a link in this test's directory, never /dev/pts/N itself: pty numbers
        # are reused, and a name that dies with the simulator cannot lead to another test's pty.
        link_args: tuple[str, ...] = ()
        if "--link" not in args:
            self.link: Path | None = workdir / f"{name}.tty"
            link_args = ("--link", str(self.link))
        else:
            self.link = Path(args[list(args).index("--link") + 1])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulators.cli", kind, "--truth", str(self.truth_path),
             *link_args, *args],
            stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=workdir,
            preexec_fn=die_with_parent)
        _STARTED.append(self)
        assert self.process.stdout is not None
        self.pty_path = self._read_line()
        self.port = str(self.link)

    def _read_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line:
            raise AssertionError(f"simulator printed no port; log:\n{self.tail()}")
        return line

    def next_port(self) -> str:
        """The path printed after a simulated unplug/replug."""
        return self._read_line()

    def truth(self) -> list[dict[str, Any]]:
        if not self.truth_path.exists():
            return []
        records = []
        for line in self.truth_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # the line being written
        return records

    def wait_exit(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def replug(self) -> None:
        """SIGUSR1: unplug and plug back at the next read boundary (a new pty; the ``--link``
        path follows it)."""
        self.process.send_signal(signal.SIGUSR1)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if not self._log.closed:
            self._log.close()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class AgentProcess:
    """``cbs-agent run`` with the given options; restartable; SIGTERM or SIGKILL.

    ``prefix`` runs the agent through a wrapper that ends by exec'ing its arguments, e.g.
    ``unshare -m sh -c '... && exec "$@"' sh`` for a private mount namespace; the wrapper must
    exec (not fork) so that :attr:`pid` is the agent's. Every start appends to one log file.
    """

    def __init__(self, workdir: Path, *args: str, name: str = "agent",
                 env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.prefix = list(prefix)
        self.log_path = workdir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        _STARTED.append(self)
        self.start()

    def start(self) -> AgentProcess:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "agent", "run", *self.args],
            stdout=log, stderr=log, cwd=self.workdir, env=self.env, preexec_fn=die_with_parent)
        log.close()
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self, timeout_s: float = 20.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.running():
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logged_readout_ids(self) -> list[str]:
        """The readout ids the agent logged as read, in log order, over all its starts. The
        agent logs a readout after the outbox committed it, so each must reach the broker."""
        return READOUT_LOG_LINE.findall(self.log_text())

    def rss_kib(self) -> int | None:
        """Resident memory (VmRSS) of the running agent in KiB; None when it is not running."""
        if not self.running():
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) if match else None


READOUT_LOG_LINE = re.compile(r"readout (\S+): VIN [A-Z0-9]{17}, \d+ km", re.MULTILINE)


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


# -- matching what arrived with the ground truth -------------------------------------------------


def session_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a played session's content: VIN, mileage, data date and key id (unique
    within a run when the fleet is large, e.g. ``--vehicles 2000``)."""
    session = record["session"]
    return (session["vin"], session["vehicle"]["mileage_km"], session["vehicle"]["data_date"],
            session["key_id"])


def readout_key(payload: dict[str, Any]) -> tuple[Any, ...]:
    """:func:`session_key` of the session a readout payload was decoded from."""
    return (payload["vehicle"]["vin"], payload["vehicle"]["mileage_km"],
            payload["vehicle"]["data_date"], payload["key"]["key_id"])


def message_id(payload: dict[str, Any]) -> str:
    return str(payload.get("readout_id") or payload.get("rejection_id"))


def first_deliveries(messages: Iterable[Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Outcome payloads (readouts and rejections) in order of first arrival, and how often each
    id arrived. Raises AssertionError when one id arrived with two different payloads."""
    first: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    ordered: list[dict[str, Any]] = []
    for message in messages:
        payload = json.loads(message.payload)
        ident = message_id(payload)
        counts[ident] = counts.get(ident, 0) + 1
        if ident in first:
            assert first[ident] == message.payload, f"{ident} redelivered with another payload"
            continue
        first[ident] = message.payload
        ordered.append(payload)
    return ordered, counts


def outcome_mismatch(record: dict[str, Any], payload: dict[str, Any], *,
                     exact: bool = True) -> str | None:
    """Why ``payload`` is not the outcome the ground-truth ``record`` promises; None when it
    is. ``exact`` compares every key-derived field (tests/e2e/expectations.py), else only
    :func:`session_key`. A session the agent heard only part of (``disturbed``) promises
    nothing: any rejection may come of it."""
    if record["disturbed"] and "rejection_id" in payload:
        return None
    if record["expected"] == "readout":
        if "readout_id" not in payload:
            return f"expected a readout, got a rejection ({payload.get('reason')})"
        if readout_key(payload) != session_key(record):
            return "another session's readout"
        if exact:
            from expectations import assert_readout_matches
            try:
                assert_readout_matches(record, payload)
            except AssertionError as exc:
                return f"readout differs: {exc}"
        return None
    if "rejection_id" not in payload:
        return f"expected a rejection ({record['reason']}), got a readout"
    if payload["reason"] != record["reason"]:
        return f"rejected for {payload['reason']}, expected {record['reason']}"
    return None


CAUSALITY_SLACK_S = 3.0  # an outcome may carry a time before its record's: the simulator
# writes a record after the quiet pause its outcome depends on (2 s), the agent's session
# timeout fires 0.5 s after the last frame


def outcome_time(payload: dict[str, Any]) -> float:
    """The agent's time of an outcome (``read_at`` / ``at``), epoch seconds."""
    from datetime import datetime
    return datetime.fromisoformat(payload.get("read_at") or payload["at"]).timestamp()


@dataclass
class Pairing:
    """How outcomes pair with ground-truth records (see :func:`pair_in_order`)."""

    pairs: dict[int, int]  # outcome index -> record index
    unpaired: list[tuple[int, str]]  # outcomes that are no record's, with why
    late: list[tuple[int, str]]  # outcomes paired with a record passed over before

    def missing(self, truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records that promise an outcome (not ``disturbed``) and got none."""
        paired = set(self.pairs.values())
        return [r for j, r in enumerate(truth) if j not in paired and not r["disturbed"]]


def pair_in_order(truth: list[dict[str, Any]], payloads: list[dict[str, Any]], *,
                  exact: bool = True, behind: int = 200) -> Pairing:
    """Pair outcomes (in arrival order, :func:`first_deliveries`) with ground-truth records.

    The agent keeps reading order, so each outcome is paired with the *next* record it is the
    outcome of (a large fleet repeats a session's content, so order and content both count; a
    record is used once). The search ahead stops where records begin after the outcome's own
    time (plus :data:`CAUSALITY_SLACK_S`): no agent reports a session before it was played.
    An outcome that pairs with nothing ahead may belong to a record passed over within the
    last ``behind``: it arrived out of reading order (``late``). The rest are ``unpaired``."""
    pairing = Pairing({}, [], [])
    used: set[int] = set()
    position = 0
    for index, payload in enumerate(payloads):
        when = outcome_time(payload)
        found = None
        for j in range(position, len(truth)):
            if truth[j]["at"] - CAUSALITY_SLACK_S > when:
                break
            if outcome_mismatch(truth[j], payload, exact=exact) is None:
                found = j
                break
        if found is not None:
            pairing.pairs[index] = found
            used.add(found)
            position = found + 1
            continue
        for j in range(position - 1, max(-1, position - 1 - behind), -1):
            if j not in used and outcome_mismatch(truth[j], payload, exact=exact) is None:
                pairing.pairs[index] = j
                used.add(j)
                why = (f"out of reading order: session {truth[j]['n']} arrived after session "
                       f"{truth[position - 1]['n']}")
                pairing.late.append((index, f"{message_id(payload)}: {why}"))
                break
        else:
            why = (outcome_mismatch(truth[position], payload, exact=exact)
                   if position < len(truth) else "no session left")
            pairing.unpaired.append((index, f"{message_id(payload)}: {why}"))
    return pairing
