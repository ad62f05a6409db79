"""A real site for integration tests: a serial key reader on a pseudo-terminal that the test
feeds, and the real agent (``python -m agent run``) reading it.

:class:`PtyKeyReader` is the hardware side of a USB serial key reader: the agent opens the
pty's slave like ``/dev/ttyUSB0``; the test "lays a key" by writing the reader's serial
frames (KEY_PRESENT, the session as CAN_FRAME frames, KEY_REMOVED) into the master. Sessions
come from the simulators' seeded fleet, so every read is a valid, distinct key.

:class:`AgentRun` runs ``python -m agent run`` with a clean ``CBS_*`` environment and its
log in the test's directory. Every wait is bounded.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from broker import die_with_parent

from protocols.encoder import encode_session
from protocols.key_session import KeySession
from protocols.serial_framing import FrameType, encode_can_frame, encode_frame
from simulators.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
BASE_DATE = date(2026, 11, 27)
CONNECT_TIMEOUT_S = 60.0
WRITE_TIMEOUT_S = 20.0


def fleet_sessions(seed: int, count: int, *, start: int = 0) -> list[KeySession]:
    """``count`` valid, distinct key reads of a reproducible fleet."""
    return list(Fleet(seed, BASE_DATE, edge_rate=0.0).sessions(count, start=start))


def key_bytes(session: KeySession) -> bytes:
    """What a serial reader sends for one key laid on it and lifted again."""
    frames = encode_session(session)
    return (encode_frame(FrameType.KEY_PRESENT) + b"".join(encode_can_frame(f) for f in frames)
            + encode_frame(FrameType.KEY_REMOVED))


class PtyKeyReader:
    """The reader's end of a pseudo-terminal (see the module docstring).

    No slave descriptor is kept here, so polling the master shows POLLHUP exactly while no
    process holds the slave: that is how :meth:`wait_connected` knows the agent opened it.
    """

    def __init__(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            attrs = termios.tcgetattr(slave)
            attrs[2] |= termios.CLOCAL
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            self.path = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master: int | None = master

    def _fd(self) -> int:
        if self._master is None:
            raise OSError("pty closed")
        return self._master

    def connected(self) -> bool:
        poller = select.poll()
        poller.register(self._fd(), select.POLLIN | select.POLLHUP)
        return not any(event & select.POLLHUP for _, event in poller.poll(0))

    def wait_connected(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.connected():
            if time.monotonic() > deadline:
                raise AssertionError(f"nobody opened {self.path} within {timeout_s} s")
            time.sleep(0.02)

    def drain(self) -> bytes:
        """What the agent wrote to the reader (PING, REREAD), non-blocking."""
        try:
            return os.read(self._fd(), 4096)
        except (BlockingIOError, OSError):
            return b""

    def write(self, data: bytes, timeout_s: float = WRITE_TIMEOUT_S) -> None:
        """Write all of ``data``, waiting (bounded) while the agent has not read the buffer."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout_s
        while view:
            self.drain()
            try:
                written = os.write(self._fd(), view)
            except BlockingIOError:
                written = 0
            view = view[written:]
            if view:
                if time.monotonic() > deadline:
                    raise AssertionError(f"agent did not read {self.path} within {timeout_s} s")
                select.select([], [self._fd()], [], 0.05)

    def lay_keys(self, sessions: Iterable[KeySession]) -> None:
        for session in sessions:
            self.write(key_bytes(session))

    def close(self) -> None:
        if self._master is not None:
            os.close(self._master)
            self._master = None


def clean_environment(**extra: str) -> dict[str, str]:
    """The test process's environment without ``CBS_*`` variables (they would configure the
    agent behind the test's back), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


class AgentRun:
    """``python -m agent run ARGS`` with its log at ``workdir/<name>.log``."""

    def __init__(self, workdir: Path, *args: str, name: str = "agent",
                 env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "agent", "run", *args],
                                            stdout=log, stderr=log, cwd=workdir,
                                            env=env if env is not None else clean_environment(),
                                            preexec_fn=die_with_parent)

    @classmethod
    def serial(cls, workdir: Path, reader: PtyKeyReader, *, site: str, name: str, broker_url: str,
               extra: Iterable[str] = (), env: dict[str, str] | None = None) -> AgentRun:
        """An agent for ``site``/``name`` on ``reader``, its state under ``workdir``."""
        return cls(workdir, "--serial", reader.path, "--site", site, "--reader", name,
                   "--broker", broker_url, "--state-dir", str(workdir / "state"), *extra,
                   name=f"agent-{site}-{name}", env=env)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait (SIGKILL if it hangs); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
