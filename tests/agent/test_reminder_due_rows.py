"""The reminder store's due dates (agent/store/reminders.py, ``vehicle_due``): one row per
vehicle, always those of the readout its ``vehicles`` row holds, gone with the vehicle, and
carried over from a schema 2 file's covering index once."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from spec_example import spec_frames

from agent.domain.forecast import ForecastSettings
from agent.domain.models import Readout
from agent.domain.reminders import ReminderSettings
from agent.pipeline import ReadoutPipeline
from agent.store.reminders import ReminderService, due_summary
from protocols.key_session import KeySession
from protocols.session import SessionAccepted, SessionAssembler

UTC = timezone.utc
READ_AT = datetime(2026, 11, 27, 9, 15, 2, 123000, tzinfo=UTC)
VINS = [f"WBA8E5107FK{n:06d}" for n in range(5)]


def _session() -> KeySession:
    assembler = SessionAssembler()
    (event,) = [e for frame in spec_frames() for e in assembler.feed(frame)]
    assert isinstance(event, SessionAccepted)
    return event.session


def _readout(vin: str, read_at: datetime, mileage_km: int = 40_000) -> Readout:
    session = _session()
    session = dataclasses.replace(session, vin=vin, vehicle=dataclasses.replace(
        session.vehicle, mileage_km=mileage_km, data_date=read_at.date()))
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="serial",
                               forecast=ForecastSettings())
    return pipeline.readout(SessionAccepted(session, read_at.timestamp(), 10, 0x1234ABCD), read_at)


def _open(path: Path) -> ReminderService:
    return ReminderService(path, site="S1", reader="desk1", topic="cbs/v1/S1/reminders",
                           settings=ReminderSettings(), forecast=ForecastSettings())


def _dues(store: ReminderService) -> dict[str, str]:
    return dict(store._conn.execute("SELECT vin, due FROM vehicle_due").fetchall())


def test_the_due_row_is_the_kept_readouts(tmp_path: Path) -> None:
    """A newer readout replaces the due dates, an older one leaves them; in one batch the
    readout kept is the newest, of two at the same moment the later one."""
    newer = _readout(VINS[0], READ_AT, 52_000)
    older = _readout(VINS[0], READ_AT - timedelta(days=200), 41_000)
    assert due_summary(newer) != due_summary(older), "precondition: the dates differ"
    with _open(tmp_path / "r.sqlite3") as store:
        store.observe(older)
        assert _dues(store) == {VINS[0]: due_summary(older)}
        store.observe(newer)
        store.observe(older)
        assert _dues(store) == {VINS[0]: due_summary(newer)}
        assert store.latest(VINS[0]).readout_id == newer.readout_id  # type: ignore[union-attr]
        store.observe_many([_readout(VINS[1], READ_AT, 60_000), _readout(VINS[1], READ_AT - timedelta(
            days=30), 55_000), _readout(VINS[2], READ_AT, 30_000), _readout(VINS[2], READ_AT, 31_000)])
        dues = _dues(store)
        assert dues[VINS[1]] == due_summary(_readout(VINS[1], READ_AT, 60_000))
        assert dues[VINS[2]] == due_summary(_readout(VINS[2], READ_AT, 31_000))
        assert store.latest(VINS[2]).vehicle.mileage_km == 31_000  # type: ignore[union-attr]


def test_a_forgotten_vehicle_takes_its_due_row(tmp_path: Path) -> None:
    with _open(tmp_path / "r.sqlite3") as store:
        store.observe_many([_readout(VINS[0], READ_AT - timedelta(days=store.retention_days + 5)),
                            _readout(VINS[1], READ_AT)])
        assert set(_dues(store)) == {VINS[0], VINS[1]}
        store.prune(READ_AT)
        assert set(_dues(store)) == {VINS[1]}


def test_a_readout_changes_its_due_row_in_place(tmp_path: Path) -> None:
    with _open(tmp_path / "r.sqlite3") as store:
        for n in range(3):
            store.observe(_readout(VINS[0], READ_AT + timedelta(days=n * 90), 40_000 + n * 4000))
            assert store._conn.execute("SELECT rowid FROM vehicle_due").fetchall() == [(1,)]


def test_a_schema_2_file_keeps_its_due_dates(tmp_path: Path) -> None:
    """Schema 2 kept the due dates in a column of ``vehicles`` with a covering index; opening
    such a file copies them from the index into ``vehicle_due`` and drops the index, once.
    A row without due dates (schema 1's) stays without: its vehicle is planned."""
    path = tmp_path / "r.sqlite3"
    readouts = [_readout(vin, READ_AT - timedelta(days=n * 40), 40_000 + n * 3000)
                for n, vin in enumerate(VINS)]
    with _open(path) as store:
        store.observe_many(readouts)
        dues = _dues(store)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("""
        BEGIN;
        ALTER TABLE vehicles ADD COLUMN due TEXT;
        UPDATE vehicles SET due = (SELECT due FROM vehicle_due WHERE vin = vehicles.vin);
        UPDATE vehicles SET due = NULL WHERE vin = 'WBA8E5107FK000004';
        DROP TRIGGER vehicle_delete_forgets_due;
        DROP TABLE vehicle_due;
        CREATE INDEX vehicles_due ON vehicles (vin, due);
        PRAGMA user_version = 2;
        COMMIT;""")
    conn.close()
    with _open(path) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert _dues(store) == {vin: due for vin, due in dues.items() if vin != VINS[4]}
        assert store._conn.execute("SELECT count(*) FROM sqlite_master WHERE name = "
                                   "'vehicles_due'").fetchone()[0] == 0
        assert [r.vehicle.vin for r in store.vehicles()] == VINS
        later = _readout(VINS[4], READ_AT + timedelta(days=30), 60_000)
        store.observe(later)  # the old file's due column is there, unused
        assert _dues(store)[VINS[4]] == due_summary(later)
        assert store.latest(VINS[4]).readout_id == later.readout_id  # type: ignore[union-attr]
