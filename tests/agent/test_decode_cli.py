"""`cbs-agent decode`: captures in, the payloads the agent would publish out, in capture order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spec_example import END_EPOCH_S, serial_bytes, spec_frames, write_candump

from protocols.can_frame import CanFrame


def decode(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "decode", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_candump_capture_with_timestamps(tmp_path: Path) -> None:
    frames = spec_frames()
    other = [CanFrame(0x123, b"\x01\x02", frames[0].timestamp - 0.5)]
    capture = write_candump(tmp_path / "desk.log", other + frames)
    done = decode("--site", "S1", "--reader", "desk1", str(capture), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (readout,) = lines(done)
    assert readout["schema"] == "cbs.readout/1"
    assert readout["read_at"] == "2026-11-27T09:15:02.123Z"
    assert readout["transport"] == "can"
    assert readout["vehicle"]["vin"] == "WBA8E5107FK123456"


def test_serial_capture_and_rejections_in_order(tmp_path: Path) -> None:
    good = spec_frames()
    crc_broken = [*good[:-1], CanFrame(0x6FF, bytes.fromhex("070A000000000000"))]
    removed_early = good[:5]
    data = serial_bytes(good) + b"\x00garbage\x02\xff" + serial_bytes(crc_broken) + \
        serial_bytes(removed_early) + serial_bytes(good)
    capture = tmp_path / "reader.bin"
    capture.write_bytes(data)
    done = decode(str(capture), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = lines(done)
    assert [o.get("reason", o["schema"]) for o in out] == [
        "cbs.readout/1", "crc_mismatch", "key_removed", "cbs.readout/1"]
    assert out[0]["transport"] == "serial"
    assert out[0]["readout_id"] != out[3]["readout_id"] or out[0]["read_at"] == out[3]["read_at"]


def test_truncated_capture_prints_what_was_read_then_exit_1(tmp_path: Path) -> None:
    data = serial_bytes(spec_frames())
    capture = tmp_path / "cut.bin"
    capture.write_bytes(data + data[:45])  # KEY_PRESENT, START, VIN part 0, 5 bytes of part 1
    done = decode("--format", "serial", str(capture), cwd=tmp_path)
    assert done.returncode == 1
    out = lines(done)
    assert out[0]["schema"] == "cbs.readout/1"
    assert out[-1]["schema"] == "cbs.rejected/1" and out[-1]["reason"] == "timeout"
    assert len(done.stderr.strip().splitlines()) == 1 and "truncated" in done.stderr


def test_corrupt_candump_mid_file(tmp_path: Path) -> None:
    capture = write_candump(tmp_path / "bad.log", spec_frames())
    text = capture.read_text() + "(1795770999.0) can0 6F0#ZZ\n" + capture.read_text()
    capture.write_text(text)
    done = decode(str(capture), cwd=tmp_path)
    assert done.returncode == 1
    assert len(lines(done)) == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "bad.log" in done.stderr


def test_same_capture_decodes_to_same_ids(tmp_path: Path) -> None:
    capture = write_candump(tmp_path / "again.log", spec_frames(end_at=END_EPOCH_S + 60))
    first, second = decode(str(capture), cwd=tmp_path), decode(str(capture), cwd=tmp_path)
    assert lines(first)[0]["readout_id"] == lines(second)[0]["readout_id"]


def test_capture_ending_inside_a_session_times_it_out(tmp_path: Path) -> None:
    data = serial_bytes(spec_frames())
    capture = tmp_path / "open.bin"
    capture.write_bytes(data + data[:40])  # ends on a frame boundary, END never came
    done = decode(str(capture), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [o.get("reason") for o in lines(done)] == [None, "timeout"]


def test_a_serial_capture_decoded_twice_gives_the_same_ids(tmp_path: Path) -> None:
    """Raw serial bytes carry no time: read_at comes from the file's modification time, not
    from the moment of decoding, so the readout ids (docs/integrators.md) stay the same."""
    import os
    import time

    capture = tmp_path / "desk.bin"
    capture.write_bytes(serial_bytes(spec_frames()))
    os.utime(capture, (END_EPOCH_S, END_EPOCH_S))
    first = lines(decode("--format", "serial", str(capture), cwd=tmp_path))
    time.sleep(1.1)
    second = lines(decode("--format", "serial", str(capture), cwd=tmp_path))
    assert first and [r["readout_id"] for r in first] == [r["readout_id"] for r in second]
    assert [r["read_at"] for r in first] == [r["read_at"] for r in second]
