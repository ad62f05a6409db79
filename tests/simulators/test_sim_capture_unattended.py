"""`cbs-sim ... --no-wait-open --capture F` with no host on the port still records what was
played: a bus logger sees the CAN frames, and the serial reader's bytes are what it sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["--no-wait-open", "--sessions", "2", "--interval-s", "0", "--drain-timeout-s", "0",
        "--start-delay-s", "0"]


@pytest.mark.parametrize("transport,name,extra", [
    ("can", "bus.log", []),
    ("serial", "reader.bin", ["--baudrate", "0", "--dwell-s", "0"]),
])
def test_capture_without_a_host(tmp_path: Path, transport: str, name: str,
                                extra: list[str]) -> None:
    capture = tmp_path / name
    done = subprocess.run([sys.executable, "-m", "simulators", transport, *FAST, *extra,
                           "--capture", str(capture), "--truth", str(tmp_path / "truth.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert capture.stat().st_size > 0
    decoded = subprocess.run([sys.executable, "-m", "agent", "decode", str(capture)],
                             capture_output=True, text=True, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    vins = [json.loads(line)["vehicle"]["vin"] for line in decoded.stdout.splitlines()]
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(vins) == len(truth) == 2
