"""`cbs-agent decode --state-dir`: a capture of several workshop visits forecasts from the
vehicle's history exactly as the live agent's pipeline does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.domain.forecast import ForecastSettings
from agent.domain.models import to_json
from agent.pipeline import ReadoutPipeline
from agent.readers.base import ReaderCounters
from agent.readers.capture import read_capture
from agent.store.history import VehicleHistory
from protocols.can_frame import CanFrame
from protocols.session import SessionAccepted, SessionAssembler


def test_visits_forecast_from_history_as_live(tmp_path: Path) -> None:
    capture = tmp_path / "visits.log"
    made = subprocess.run([sys.executable, "-m", "simulators.cli", "fleet", "--vehicles", "3",
                           "--seed", "4", "--out", str(tmp_path / "truth.jsonl"),
                           "--candump", str(capture)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    done = subprocess.run([sys.executable, "-m", "agent", "decode", "--site", "S1", "--reader",
                           "desk1", "--state-dir", str(tmp_path / "state"), str(capture)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    decoded = [json.loads(line) for line in done.stdout.splitlines()]
    readouts = [d for d in decoded if d["schema"] == "cbs.readout/1"]
    assert len(readouts) >= 6
    assert {r["estimate"]["km_per_day_basis"] for r in readouts} >= {"history"}

    # The live agent's pipeline, in process, over the same frames and a fresh history.
    history = VehicleHistory(tmp_path / "live-history.sqlite3")
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="can",
                               forecast=ForecastSettings(), history=history)
    assembler = SessionAssembler()
    live = []
    for event in read_capture(capture, "candump", ReaderCounters(), serial_time=0.0):
        assert isinstance(event, CanFrame)
        for outcome in assembler.feed(event):
            if isinstance(outcome, SessionAccepted):
                readout = pipeline.readout(outcome)
                pipeline.remember(outcome.session, readout)
                live.append(json.loads(to_json(readout)))
    history.close()
    assert [r["readout_id"] for r in live] == [r["readout_id"] for r in readouts]
    for mine, theirs in zip(live, readouts, strict=True):
        assert mine["services"] == theirs["services"]
        assert mine["estimate"] == theirs["estimate"] and mine["summary"] == theirs["summary"]
