"""Real processes for end-to-end tests: the simulators and the agent, as an appliance runs them.

Every process logs to a file in the test's directory; on a failure the test prints the tail.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 20.0


class SimulatorProcess:
    """``cbs-sim serial|can`` on a pseudo-terminal; :attr:`port` is the path it printed."""

    def __init__(self, workdir: Path, kind: str, *args: str, name: str = "sim") -> None:
        self.workdir = workdir
        self.truth_path = workdir / f"{name}-truth.jsonl"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulators.cli", kind, "--truth", str(self.truth_path), *args],
            stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=workdir)
        assert self.process.stdout is not None
        self.port = self._read_line()

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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class AgentProcess:
    """``cbs-agent run`` with the given options; restartable; SIGTERM or SIGKILL."""

    def __init__(self, workdir: Path, *args: str, name: str = "agent",
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.log_path = workdir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> AgentProcess:
        log = self.log_path.open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "agent", "run", *self.args],
                                        stdout=log, stderr=log, cwd=self.workdir, env=self.env)
        log.close()
        return self

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


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
