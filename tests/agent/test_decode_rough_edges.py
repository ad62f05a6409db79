"""`cbs-agent decode` as a newcomer uses it: in a pipe, on the wrong path, on junk, on what
candump printed on the screen, from stdin, on a big file, on a Vector .asc file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from spec_example import END_EPOCH_S, serial_bytes, spec_frames, write_candump

READ_AT = "2026-11-27T09:15:02.123Z"


def decode(*args: str, cwd: Path, stdin: bytes | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "agent", "decode", *args], capture_output=True,
                          timeout=120, cwd=cwd, input=stdin,
                          env={**os.environ, **(env or {})})
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def payloads(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    capture = tmp_path / "many.bin"
    capture.write_bytes(serial_bytes(spec_frames()) * 300)  # far more than a pipe buffer
    done = subprocess.run(f"{sys.executable} -m agent decode {capture} | head -n 1",
                          shell=True, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert json.loads(done.stdout)["schema"] == "cbs.readout/1"
    assert done.stderr == ""


def test_a_directory_is_called_a_directory(tmp_path: Path) -> None:
    done = decode(str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"cbs-agent: {tmp_path}: is a directory, not a capture file\n"
    done = decode(str(tmp_path / "missing.log"), cwd=tmp_path)
    assert done.stderr == f"cbs-agent: {tmp_path / 'missing.log'}: no such file\n"


def test_an_empty_or_junk_file_exits_non_zero_with_a_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    done = decode(str(empty), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"cbs-agent decode: {empty}: is empty\n"

    junk = tmp_path / "notes.txt"
    junk.write_text("shopping list: milk, eggs\n" * 20)
    done = decode(str(junk), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"cbs-agent decode: {junk}: holds no frames" in done.stderr
    assert "is it a capture?" in done.stderr


def _screen_text(with_times: bool) -> str:
    lines = []
    for frame in spec_frames():
        data = " ".join(f"{b:02X}" for b in frame.data)
        stamp = f" ({frame.timestamp:.6f})" if with_times else ""
        lines.append(f"{stamp}  can0  {frame.arbitration_id:03X}   [{len(frame.data)}]  {data}")
    lines.insert(2, "  can0  18DAF110   [2]  01 02")  # 29-bit traffic: counted, skipped
    return "\n".join(lines) + "\n"


def test_candump_screen_output_is_read(tmp_path: Path) -> None:
    timed = tmp_path / "screen.log"
    timed.write_text(_screen_text(with_times=True))
    done = decode("--site", "S1", "--reader", "desk1", str(timed), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (readout,) = payloads(done)
    assert readout["read_at"] == READ_AT
    assert readout["vehicle"]["vin"] == "WBA8E5107FK123456"

    untimed = tmp_path / "screen.txt"  # no extension we know: recognised by its content
    untimed.write_text(_screen_text(with_times=False))
    done = decode(str(untimed), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (readout,) = payloads(done)
    assert readout["vehicle"]["vin"] == "WBA8E5107FK123456"
    assert readout["transport"] == "can"


def _screen_lines(frames: list, stamp) -> str:
    return "\n".join(f" ({stamp(i, f):.6f})  can0  {f.arbitration_id:03X}   [{len(f.data)}]  "
                     + " ".join(f"{b:02X}" for b in f.data) for i, f in enumerate(frames)) + "\n"


def test_candump_screen_output_with_relative_times(tmp_path: Path) -> None:
    frames = spec_frames(gap_s=0.7)  # > the 0.5 s session timeout: the times must matter
    start = frames[0].timestamp
    capture = tmp_path / "screen-tz.log"
    capture.write_text(_screen_lines(frames, lambda i, f: f.timestamp - start))  # candump -tz
    done = decode("--site", "S1", "--reader", "desk1", str(capture), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (payload,) = payloads(done)
    assert payload["schema"] == "cbs.rejected/1" and payload["reason"] == "timeout"
    assert payload["at"] > "2026", payload["at"]  # counted from the time of decoding, not 1970

    capture = tmp_path / "screen-td.log"  # candump -td: the time since the previous frame
    capture.write_text(_screen_lines(frames, lambda i, f: [0.0, 0.7, 0.2][i % 3]))
    done = decode(str(capture), cwd=tmp_path)
    assert done.returncode == 1
    assert "relative times go backwards at line 3 (candump -td?)" in done.stderr


def test_candump_screen_line_parser() -> None:
    from agent.readers.capture import parse_candump_screen_line

    assert parse_candump_screen_line("  can0  6F0   [8]  00 11 22 33 44 55 66 77") == (
        None, 0x6F0, bytes.fromhex("0011223344556677"), True)
    assert parse_candump_screen_line(" (1795770902.123000)  vcan0  123   [2]  AB CD") == (
        1795770902.123, 0x123, b"\xab\xcd", True)
    local = parse_candump_screen_line(" (2026-11-27 09:15:02.123000)  can0  123   [0]  ")
    assert local is not None
    assert local[0] == datetime(2026, 11, 27, 9, 15, 2, 123000).timestamp()
    assert parse_candump_screen_line("  can0  123   [1]  remote request")[3] is False
    assert parse_candump_screen_line("(1.0) can0 123#00") is None  # the log format
    assert parse_candump_screen_line("  can0  123   [2]  41 42   'AB'")[2] == b"AB"  # -a
    for broken in ("  can0  123   [3]  01 02", "  can0  123   [2]  0G 02"):
        try:
            parse_candump_screen_line(broken)
        except ValueError:
            continue
        raise AssertionError(broken)


def test_stdin_is_read_with_a_dash(tmp_path: Path) -> None:
    log = write_candump(tmp_path / "desk.log", spec_frames()).read_bytes()
    done = decode("-", cwd=tmp_path, stdin=log)
    assert done.returncode == 0, done.stderr
    assert payloads(done)[0]["read_at"] == READ_AT
    done = decode("--format", "serial", "-", cwd=tmp_path, stdin=serial_bytes(spec_frames()))
    assert done.returncode == 0, done.stderr
    assert payloads(done)[0]["transport"] == "serial"
    done = decode("-", cwd=tmp_path, stdin=b"")
    assert (done.returncode, done.stderr) == (1, "cbs-agent decode: -: is empty\n")


def test_progress_on_request_and_not_in_a_pipe(tmp_path: Path) -> None:
    capture = tmp_path / "big.bin"
    capture.write_bytes(serial_bytes(spec_frames()) * 200)
    quiet = decode(str(capture), cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    shown = decode("--progress", str(capture), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    last = shown.stderr.splitlines()[-1]
    assert last.startswith(f"decode: {capture} 100 % (")
    assert last.endswith(", 200 sessions")
    assert len(shown.stdout.splitlines()) == 200


def _asc(frames_text: str, date: str | None) -> str:
    head = [f"date {date}"] if date else []
    return "\n".join([*head, "base hex  timestamps absolute", "internal events logged",
                      "// version 9.0.0", frames_text]) + "\n"


def _asc_frames() -> str:
    start = spec_frames()[0].timestamp
    return "\n".join(
        f"{frame.timestamp - start:11.6f} 1  {frame.arbitration_id:X}             Rx   d "
        f"{len(frame.data)} {' '.join(f'{b:02X}' for b in frame.data)}"
        for frame in spec_frames())


def test_asc_capture_keeps_its_absolute_start_time(tmp_path: Path) -> None:
    start = datetime.fromtimestamp(spec_frames()[0].timestamp, tz=timezone.utc)
    date = start.strftime("%a %b %d %I:%M:%S.") + f"{start.microsecond // 1000:03d} " + \
        start.strftime("%p %Y").lower()
    capture = tmp_path / "desk.asc"
    capture.write_text(_asc(_asc_frames(), date))
    done = decode(str(capture), cwd=tmp_path, env={"TZ": "UTC"})
    assert done.returncode == 0, done.stderr
    (readout,) = payloads(done)
    assert readout["read_at"] == READ_AT  # not 1970
    assert abs(datetime.fromisoformat(readout["read_at"]).timestamp() - END_EPOCH_S) < 0.002


def test_asc_capture_without_a_date_is_refused_with_a_line(tmp_path: Path) -> None:
    capture = tmp_path / "nodate.asc"
    capture.write_text(_asc(_asc_frames(), None))
    done = decode(str(capture), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"cbs-agent decode: {capture}: the asc capture has no 'date' "
                                  "line")
    assert len(done.stderr.splitlines()) == 1


def test_stdin_is_decoded_as_it_comes_not_after_it_ends(tmp_path: Path) -> None:
    """``decode -`` reads standard input as it arrives (no copy of it first): a session's
    readout is printed while the pipe is still open, as ``candump -L can0 | cbs-agent decode -``
    needs. Each format decoded from stdin gives what the same file gives."""
    log = write_candump(tmp_path / "desk.log", spec_frames()).read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "agent", "decode", "-"], cwd=tmp_path,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = threading.Timer(60, process.kill)  # a decode that waits for the end hangs: end it
    deadline.start()
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(log)
        process.stdin.flush()
        first = json.loads(process.stdout.readline())  # the pipe is still open here
        assert first["read_at"] == READ_AT
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        deadline.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    asc = _asc(_asc_frames(), "Fri Nov 27 09:15:02.123 am 2026").encode()
    for name, data in (("desk.log", log), ("desk.asc", asc),  # .asc: copied to a file first
                       ("desk.bin", serial_bytes(spec_frames()))):
        (tmp_path / name).write_bytes(data)
        from_file = decode(name, cwd=tmp_path)
        from_stdin = decode("-", cwd=tmp_path, stdin=data)
        assert from_file.returncode == from_stdin.returncode == 0, from_stdin.stderr
        if not name.endswith(".bin"):  # serial bytes carry no time: the file's, or now
            assert from_stdin.stdout == from_file.stdout
        else:
            assert len(payloads(from_stdin)) == len(payloads(from_file)) == 1


def test_a_corrupt_capture_on_stdin_is_named_dash(tmp_path: Path) -> None:
    log = write_candump(tmp_path / "desk.log", spec_frames()).read_bytes()
    done = decode("-", cwd=tmp_path, stdin=log + b"(1.0) can0 6F0#XYZ\n")
    assert done.returncode == 1
    assert done.stderr.startswith("cbs-agent decode: -: corrupt candump capture after message ")
    assert len(payloads(done)) == 1
