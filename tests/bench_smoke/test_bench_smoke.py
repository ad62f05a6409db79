"""Every benchmark still runs: ``bench/run_all --quick --only NAME`` with tiny sizes exits 0
and prints its table and its figures. No timing assertion: the figures of a smoke run on a
CI machine mean nothing; docs/performance.md has the real ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from broker import require_mosquitto

ROOT = Path(__file__).resolve().parents[2]
RUN_ALL = ROOT / "bench" / "run_all"

# benchmark -> a line of its table, and how many RESULT lines it prints
EXPECTED = {
    "decode_path": ("bare cantools db.decode_message (reference)", 2),
    "can_ingest": ("fastslcan", 2),
    "latency": ("END -> subscriber", 3),
    "throughput": ("backlog of", 1),
    "memory": ("RSS MB", 2),
    "startup": ("import agent.wiring", 1),
    "diagnostics": ("x bound", 8),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_runs_and_prints_its_table(name: str) -> None:
    if name != "decode_path":
        require_mosquitto()
    run = subprocess.run([sys.executable, str(RUN_ALL), "--quick", "--only", name],
                         capture_output=True, text=True, timeout=220, cwd=ROOT)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    row, results = EXPECTED[name]
    assert row in run.stdout, output[-3000:]
    summary = run.stdout.split("=== summary ===", 1)[1]
    assert len(re.findall(r"^RESULT \|", run.stdout, re.MULTILINE)) == results, output[-3000:]
    assert "figure" in summary and "verdict" in summary
