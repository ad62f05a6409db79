"""The serial reader simulator as a process on a real pseudo-terminal, opened with pyserial."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import serial
from sim_helpers import (
    BASE_DATE,
    AgentStub,
    SimProcess,
    assert_events_match_truth,
    read_serial_until,
    wait_for,
)

from protocols.key_session_json import session_from_dict
from protocols.serial_framing import FrameType, SerialFrameDecoder, decode_hello, encode_frame
from protocols.session import SessionAccepted
from simulators.truth import read_truth


def _open(path: str | Path) -> serial.Serial:
    return serial.Serial(str(path), 115200, timeout=0.05)


def test_ping_hello_session_reread_and_clean_stop(tmp_path: Path) -> None:
    truth, capture, link = tmp_path / "truth.jsonl", tmp_path / "capture.bin", tmp_path / "reader"
    sim = SimProcess(["serial", "--seed", "3", "--base-date", BASE_DATE, "--sessions", "1",
                      "--dwell-s", "60", "--truth", str(truth), "--capture", str(capture),
                      "--link", str(link), "--firmware", "test-fw 2.1"],
                     stderr_path=tmp_path / "stderr.txt")
    try:
        path = sim.next_line()
        assert path.startswith("/dev/") and os.readlink(link) == path
        stub = AgentStub()
        with _open(link) as port:
            port.write(encode_frame(FrameType.PING))
            read_serial_until(port, stub, lambda: bool(stub.frames_of(FrameType.HELLO)))
            assert decode_hello(stub.frames_of(FrameType.HELLO)[0].payload) == (1, "test-fw 2.1")
            read_serial_until(port, stub, lambda: len(stub.events) == 1)
            assert stub.frames_of(FrameType.KEY_PRESENT)
            first = stub.events[0]
            assert isinstance(first, SessionAccepted)

            port.write(encode_frame(FrameType.REREAD))
            read_serial_until(port, stub, lambda: len(stub.events) == 2)
            second = stub.events[1]
            assert isinstance(second, SessionAccepted)
            assert second.session == replace(first.session, session_seq=first.session.session_seq + 1)
            assert not stub.frames_of(FrameType.KEY_REMOVED)  # the key is still on the reader

            # a record follows its session's last byte: the agent may be quicker than it
            wait_for(lambda: len(read_truth(truth)) >= 2)
            records = read_truth(truth)
            assert [(r["n"], r["seq"], r["expected"], r["reread"]) for r in records] == [
                (1, 0, "readout", False), (2, 1, "readout", True)]
            assert session_from_dict(records[0]["session"]) == first.session
            assert session_from_dict(records[1]["session"]) == second.session
            assert records[0]["key_id"] == first.session.key_id
            assert records[0]["vin"] == first.session.vin
        assert sim.stop() == 0, sim.stderr()
    finally:
        sim.stop()
    assert not link.exists()
    # the capture is the byte stream as sent: it decodes to the frames the agent saw
    captured = SerialFrameDecoder().feed(capture.read_bytes())
    assert [(f.frame_type, f.payload) for f in captured] == [
        (f.frame_type, f.payload) for f in stub.serial_frames]


def test_faulted_reads_match_the_ground_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    sim = SimProcess(["serial", "--seed", "9", "--base-date", BASE_DATE, "--sessions", "10",
                      "--interval-s", "0", "--dwell-s", "0", "--baudrate", "0",
                      "--fault-rate", "0.06", "--quiet-s", "1.0", "--truth", str(truth)],
                     stderr_path=tmp_path / "stderr.txt")
    try:
        path = sim.next_line()
        stub = AgentStub()
        with _open(path) as port:
            # without --linger the simulator drains (waits until everything was read), then
            # exits and the pty goes away
            read_serial_until(port, stub, lambda: False, until_disconnect=True)
        records = read_truth(truth)
        assert len(records) >= 10
        assert any(r["faults"] for r in records) and any(r["expected"] == "rejected" for r in records)
        assert_events_match_truth(stub.events, records)
        assert sim.wait() == 0, sim.stderr()  # --sessions without --linger: drains, then exits
    finally:
        sim.stop()


def test_replug_gives_a_new_pty_and_restarts_the_counter(tmp_path: Path) -> None:
    truth, link = tmp_path / "truth.jsonl", tmp_path / "reader"
    sim = SimProcess(["serial", "--seed", "4", "--base-date", BASE_DATE, "--sessions", "2",
                      "--reopen-every", "1", "--interval-s", "0", "--dwell-s", "0",
                      "--baudrate", "0", "--link", str(link), "--truth", str(truth), "--linger"],
                     stderr_path=tmp_path / "stderr.txt")
    try:
        first_path = sim.next_line()
        assert os.readlink(link) == first_path
        stub = AgentStub()
        with _open(link) as port:
            read_serial_until(port, stub, lambda: bool(stub.frames_of(FrameType.KEY_REMOVED)))
        second_path = sim.next_line()  # the kernel may well hand out the same pts number
        assert second_path.startswith("/dev/") and os.readlink(link) == second_path
        second = AgentStub()
        with _open(link) as port:
            read_serial_until(port, second, lambda: len(second.events) == 1)
            assert second.frames_of(FrameType.HELLO)  # the re-plugged reader powers up
        sessions = [e.session for e in stub.events + second.events if isinstance(e, SessionAccepted)]
        assert [s.session_seq for s in sessions] == [0, 0]
        wait_for(lambda: len(read_truth(truth)) >= 2)
        assert [r["seq"] for r in read_truth(truth)] == [0, 0]
        assert sim.stop() == 0
    finally:
        sim.stop()
