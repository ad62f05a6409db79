"""A damaged store file heals: moved aside with a timestamp, what SQLite can still read
salvaged into a fresh file, said once in the log and in ``quarantined`` (for the status).

Before, a truncated outbox or one with a junk header failed every open ("file is not a
database", retried every 2 s forever) and readouts piled up in memory until dropped; junk over
pages in the middle failed every read ("database disk image is malformed").
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from agent.errors import OutboxError
from agent.store.history import VehicleHistory
from agent.store.outbox import Outbox
from agent.store.reminders import ReminderService
from agent.store.sqlite import is_corruption, quarantine_file, salvage_rows

ROWS = 400
PAYLOAD = b"x" * 900  # about four rows a page


def _filled_outbox(path: Path, rows: int = ROWS) -> list[int]:
    with Outbox(path) as outbox:
        return [outbox.put(f"t/{n}", PAYLOAD + str(n).encode(), retain=n % 2 == 0,
                           schema="cbs.readout/1", message_id=f"m{n}") for n in range(rows)]


def _junk(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xa5" * size)


def _asides(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob(f"{path.name}.corrupt-*")
                  if not p.name.endswith(("-wal", "-shm")))


def test_a_junk_header_is_quarantined_and_a_fresh_outbox_started(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite3"
    _filled_outbox(path, 20)
    _junk(path, 0, 100)
    with caplog.at_level(logging.ERROR, logger="agent.store.outbox"), Outbox(path) as outbox:
        [aside] = _asides(path)
        assert outbox.quarantined is not None and str(aside) in outbox.quarantined
        # Only the 100-byte header was hit: read with a rebuilt one, every row is there.
        assert outbox.depth() == 20 and "20 row(s) salvaged" in outbox.quarantined
        outbox.put("t", b"p", retain=False, schema="s", message_id="after")
        assert [e.message_id for e in outbox.pending()][-2:] == ["m19", "after"]
    assert caplog.text.count("was damaged") == 1
    assert aside.read_bytes()[:100] == b"\xa5" * 100


@pytest.mark.parametrize("offset", [8192, 16 * 4096, 64 * 4096])  # the issue's, then data pages
def test_junk_over_pages_in_the_middle_keeps_every_readable_row(tmp_path: Path,
                                                                offset: int) -> None:
    path = tmp_path / "outbox.sqlite3"
    ids = _filled_outbox(path)
    _junk(path, offset, 8192)
    with Outbox(path) as outbox:
        entries = outbox.pending(limit=ROWS)
        assert outbox.quarantined is not None, "the damage went unnoticed"
        assert ROWS // 2 < len(entries) <= ROWS
        if offset > 8192:  # two data pages held about 10 rows: those are lost, no more
            assert ROWS - 12 <= len(entries) < ROWS
        for entry in entries:  # every salvaged row is exactly what was stored, under its id
            n = int(entry.message_id[1:])
            assert entry.row_id == ids[n] and entry.topic == f"t/{n}"
            assert entry.payload == PAYLOAD + str(n).encode() and entry.retain == (n % 2 == 0)
        assert outbox.depth() == len(entries)
        assert outbox.put("t", b"p", retain=False, schema="s", message_id="new") > ids[-1]
    assert f"{len(entries)} row(s) salvaged" in (outbox.quarantined or "")


def test_a_truncated_outbox_heals(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    _filled_outbox(path)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with Outbox(path) as outbox:
        outbox.put("t", b"p", retain=False, schema="s", message_id="new")
        assert outbox.pending(limit=ROWS)[-1].message_id == "new"
        assert outbox.quarantined is not None


def test_damage_found_while_running_heals_after_one_failed_call(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    rows = 2500  # more pages than the outbox's page cache holds: reads go to the file
    _filled_outbox(path, rows)
    with Outbox(path) as outbox:
        _junk(path, path.stat().st_size // 2, 8192)
        failures = 0
        for _ in range(3):
            try:
                outbox.pending(limit=rows)
                outbox.put("t", b"p", retain=False, schema="s", message_id="new")
                break
            except OutboxError as exc:
                assert "malformed" in str(exc)
                failures += 1
        assert failures <= 1 and outbox.quarantined is not None
        assert outbox.pending(limit=rows + 1)[-1].message_id == "new"


def test_a_full_or_read_only_disk_is_not_damage() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    readonly.sqlite_errorcode = 8  # type: ignore[attr-defined]
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    malformed.sqlite_errorcode = 11  # type: ignore[attr-defined]
    assert not is_corruption(full) and not is_corruption(readonly)
    assert is_corruption(malformed) and is_corruption(sqlite3.DatabaseError("file is not a database"))


def test_salvage_of_a_file_with_nothing_readable_is_empty(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00junk" * 1000)
    assert salvage_rows(junk, "outbox", ("topic",)) == []
    moved = quarantine_file(junk, "test")
    assert not junk.exists() and moved.aside.exists() and ".corrupt-" in moved.aside.name


def test_a_damaged_history_keeps_the_readings_it_can(tmp_path: Path) -> None:
    from forecast_fixtures import VIN, at, session
    from test_vehicle_history import OIL, PADS

    path = tmp_path / "history.sqlite3"
    with VehicleHistory(path, max_per_vehicle=1000) as history:
        for n in range(300):
            visit = session(OIL, PADS, mileage=40_000 + 10 * n,
                            data_date=date(2020, 1, 1) + timedelta(days=n))
            history.record(visit, at(date(2020, 1, 1) + timedelta(days=n)), f"r{n}")
    _junk(path, 8192, 8192)
    with VehicleHistory(path, max_per_vehicle=1000) as history:
        assert history.quarantined is not None
        kept = history.readings(VIN)
        assert 0 < len(kept) <= 300


def test_a_damaged_reminder_store_heals(tmp_path: Path) -> None:
    path = tmp_path / "reminders.sqlite3"
    ReminderService(path, site="S", reader="R", topic="t").close()
    path.write_bytes(b"\xa5" * 8192)
    store = ReminderService(path, site="S", reader="R", topic="t")
    try:
        assert store.quarantined is not None and _asides(path)
    finally:
        store.close()


def test_quarantine_names_carry_utc_time(tmp_path: Path) -> None:
    target = tmp_path / "f"
    for _ in range(2):
        target.write_bytes(b"x")
        quarantine_file(target, "test", now=datetime(2026, 12, 6, 22, 0, tzinfo=UTC))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.corrupt-20261206T220000Z",
                                                          "f.corrupt-20261206T220000Z-1"]


def test_rows_that_cannot_be_salvaged_are_named(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as outbox:
        for n in range(30):
            outbox.put("cbs/v1/S/R/readout", b'{"readout_id":"20261206T220000000Z-%012d",'
                       b'"x":"%s"}' % (n, b"y" * 800), retain=False, schema="cbs.readout/1",
                       message_id=f"20261206T220000000Z-{n:012d}")
    _junk(path, 0, 4096)  # the header and the schema page: nothing is readable
    with caplog.at_level(logging.ERROR, logger="agent.store.outbox"), Outbox(path) as outbox:
        assert outbox.depth() == 0
    named = [r.getMessage() for r in caplog.records if "may not have been delivered" in r.getMessage()]
    assert len(named) == 1
    assert all(f"20261206T220000000Z-{n:012d}" in named[0] for n in range(30))
