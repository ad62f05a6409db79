"""``cbs-agent store stats`` over a state directory filled by bench/big_history.py (the stores'
own classes created the files), and the generator's files as the stores read them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.store.history import VehicleHistory
from agent.store.reminders import ReminderService, due_summary
from agent.tools.store_stats import store_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from big_history import build_state  # noqa: E402


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("state")
    built = build_state(directory, vehicles=40, years=10, real=10, outbox=25, quiet=True)
    assert built.vehicles == 40 and built.outbox == 25 and built.visits >= 40
    return directory


def test_stats_count_what_each_store_holds(state: Path) -> None:
    stats = {s.name: s for s in store_stats(state)}
    assert stats["outbox"].counts["messages"] == 25
    assert stats["history"].counts["vehicles"] == 40
    assert int(stats["history"].counts["readings"] or 0) >= 40
    assert stats["reminders"].counts["vehicles"] == 40
    assert all(s.exists and s.error is None and s.file_bytes > 0 for s in stats.values())


def test_the_command_prints_a_line_per_store_and_json(state: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "stats", "--state-dir", str(state)]) == 0
    text = capsys.readouterr().out
    assert "outbox" in text and "messages 25" in text and "vehicles 40" in text
    assert main(["store", "stats", "--state-dir", str(state), "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in parsed] == ["outbox", "history", "reminders"]


def test_an_empty_directory_says_none_and_exits_1(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "stats", "--state-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.count("(none)") == 3


def test_the_generated_stores_read_back_through_their_classes(state: Path) -> None:
    meta = json.loads((state / "big_history.json").read_text())
    with VehicleHistory(state / "history.sqlite3", retention_days=meta["retention_days"]) as history, \
            ReminderService(state / "reminders.sqlite3", site="bench", reader="lat", topic="t",
                            retention_days=meta["retention_days"]) as reminders:
        for readout in reminders.vehicles():
            readings = history.readings(readout.vehicle.vin)
            assert 1 <= len(readings) <= meta["max_per_vehicle"]
            assert readings[-1].readout_id == readout.readout_id  # the latest visit, both stores
            due = reminders._conn.execute("SELECT due FROM vehicle_due WHERE vin = ?",  # noqa: SLF001
                                          (readout.vehicle.vin,)).fetchone()[0]
            assert due == due_summary(readout)
