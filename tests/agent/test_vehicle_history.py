"""VehicleHistory: round trip, idempotence, bounds, anomalies, and durability with real
processes (two writers at once, a writer killed mid-stream)."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest
from forecast_fixtures import VIN, at, item, moved, session

from agent.domain.forecast import ForecastSettings, PastReading, forecast_session
from agent.store.history import HistoryError, VehicleHistory
from protocols.cbs_types import CbsType
from protocols.key_session import ServiceHistory

ROOT = Path(__file__).resolve().parents[2]
OIL = item(0, CbsType.ENGINE_OIL, availability=40, remaining=9000, due=(2027, 6), count=3,
           history=ServiceHistory(40_000, 2025, 6, 15_000, 24))
PADS = item(1, CbsType.BRAKE_PADS_FRONT, availability=70, remaining=30_000, count=0)


def visit(days: int, km: int, **kw):
    return session(OIL, PADS, mileage=km, data_date=date(2026, 1, 1) + timedelta(days=days), **kw)


@pytest.fixture
def history(tmp_path: Path):
    h = VehicleHistory(tmp_path / "history.sqlite3")
    yield h
    h.close()


def test_round_trip_in_read_order(history: VehicleHistory) -> None:
    sessions = [visit(0, 40_000), visit(40, 41_500), visit(90, 43_000)]
    for n in (2, 0, 1):                                    # recorded out of order
        s = sessions[n]
        history.record(s, at(s.vehicle.data_date), f"id{n}")
    got = history.readings(VIN)
    assert got == [PastReading.from_session(s, at(s.vehicle.data_date), f"id{n}")
                   for n, s in enumerate(sessions)]
    assert got[0].items[0].last_service_km == 40_000 and got[0].items[1].last_service_km is None
    assert history.readings("WBA00000000000000") == []
    assert history.counters["recorded"] == 3


def test_record_is_idempotent_on_readout_id(history: VehicleHistory) -> None:
    s = visit(0, 40_000)
    history.record(s, at(date(2026, 1, 1)), "same")
    history.record(s, at(date(2026, 1, 1)), "same")
    assert len(history.readings(VIN)) == 1
    assert (history.counters["recorded"], history.counters["duplicates"]) == (1, 1)


def test_bounded_per_vehicle(tmp_path: Path) -> None:
    with VehicleHistory(tmp_path / "h.sqlite3", max_per_vehicle=3) as h:
        for n in range(5):
            h.record(visit(10 * n, 40_000 + 500 * n), at(date(2026, 1, 1) + timedelta(days=10 * n)), f"a{n}")
        other = visit(0, 1000, vin="WBA00000000000001")
        h.record(other, at(date(2026, 1, 2)), "other")
        assert [r.readout_id for r in h.readings(VIN)] == ["a2", "a3", "a4"]
        assert len(h.readings("WBA00000000000001")) == 1
        assert h.counters["pruned"] == 2


def test_bounded_by_age_across_vehicles(tmp_path: Path) -> None:
    with VehicleHistory(tmp_path / "h.sqlite3", retention_days=10) as h:
        h.record(visit(0, 40_000, vin="WBA00000000000001"), at(date(2026, 1, 1)), "old-other")
        h.record(visit(0, 40_000), at(date(2026, 1, 1)), "old")
        h.record(visit(5, 40_200), at(date(2026, 1, 6)), "mid")
        h.record(visit(12, 40_500), at(date(2026, 1, 13)), "new")
        assert [r.readout_id for r in h.readings(VIN)] == ["mid", "new"]
        assert h.readings("WBA00000000000001") == []


def test_anomalies_are_counted_and_logged(history: VehicleHistory, caplog: pytest.LogCaptureFixture) -> None:
    history.record(visit(0, 40_000), at(date(2026, 1, 1)), "a")
    history.record(visit(60, 42_000), at(date(2026, 3, 2)), "b")
    with caplog.at_level(logging.WARNING, logger="agent.store.history"):
        # A spare key last used in January, read in April: stale.
        history.record(visit(10, 40_300, key_id=1), at(date(2026, 4, 1)), "spare")
        # A replaced instrument cluster: fewer km at a later date.
        history.record(visit(120, 5_000), at(date(2026, 5, 1)), "cluster")
    assert (history.counters["stale_keys"], history.counters["odometer_rollbacks"]) == (1, 1)
    assert "stale key" in caplog.text and "odometer rollback" in caplog.text
    assert len(history.readings(VIN)) == 4                # kept; the forecast ignores them


def test_survives_reopening_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with VehicleHistory(path) as h:
        h.record(visit(0, 40_000), at(date(2026, 1, 1)), "a")
    with VehicleHistory(path) as h:
        assert [r.readout_id for r in h.readings(VIN)] == ["a"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()


def test_unreadable_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    with caplog.at_level(logging.ERROR, logger="agent.store.history"), VehicleHistory(path) as h:
        h.record(visit(0, 40_000), at(date(2026, 1, 1)), "a")
        assert len(h.readings(VIN)) == 1
    [aside] = tmp_path.glob("h.sqlite3.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not")
    assert "damaged" in caplog.text and str(aside) in caplog.text


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    with pytest.raises(HistoryError, match="newer"):
        VehicleHistory(path)


def test_naive_read_at_is_refused(history: VehicleHistory) -> None:
    from datetime import datetime
    with pytest.raises(ValueError, match="timezone-aware"):
        history.record(visit(0, 40_000), datetime(2026, 1, 1, 9), "a")


def test_forecast_learns_from_recorded_history(history: VehicleHistory) -> None:
    settings = ForecastSettings()
    first = visit(0, 40_000)
    history.record(first, at(date(2026, 1, 1)), "a")
    second = moved(first, mileage=41_500, data_date=date(2026, 1, 31))
    result = forecast_session(second, at(date(2026, 1, 31)), history.readings(VIN), settings)
    assert (result.estimate.km_per_day, result.estimate.km_per_day_basis) == (50.0, "history")


# --- real processes -----------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    from datetime import date, datetime, timedelta, timezone
    from agent.store.history import VehicleHistory
    from protocols.key_session import KeySession, ServiceItem, VehicleData

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    history = VehicleHistory(path)
    vin = "WBA8E5107FK12345" + name[0].upper()
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    n = 0
    while count < 0 or n < count:
        s = KeySession(1, 5, 0, vin, VehicleData(1000 + n, date(2026, 1, 1), None, 2022, 3), None,
                       (ServiceItem(0, 1, 50, 5000 - n, 2027, 1, 2),))
        history.record(s, t0 + timedelta(seconds=n), f"{name}-{n}")
        print(n, flush=True)           # only after record() returned: committed
        n += 1
    history.close()
""")


def _writer(path: Path, name: str, count: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    VehicleHistory(path).close()                   # create the schema first
    procs = [_writer(path, name, 60) for name in ("alpha", "bravo")]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with VehicleHistory(path, max_per_vehicle=100) as h:
        assert len(h.readings("WBA8E5107FK12345A")) == 50       # bounded by the writers' 50
        assert len(h.readings("WBA8E5107FK12345B")) == 50


def test_killed_writer_leaves_a_consistent_history(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite3"
    proc = _writer(path, "alpha", -1)
    committed = -1
    try:
        assert proc.stdout is not None
        for line in proc.stdout:                   # bounded by the pytest timeout
            committed = int(line)
            if committed >= 30:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert committed >= 30
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    with VehicleHistory(path) as h:
        ids = [r.readout_id for r in h.readings("WBA8E5107FK12345A")]
    # Everything reported committed is there (up to the bound of 50), in order, nothing torn.
    numbers = [int(i.split("-")[1]) for i in ids]
    assert numbers == sorted(numbers) and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert numbers[-1] >= committed
