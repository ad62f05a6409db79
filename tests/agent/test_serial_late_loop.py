"""A loop that comes late to the serial port does not take its own delay for a silent reader.

Over a real pseudo-terminal (simulators/pty_port.py) with the agent's SerialKeyReader, the real
assembler, pipeline and SQLite outbox (the publisher is not started: nothing is sent). The
serial reader stamps frames when it reads them, so a loop busy for longer than the session
timeout (a batch of readouts at saturation) found a gap inside a session whose frames had all
been waiting in the port, and rejected it as ``timeout``; the key had to be read again. The
reader now says when a read's bytes were already waiting, and the assembler counts the
silence from then (``SessionAssembler.heard``). A reader that really goes quiet mid-session
is still timed out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.contract.topics import Topics
from agent.domain.forecast import ForecastSettings
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.pipeline import ReadoutPipeline
from agent.readers.serial_reader import SerialKeyReader
from agent.service import AgentService
from agent.store.outbox import Outbox
from protocols.encoder import encode_session
from protocols.serial_framing import FrameType, encode_can_frame, encode_frame
from protocols.session import SessionAssembler
from simulators.fleet import Fleet
from simulators.pty_port import PtyPort

TIMEOUT_S = 0.3


@pytest.fixture
def line(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = PtyPort()
    path = port.open()
    reader = SerialKeyReader(path)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    topics = Topics("cbs/v1", "S1", "desk1")
    service = AgentService(
        reader=reader, assembler=SessionAssembler(timeout_s=TIMEOUT_S),
        pipeline=ReadoutPipeline(site="S1", reader="desk1", transport="serial",
                                 forecast=ForecastSettings()),
        outbox=outbox, publisher=MqttPublisher(MqttSettings(), outbox, topics), topics=topics)
    session = next(iter(Fleet(5, None, vehicle_count=10).sessions(1)))
    frames = [encode_can_frame(f) for f in encode_session(session)]
    half = len(frames) // 2
    first = encode_frame(FrameType.KEY_PRESENT) + b"".join(frames[:half])
    rest = b"".join(frames[half:]) + encode_frame(FrameType.KEY_REMOVED)
    try:
        service.step(0.05)  # opens the port
        assert reader.connected
        yield port, service, first, rest
    finally:
        reader.close()
        outbox.close()
        port.close()


def _write(port: PtyPort, data: bytes) -> None:
    view = memoryview(data)
    while view:
        if port.wait_writable(1.0):
            view = view[port.write_some(view):]


def _step_until(service: AgentService, done, timeout_s: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        service.step(0.02)


def test_a_session_waiting_in_the_port_while_the_loop_was_away_is_accepted(line) -> None:  # type: ignore[no-untyped-def]
    port, service, first, rest = line
    _write(port, first)
    _step_until(service, lambda: service.assembler.in_session)
    assert service.assembler.in_session
    _write(port, rest)  # the reader sends the rest at once...
    time.sleep(2 * TIMEOUT_S)  # ...while the loop is busy elsewhere
    _step_until(service, lambda: service.readouts or service.rejected)
    assert (service.readouts, service.rejected) == (1, 0), service.rejections_by_reason


def test_a_reader_that_goes_quiet_mid_session_is_still_timed_out(line) -> None:  # type: ignore[no-untyped-def]
    port, service, first, rest = line
    _write(port, first)
    _step_until(service, lambda: service.assembler.in_session)
    assert service.assembler.in_session
    deadline = time.monotonic() + 2 * TIMEOUT_S
    while time.monotonic() < deadline:  # the loop reads and hears nothing
        service.step(0.02)
    assert service.rejections_by_reason == {"timeout": 1} and service.readouts == 0
    _write(port, rest)  # the rest, too late: stray frames, no readout
    _step_until(service, lambda: False, timeout_s=0.3)
    assert service.readouts == 0 and service.rejected == 1
