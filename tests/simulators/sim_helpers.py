"""Helpers of the simulator tests: run ``cbs-sim`` as a real process and play the agent's
part with the reference decoder and assembler (the real agent lives in agent/, which the
simulators must not depend on).

Every wait is bounded; no test asserts on how long something took.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import serial
from broker import die_with_parent

from protocols.can_frame import CanFrame
from protocols.key_session_json import session_from_dict
from protocols.serial_framing import FrameType, SerialFrame, SerialFrameDecoder, decode_can_payload
from protocols.session import SessionAccepted, SessionAssembler, SessionEvent, SessionRejected

BASE_DATE = "2026-05-01"
WAIT_S = 30.0  # upper bound of any single wait; normally reached in well under a second


class SimProcess:
    """A ``python -m simulators.cli`` child with its stdout lines (pty paths)."""

    def __init__(self, args: Sequence[str], *, stderr_path: Path) -> None:
        self._stderr = open(stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.cli", *args], stdout=subprocess.PIPE,
            stderr=self._stderr, text=True, cwd=Path(__file__).resolve().parents[2],
            preexec_fn=die_with_parent)
        assert self.proc.stdout is not None
        self._stdout: IO[str] = self.proc.stdout

    def next_line(self, timeout_s: float = WAIT_S) -> str:
        ready, _, _ = select.select([self._stdout], [], [], timeout_s)
        if not ready:
            raise AssertionError(f"no stdout line within {timeout_s} s; stderr:\n{self.stderr()}")
        line = self._stdout.readline()
        if not line:
            raise AssertionError(f"simulator exited ({self.proc.poll()}); stderr:\n{self.stderr()}")
        return line.strip()

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def wait(self, timeout_s: float = WAIT_S) -> int:
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = WAIT_S) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self._stdout.close()
            self._stderr.close()


@dataclass
class AgentStub:
    """The agent's reading side, reduced to the reference decoder and assembler."""

    assembler: SessionAssembler = field(default_factory=SessionAssembler)
    decoder: SerialFrameDecoder = field(default_factory=SerialFrameDecoder)
    events: list[SessionEvent] = field(default_factory=list)
    serial_frames: list[SerialFrame] = field(default_factory=list)

    def feed_serial(self, data: bytes, now: float) -> None:
        for frame in self.decoder.feed(data, now):
            self.serial_frames.append(frame)
            if frame.frame_type == FrameType.CAN_FRAME:
                can = decode_can_payload(frame.payload, now)
                assert can is not None
                self.events += self.assembler.feed(can)
            elif frame.frame_type == FrameType.KEY_REMOVED:
                self.events += self.assembler.key_removed(now)
        self.events += self.assembler.poll(now)

    def feed_can(self, frame: CanFrame | None, now: float) -> None:
        if frame is not None:
            self.events += self.assembler.feed(frame)
        self.events += self.assembler.poll(now)

    def frames_of(self, frame_type: int) -> list[SerialFrame]:
        return [f for f in self.serial_frames if f.frame_type == frame_type]


def read_serial_until(port: serial.Serial, stub: AgentStub, done: Callable[[], bool],
                      timeout_s: float = WAIT_S, *, until_disconnect: bool = False) -> None:
    """Read the port into ``stub`` until ``done()`` (or, with ``until_disconnect``, until
    the simulator closes the pty); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout_s} s; "
                                 f"events so far: {stub.events}")
        try:
            data = port.read(4096)
        except serial.SerialException:
            if until_disconnect:
                return
            raise
        stub.feed_serial(data, time.monotonic())


def wait_for(condition: Callable[[], bool], timeout_s: float = WAIT_S, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout_s} s")
        time.sleep(step_s)


def assert_events_match_truth(events: Sequence[SessionEvent],
                              records: Sequence[dict[str, Any]]) -> None:
    """The agent stub's outcomes, in order, are exactly the ground truth's."""
    summary = [(type(e).__name__, getattr(e, "reason", None)) for e in events]
    assert len(events) == len(records), (summary, [(r["expected"], r["reason"]) for r in records])
    for event, record in zip(events, records, strict=True):
        assert not record["disturbed"], record
        expected_session = session_from_dict(record["session"])
        if record["expected"] == "readout":
            assert isinstance(event, SessionAccepted), (record, event)
            assert event.session == expected_session
        else:
            assert isinstance(event, SessionRejected), (record, event)
            assert event.reason == record["reason"], (record, event)
            assert event.key_id == record["key_id"]


def environment_without_hash_seed(seed: str) -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": seed}
