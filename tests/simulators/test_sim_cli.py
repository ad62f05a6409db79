"""``cbs-sim`` argument handling and the small subcommands, as processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.can_frame import CanFrame
from protocols.serial_framing import SerialFrameDecoder, encode_can_frame
from simulators.faults import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulators.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout_s, check=False)


def test_faults_lists_every_fault_per_transport() -> None:
    result = _run("faults")
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.splitlines()}
    assert listed == {str(f) for f in CATALOGUE}
    can_only = {line.split()[0] for line in _run("faults", "--transport", "can").stdout.splitlines()}
    assert "key_removed" not in can_only and {"dropped", "bus_off"} <= can_only


@pytest.mark.parametrize("args, message", [
    (["serial", "--faults", "gremlins=0.1"], "unknown fault"),
    (["can", "--faults", "noise=0.1"], "does not exist on the can transport"),
    (["serial", "--fault-rate", "2"], "between 0 and 1"),
    (["serial", "--baudrate", "1200"], "9600"),
    (["can", "--bus-load", "1.5"], "bus load"),
    (["serial", "--quiet-s", "0.4"], "twice"),
])
def test_bad_options_exit_with_usage_errors(args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""  # nothing that a caller could take for a pty path


def test_console_script_is_installed() -> None:
    script = shutil.which("cbs-sim")
    if script is None:
        pytest.skip("cbs-sim is not on PATH (package not installed with its scripts)")
    result = subprocess.run([script, "sessions", "--sessions", "2", "--base-date", "2026-05-01"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2


def test_decoder_keeps_a_frame_that_straddled_a_stalled_read() -> None:
    """The ground truth assumes an agent whose reads may stall: a frame whose first bytes
    came in one read and the rest in a read long after must still be found (regression of
    SerialFrameDecoder giving the candidate up before looking at the new bytes)."""
    frame = encode_can_frame(CanFrame(0x6F0, bytes(range(8))))
    decoder = SerialFrameDecoder()
    assert decoder.feed(frame[:7], now=0.0) == []
    found = decoder.feed(frame[7:], now=5.0)
    assert [f.payload for f in found] == [frame[3:-3]]
    # a false start that never completes is still given up once stale
    assert decoder.feed(b"\x02\x40garbage", now=6.0) == []
    assert decoder.feed(b"", now=7.0) == [] and decoder.buffered < 9
