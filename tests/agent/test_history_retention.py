"""A retention made shorter on years of history is worked off a batch per readout: no readout
waits for one transaction that deletes a million rows, and the file ends as the bound says."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.store import history as history_module
from agent.store.history import VehicleHistory
from simulators.fleet import Fleet


def _old_rows(path: Path, count: int, at: datetime) -> None:
    conn = sqlite3.connect(path)
    us = int((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6)
    conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(f"old-{n}", f"WBA0000000000{n:04d}", us + n, 1, "2016-01-01", 1000,
                       json.dumps([[0, 1, 5000, 50, 1, None]])) for n in range(count)])
    conn.commit()
    conn.close()


def test_aged_readings_go_a_batch_per_readout(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(history_module, "PRUNE_BATCH_ROWS", 40)
    path = tmp_path / "history.sqlite3"
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    VehicleHistory(path, retention_days=3650).close()
    _old_rows(path, 100, now - timedelta(days=3 * 365 + 30))
    sessions = list(Fleet(3, now.date(), vehicle_count=5).sessions(5))
    with VehicleHistory(path, retention_days=3 * 365) as history:
        counts = []
        for n, session in enumerate(sessions):
            history.record(session, now + timedelta(minutes=n), f"r{n}")
            counts.append(history._conn.execute(  # noqa: SLF001
                "SELECT count(*) FROM readings WHERE readout_id LIKE 'old-%'").fetchone()[0])
        assert counts[:3] == [60, 20, 0]  # 40 at a time, then none left
        assert history.counters["pruned"] == 100
        assert "r0" in [r.readout_id for r in history.readings(sessions[0].vin)]
