"""The vehicle history's summary rows (agent/store/history.py, ``summaries``) stand for the
readings exactly: after any sequence of readouts (out of order, duplicates, both bounds at
work) a VIN's row is the summary of its readings, and a forecast from it is the forecast
from the readings; a change to the readings by anyone else (another connection, plain SQL)
makes the history summarise the readings again instead of trusting the row."""

from __future__ import annotations

import random
import sqlite3
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from forecast_fixtures import VIN, at, visit

from agent.domain.forecast import ForecastSettings, forecast_session, summarize_history
from agent.domain.forecast.trends import HISTORY_WINDOW
from agent.store.history import VehicleHistory

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from big_history import build_state  # noqa: E402

VINS = [VIN, "WBA8E5107FK65432A", "WBA8E5107FK65432B"]
SETTINGS = ForecastSettings()
FAR = datetime(2100, 1, 1, tzinfo=UTC)


def _summary_row(history: VehicleHistory, vin: str):  # type: ignore[no-untyped-def]
    return history.readings(vin).summary_until(FAR)


def test_summary_rows_mirror_the_readings(tmp_path: Path) -> None:
    rng = random.Random(11)
    history = VehicleHistory(tmp_path / "h.sqlite3", retention_days=700, max_per_vehicle=HISTORY_WINDOW + 5,
                             cache_readings=20)
    rows = 0
    try:
        for n in range(400):
            vin = rng.choice(VINS)
            days = n * 4 + rng.randint(-60, 20)  # mostly forward, sometimes back, some rollbacks
            km = 10_000 + days * 40 + (rng.randint(-9000, 0) if rng.random() < 0.03 else 0)
            s = visit(max(0, days), km, serviced=3 + days // 500, vin=vin)
            rid = f"r{n if rng.random() > 0.1 else n - 1}"
            history.record(s, at(s.vehicle.data_date), rid)
            for probe in VINS:
                readings = list(history.readings(probe))
                kept = _summary_row(history, probe)
                # None: the age bound took readings of this VIN while another was recorded
                # (its row is written again at its next readout)
                if kept is not None:
                    rows += 1
                    assert kept == summarize_history(readings, probe, SETTINGS), n
            # The forecast of the next visit from the row is the one from the readings.
            nxt = visit(max(0, days) + 30, km + 1200, vin=vin)
            when = at(nxt.vehicle.data_date)
            lazy = history.readings(vin)
            assert forecast_session(nxt, when, lazy, SETTINGS) == \
                forecast_session(nxt, when, list(lazy), SETTINGS), n
        assert history.counters["pruned"] > 0 and history.counters["duplicates"] > 0
        assert rows > 600  # most of the time the row is there
    finally:
        history.close()


def test_other_writers_make_the_row_be_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    first, second = VehicleHistory(path), VehicleHistory(path)
    try:
        for n in range(3):
            s = visit(n * 40, 20_000 + n * 1500, vin=VIN)
            first.record(s, at(s.vehicle.data_date), f"a{n}")
        assert _summary_row(first, VIN) is not None
        conn = sqlite3.connect(path)  # plain SQL, as an older agent or a tool would write
        conn.execute("DELETE FROM readings WHERE readout_id = 'a0'")
        conn.commit()
        conn.close()
        assert _summary_row(first, VIN) is None  # the trigger forgot it
        readings = list(first.readings(VIN))
        assert [r.readout_id for r in readings] == ["a1", "a2"]
        later = visit(200, 26_000, vin=VIN)
        second.record(later, at(later.vehicle.data_date), "b")  # rebuilt from the readings
        assert _summary_row(first, VIN) == summarize_history(list(first.readings(VIN)), VIN, SETTINGS)
    finally:
        first.close()
        second.close()


def test_an_insert_by_plain_sql_makes_the_row_stale(tmp_path: Path) -> None:
    """An insert or an update marks the row stale (readings -1) instead of deleting it: the
    agent's next write changes the row where it is."""
    path = tmp_path / "h.sqlite3"
    with VehicleHistory(path) as history:
        for n in range(2):
            s = visit(n * 40, 20_000 + n * 1500)
            history.record(s, at(s.vehicle.data_date), f"a{n}")
        conn = sqlite3.connect(path)
        conn.execute("INSERT INTO readings SELECT 'x', vin, read_at_us + 1, key_id, data_date, "
                     "mileage_km, items FROM readings WHERE readout_id = 'a1'")
        conn.commit()
        assert conn.execute("SELECT readings FROM summaries").fetchall() == [(-1,)]
        conn.execute("UPDATE summaries SET readings = 3")  # as if the row stood again ...
        conn.execute("UPDATE readings SET mileage_km = mileage_km + 1 WHERE readout_id = 'x'")
        conn.commit()
        assert conn.execute("SELECT readings FROM summaries").fetchall() == [(-1,)]  # ... no
        conn.close()
        assert _summary_row(history, VIN) is None
        later = visit(200, 26_000)
        history.record(later, at(later.vehicle.data_date), "b")
        assert _summary_row(history, VIN) == summarize_history(list(history.readings(VIN)), VIN,
                                                               SETTINGS)


def test_a_readout_changes_its_summary_row_in_place(tmp_path: Path) -> None:
    """The upsert keeps the row's rowid (one leaf written, not a delete here and an insert at
    the table's end with its index entry moved)."""
    path = tmp_path / "h.sqlite3"
    with VehicleHistory(path) as history:
        for n in range(4):
            s = visit(n * 40, 20_000 + n * 1500)
            history.record(s, at(s.vehicle.data_date), f"a{n}")
            rowids = history._conn.execute("SELECT rowid, readings FROM summaries").fetchall()
            assert rowids == [(1, n + 1)]


def test_a_schema_1_file_keeps_its_summaries(tmp_path: Path) -> None:
    """Schema 1 kept the rows WITHOUT ROWID with triggers that deleted them; opening such a
    file copies its rows into schema 2's table and swaps the triggers, once."""
    path = tmp_path / "h.sqlite3"
    with VehicleHistory(path) as history:
        for n in range(3):
            s = visit(n * 40, 20_000 + n * 1500, vin=VINS[n])
            history.record(s, at(s.vehicle.data_date), f"a{n}")
        rows = history._conn.execute("SELECT * FROM summaries ORDER BY vin").fetchall()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("""
        BEGIN;
        DROP TRIGGER readings_insert_stales_summary;
        DROP TRIGGER readings_delete_forgets_summary;
        DROP TRIGGER readings_update_stales_summary;
        DROP TABLE summaries;
        CREATE TABLE summaries (vin TEXT PRIMARY KEY, readings INTEGER NOT NULL,
            oldest_us INTEGER NOT NULL, summary BLOB NOT NULL) WITHOUT ROWID;
        CREATE TRIGGER readings_insert_forgets_summary AFTER INSERT ON readings
        BEGIN DELETE FROM summaries WHERE vin = NEW.vin; END;
        CREATE TRIGGER readings_delete_forgets_summary AFTER DELETE ON readings
        BEGIN DELETE FROM summaries WHERE vin = OLD.vin; END;
        CREATE TRIGGER readings_update_forgets_summary AFTER UPDATE ON readings
        BEGIN DELETE FROM summaries WHERE vin IN (OLD.vin, NEW.vin); END;
        PRAGMA user_version = 1;
        COMMIT;""")
    conn.executemany("INSERT INTO summaries VALUES (?, ?, ?, ?)", rows)
    conn.close()
    with VehicleHistory(path) as history:
        conn = history._conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT * FROM summaries ORDER BY vin").fetchall() == rows
        assert "WITHOUT ROWID" not in conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'summaries'").fetchone()[0]
        assert sorted(name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")) == [
            "readings_delete_forgets_summary", "readings_insert_stales_summary",
            "readings_update_stales_summary"]
        assert _summary_row(history, VINS[1]) == summarize_history(
            list(history.readings(VINS[1])), VINS[1], SETTINGS)
        later = visit(200, 26_000, vin=VINS[1])
        history.record(later, at(later.vehicle.data_date), "b")
        assert _summary_row(history, VINS[1]) == summarize_history(
            list(history.readings(VINS[1])), VINS[1], SETTINGS)


def test_a_readout_older_than_the_row_reads_the_readings(tmp_path: Path) -> None:
    with VehicleHistory(tmp_path / "h.sqlite3") as history:
        visits = [visit(n * 60, 20_000 + n * 2000, vin=VIN) for n in range(4)]
        for n, s in enumerate(visits):
            history.record(s, at(s.vehicle.data_date), f"v{n}")
        earlier_at = at(visits[2].vehicle.data_date) + timedelta(hours=1)  # a replayed capture
        lazy = history.readings(VIN)
        assert lazy.summary_until(earlier_at) is None
        assert forecast_session(visits[2], earlier_at, lazy, SETTINGS) == \
            forecast_session(visits[2], earlier_at, list(lazy)[:3], SETTINGS)


def test_the_big_history_generator_writes_the_agents_rows(tmp_path: Path) -> None:
    built = build_state(tmp_path / "state", vehicles=30, years=10, real=5, quiet=True,
                        now=datetime(2026, 12, 7, 9, tzinfo=UTC))
    with VehicleHistory(tmp_path / "state" / "history.sqlite3", retention_days=3650) as history:
        vins = [r[0] for r in history._conn.execute("SELECT DISTINCT vin FROM readings")]
        assert len(vins) == built.vehicles
        for vin in vins:
            readings = list(history.readings(vin))
            assert _summary_row(history, vin) == summarize_history(readings, vin, SETTINGS)


def test_the_light_check_at_open_reads_the_summary_table(tmp_path: Path,
                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A large file closed cleanly gets only its tables' first and last rows read at open
    (agent/store/sqlite.py, check_intact), the summaries table's by rowid."""
    import agent.store.sqlite as store_sqlite
    path = tmp_path / "h.sqlite3"
    with VehicleHistory(path) as history:
        for n in range(3):
            s = visit(10, 20_000, vin=VINS[n])
            history.record(s, at(s.vehicle.data_date), f"a{n}")
    monkeypatch.setattr(store_sqlite, "FULL_CHECK_MAX_BYTES", 0)
    with VehicleHistory(path) as history:  # the light check, then a row read back
        assert _summary_row(history, VINS[2]) is not None


def test_a_full_window_counts_the_new_readouts_anomaly_from_the_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vehicle with max_per_vehicle readings: each readout takes the oldest out, so its row
    is summarised again from the readings, and the readout's anomaly comes from the old row's
    walk, not from walking the readings a second time: the same anomalies, counted once."""
    from agent.store import history as history_module

    with VehicleHistory(tmp_path / "h.sqlite3", retention_days=36_500,
                        max_per_vehicle=HISTORY_WINDOW) as history:
        for n in range(HISTORY_WINDOW):
            s = visit(n * 20, 10_000 + n * 800)
            history.record(s, at(s.vehicle.data_date), f"r{n}")
        walks = []
        real_build_view = history_module.build_view
        monkeypatch.setattr(history_module, "build_view",
                            lambda *args: walks.append(args) or real_build_view(*args))
        newest = HISTORY_WINDOW * 20
        stale = visit(newest - 200, 10_000 + (HISTORY_WINDOW - 10) * 800)  # a spare key's data
        history.record(stale, at(date_of(newest + 1)), "stale")
        rollback = visit(newest + 30, 5_000)  # fewer km, later date
        history.record(rollback, at(date_of(newest + 30)), "rollback")
        assert (history.counters["stale_keys"], history.counters["odometer_rollbacks"]) == (1, 1)
        assert walks == []
        kept = list(history.readings(VIN))
        assert len(kept) == HISTORY_WINDOW
        assert _summary_row(history, VIN) == summarize_history(kept, VIN, SETTINGS)


def date_of(days: int) -> date:
    return date(2024, 1, 1) + timedelta(days=days)


@pytest.mark.parametrize("max_per_vehicle", [HISTORY_WINDOW, HISTORY_WINDOW + 7])
def test_a_full_window_is_summarised_from_the_rows_as_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_per_vehicle: int) -> None:
    """A vehicle at its window or its count bound, not in memory: its summary is walked from
    the rows as stored, without building readouts of them, and is the summary of its
    readings; several readouts read at the same moment (a replayed capture) sort as
    summarize sorts them, by data date and km before the id."""
    from agent.store import history as history_module

    rng = random.Random(max_per_vehicle)
    loads: list[str] = []
    real_select = history_module._select_keyed
    with VehicleHistory(tmp_path / "h.sqlite3", retention_days=36_500,
                        max_per_vehicle=max_per_vehicle, cache_readings=0) as history:
        monkeypatch.setattr(history_module, "_select_keyed",
                            lambda conn, vin, **kw: loads.append(vin) or real_select(conn, vin, **kw))
        days, km, rid = 0, 10_000, 0
        for n in range(max_per_vehicle + 40):
            days += rng.choice([0, 0, 15, 40, 90])  # some visits on the same data date
            km += rng.choice([0, 300, 2_500]) if rng.random() > 0.05 else -rng.randint(1, 3_000)
            s = visit(days, max(0, km), serviced=3 + days // 700)
            read = at(date_of(n * 10)) if rng.random() > 0.2 else at(date_of((n - 1) * 10))
            for _ in range(rng.choice([1, 1, 2])):  # two readouts of one read moment
                rid += 1
                history.record(s, read, f"z{rng.randint(0, 10**9):09d}-{rid}")
            readings = list(history.readings(VIN))
            assert len(readings) <= max_per_vehicle
            assert _summary_row(history, VIN) == summarize_history(readings, VIN, SETTINGS), n
        loads.clear()
        s = visit(days + 30, max(0, km) + 1_000)
        history.record(s, at(date_of(10_000)), "newest")
        assert loads == []  # walked from the stored rows, not from readouts of them
        readings = list(history.readings(VIN))
        assert _summary_row(history, VIN) == summarize_history(readings, VIN, SETTINGS)
