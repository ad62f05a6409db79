"""Captures in every format python-can reads: what `cbs-sim can --capture` recorded decodes with
`cbs-agent decode` to exactly the simulator's ground truth; a truncated or corrupt capture
yields what was readable, one line on stderr, exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import can
import pytest
from expectations import assert_readout_matches
from processes import SimulatorProcess

FORMATS = [".log", ".asc", ".blf", ".trc", ".csv"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], list]:
    """One simulator run per format (same seed, so the same sessions), recorded as it plays."""
    workdir = tmp_path_factory.mktemp("captures")
    files: dict[str, Path] = {}
    truth: list = []
    for ext in FORMATS:
        capture = workdir / f"bay{ext}"
        sim = SimulatorProcess(workdir, "can", "--seed", "21", "--sessions", "12",
                               "--interval-s", "0.01", "--vehicles", "8", "--bus-load", "0.1",
                               "--fault-rate", "0.03", "--capture", str(capture),
                               name=f"sim{ext}")
        # The adapter plays only while a host has it open, as a real one on USB would.
        host = can.Bus(interface="fastslcan", channel=sim.port, bitrate=500_000)
        try:
            while sim.process.poll() is None:
                try:
                    host.recv(0.05)
                except can.CanOperationError:
                    break  # the simulator finished and closed its adapter
        finally:
            host.shutdown()
            sim.stop()
        files[ext] = capture
        truth = sim.truth()
    return workdir, files, truth


def decode(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "decode", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("ext", FORMATS)
def test_capture_round_trips_ground_truth(recordings, ext: str) -> None:
    workdir, files, truth = recordings
    done = decode(str(files[ext]), cwd=workdir)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    expected = [r for r in truth if not r["disturbed"]]
    assert len(expected) >= 12 and any(r["expected"] == "rejected" for r in expected)
    assert len(out) == len(expected), [o.get("reason") for o in out]
    for record, payload in zip(expected, out, strict=True):
        assert payload["transport"] == "can"
        if record["expected"] == "readout":
            assert payload["schema"] == "cbs.readout/1", (ext, record["faults"], payload)
            assert_readout_matches(record, payload)
        else:
            assert payload["reason"] == record["reason"], (ext, record["faults"], payload["detail"])


@pytest.mark.parametrize("ext", FORMATS)
def test_truncated_capture_exits_1_after_what_was_readable(recordings, ext: str,
                                                           tmp_path: Path) -> None:
    _, files, _ = recordings
    data = files[ext].read_bytes()
    cut = tmp_path / f"cut{ext}"
    if ext == ".blf":
        cut.write_bytes(data[: len(data) // 2])
    else:  # a text log: keep half the lines, then a line broken in the middle of its data
        lines = data.splitlines(keepends=True)
        half = len(lines) // 2
        if ext == ".asc":
            # The first key-reader frame (0x6F0-0x6FF) from the middle on: decode reads only
            # the key reader's frames, so a broken line of other traffic (the bus load's
            # random ids) is other traffic, not a broken capture, and the decode runs to the
            # end (exit 0).
            def key_frame(line: bytes) -> bool:
                fields = line.split()
                return len(fields) > 2 and fields[2].upper().startswith(b"6F") \
                    and len(fields[2]) == 3
            half = next(n for n in range(half, len(lines)) if key_frame(lines[n]))
        cut.write_bytes(b"".join(lines[:half]) + lines[half][: len(lines[half]) // 2].rstrip(b"\r\n")
                        + b"ZZ\n" + b"".join(lines[half + 1:]))
    done = decode(str(cut), cwd=tmp_path)
    assert done.returncode == 1, (done.returncode, done.stderr, done.stdout[-300:])
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(cut) in done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()]  # what came before was decoded
