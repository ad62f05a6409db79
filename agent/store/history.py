"""The vehicle history: what earlier readouts on this site said, kept in SQLite for the forecast.

Why SQLite (stdlib ``sqlite3``) in WAL mode: readouts arrive one at a time, the agent may be
restarted (or a second instance started by mistake) while one is still writing, and power may
fail at any moment. Each :meth:`VehicleHistory.record` is one ``BEGIN IMMEDIATE`` transaction
(insert, then prune), so after a crash the history is either with the readout or without it,
never half of it. ``synchronous=FULL`` (the default) makes a committed readout survive power
loss; ``NORMAL`` is faster and may lose the last few readouts on power loss, never consistency.

The history is bounded in two ways, both configurable: readouts older than ``retention_days``
(counted back from the ``read_at`` of the readout being recorded, not from the wall clock, so
replaying a capture gives the same history) and more than ``max_per_vehicle`` per VIN (the
oldest go). Both are enforced in the transaction that records a readout; the age bound at
most :data:`PRUNE_BATCH_ROWS` rows of other vehicles at a time, so that a retention made
shorter on years of history is worked off over the next readouts.

The history is advisory: losing it costs forecast quality, never a readout. A file that is
not a SQLite database, or damaged, is moved aside (``*.corrupt-{UTC time}``) and a new one
started with every reading SQLite could still read from it, with an error logged once
(:attr:`VehicleHistory.quarantined`). Other SQLite failures are raised as :class:`HistoryError`.

A busy reader asks for a vehicle's readings before every forecast and records right after,
so the readings of recently seen vehicles are also kept in memory, bounded by
``cache_readings`` in total (least recently used vehicles go first). The cache mirrors the
file exactly: it is updated only after a commit succeeded, and ``PRAGMA data_version`` (which
changes when another connection, in this or another process, commits) empties it whenever
someone else has written to the file.
"""

from __future__ import annotations

import bisect
import json
import logging
import sqlite3
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal, Self, overload

from agent.domain.forecast import (
    ForecastSettings,
    HistorySummary,
    PastItem,
    PastReading,
    SummarizedReadings,
    extend,
    summarize_history,
)
from agent.domain.forecast.trends import (
    HISTORY_WINDOW,
    Point,
    anomaly_after,
    build_view,
    summarize_points,
)
from agent.store.sqlite import (
    COMMIT_CHECKPOINT_PAGES,
    Quarantine,
    check_intact,
    create_private_file,
    immediate_transaction,
    is_corruption,
    make_private_dir,
    quarantine_file,
    restore_rows,
    salvage_rows,
)
from protocols.errors import CbsError
from protocols.key_session import KeySession

__all__ = ["HistoryError", "VehicleHistory", "VehicleReadings", "pack_summary", "unpack_summary"]

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 2
# Schema 1 kept the summaries WITHOUT ROWID, with triggers that deleted them: its rows are
# copied into schema 2's table once (derived data, but copying is cheaper than summarising
# every vehicle again at its next visit).
_FROM_SCHEMA_1 = """
DROP TRIGGER IF EXISTS readings_insert_forgets_summary;
DROP TRIGGER IF EXISTS readings_delete_forgets_summary;
DROP TRIGGER IF EXISTS readings_update_forgets_summary;
ALTER TABLE summaries RENAME TO summaries_schema_1;
"""
_FROM_SCHEMA_1_AFTER = """
INSERT INTO summaries SELECT vin, readings, oldest_us, summary FROM summaries_schema_1;
DROP TABLE summaries_schema_1;
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    readout_id TEXT PRIMARY KEY,
    vin        TEXT NOT NULL,
    read_at_us INTEGER NOT NULL,  -- microseconds since the epoch, UTC
    key_id     INTEGER NOT NULL,
    data_date  TEXT NOT NULL,     -- ISO date
    mileage_km INTEGER NOT NULL,
    items      TEXT NOT NULL      -- JSON: [[index, code, remaining_km, availability_pct,
                                  --         service_count, last_service_km], ...]
);
CREATE INDEX IF NOT EXISTS readings_by_vin ON readings (vin, read_at_us);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (read_at_us);
-- Per VIN, what the forecast reads of its readings (agent.domain.forecast.HistorySummary),
-- written by the transaction that records a readout. Any change to a VIN's readings, by
-- whoever makes it (another process, an older agent, a salvage), marks its row stale
-- (readings = -1) or deletes it through the triggers below; a VIN without a row that
-- stands is summarised from its readings.
--
-- A rowid table, not WITHOUT ROWID: a row is ~0.5 kB, and a WITHOUT ROWID table keeps whole
-- rows in its interior pages too (six or seven to a page: seven levels over a large
-- dealer's 100,000 vehicles, each a page to read and, at a split, to write). Here the VIN's
-- index is small and shallow, the rows' own tree has rowids alone inside, and a readout's
-- write changes its row in place (the upsert keeps its rowid): one leaf.
CREATE TABLE IF NOT EXISTS summaries (
    vin       TEXT PRIMARY KEY,
    readings  INTEGER NOT NULL,  -- the VIN's rows in readings; -1: stale, summarise again
    oldest_us INTEGER NOT NULL,  -- their oldest read_at_us
    summary   BLOB NOT NULL      -- pack_summary(): zlib of HistorySummary.to_packed()
);
CREATE TRIGGER IF NOT EXISTS readings_insert_stales_summary AFTER INSERT ON readings
BEGIN UPDATE summaries SET readings = -1 WHERE vin = NEW.vin; END;
CREATE TRIGGER IF NOT EXISTS readings_delete_forgets_summary AFTER DELETE ON readings
BEGIN DELETE FROM summaries WHERE vin = OLD.vin; END;
CREATE TRIGGER IF NOT EXISTS readings_update_stales_summary AFTER UPDATE ON readings
BEGIN UPDATE summaries SET readings = -1 WHERE vin IN (OLD.vin, NEW.vin); END;
"""
_COLUMNS = ("readout_id", "vin", "read_at_us", "key_id", "data_date", "mileage_km", "items")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_CACHE_READINGS = 1000  # about 1 MB
PRUNE_BATCH_ROWS = 500  # readings past retention_days deleted per readout recorded, at most
# Summary rows kept unpacked, with the bytes they were unpacked from (see _summary_row).
UNPACKED_SUMMARIES = 64
_PAGE_CACHE_KIB = 1024  # SQLite's own page cache (the default is 2 MiB)

# A cached reading: its sort key as in the file (read_at_us, readout_id), then the value.
_Cached = tuple[int, str, PastReading]


class HistoryError(CbsError):
    """The vehicle history cannot be read or written (disk full, read-only, locked too long)."""


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("read_at must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _sort_key(row: tuple[int, str, object]) -> tuple[int, str]:
    return row[0], row[1]


def pack_summary(summary: HistorySummary) -> bytes:
    """A summary row's ``summary``: its packed integers, compressed (most are small: a
    vehicle with 30 visits takes about half a kilobyte; unpacking costs ~10 µs). Level 1:
    written at every readout, level 6 cost ~60 µs a readout on a large dealer's summaries
    against ~30 µs, for 0.15 % of the file's size; any level reads back alike."""
    return zlib.compress(summary.to_packed(), 1)


def unpack_summary(blob: bytes) -> HistorySummary | None:
    """What :func:`pack_summary` packed; None for a form this agent does not know."""
    try:
        return HistorySummary.from_packed(zlib.decompress(blob))
    except (zlib.error, ValueError, IndexError):
        return None


def _select(conn: sqlite3.Connection, vin: str, *, until_us: int | None = None) -> list[PastReading]:
    """The VIN's readouts (read at or before ``until_us``), oldest first."""
    return [reading for _, _, reading in _select_keyed(conn, vin, until_us=until_us)]


def _select_keyed(conn: sqlite3.Connection, vin: str, *,
                  until_us: int | None = None) -> list[_Cached]:
    limit = until_us if until_us is not None else 2**63 - 1
    rows = conn.execute(
        "SELECT readout_id, read_at_us, key_id, data_date, mileage_km, items FROM readings "
        "WHERE vin = ? AND read_at_us <= ? ORDER BY read_at_us, readout_id", (vin, limit)).fetchall()
    if not rows:
        return []
    # One JSON parse for all of the vehicle's rows, and the values built positionally: with a
    # few dozen visits per vehicle, building them was most of a cold read's time.
    items_of = json.loads("[" + ",".join([row[5] for row in rows]) + "]")
    return [(us, rid, PastReading(rid, vin, _EPOCH + timedelta(microseconds=us), key_id,
                                  date.fromisoformat(data_date), km,
                                  tuple([PastItem(*fields) for fields in items])))
            for (rid, us, key_id, data_date, km, _), items in zip(rows, items_of, strict=True)]


class VehicleReadings(SummarizedReadings):
    """One VIN's readouts as :meth:`VehicleHistory.readings` gives them: a sequence, oldest
    first, read from the file when first read (as the file has them then), and the summary
    the file keeps next to them, which is all a forecast reads."""

    __slots__ = ("_count", "_load", "_rows", "_summary", "_vin")

    def __init__(self, load: Callable[[str], list[PastReading]], vin: str, count: int,
                 summary: HistorySummary | None, rows: list[PastReading] | None = None) -> None:
        self._load = load
        self._vin = vin
        self._count = count
        self._summary = summary
        self._rows = rows

    def _readings(self) -> list[PastReading]:
        if self._rows is None:
            self._rows = self._load(self._vin)
        return self._rows

    def summary_until(self, read_at: datetime) -> HistorySummary | None:
        summary = self._summary
        if summary is None or (summary.read_until_us is not None
                               and summary.read_until_us > _to_us(read_at)):
            return None
        return summary

    def __len__(self) -> int:
        return self._count if self._rows is None else len(self._rows)

    @overload
    def __getitem__(self, index: int) -> PastReading: ...

    @overload
    def __getitem__(self, index: slice) -> list[PastReading]: ...

    def __getitem__(self, index: int | slice) -> PastReading | list[PastReading]:
        return self._readings()[index]

    def __iter__(self) -> Iterator[PastReading]:
        return iter(self._readings())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return self._readings() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"VehicleReadings({self._vin!r}, {self._readings()!r})"


class VehicleHistory:
    """Earlier readouts by VIN. Thread-safe; several processes may share the file."""

    def __init__(self, path: str | Path, *, retention_days: int = 3 * 365, max_per_vehicle: int = 50,
                 synchronous: Literal["FULL", "NORMAL"] = "FULL", busy_timeout_s: float = 10.0,
                 settings: ForecastSettings | None = None,
                 cache_readings: int = DEFAULT_CACHE_READINGS) -> None:
        if retention_days < 1 or max_per_vehicle < 1:
            raise ValueError("retention_days and max_per_vehicle must be at least 1")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = Path(path)
        self.retention_days = retention_days
        self.max_per_vehicle = max_per_vehicle
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._settings = settings if settings is not None else ForecastSettings()
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "recorded": 0, "duplicates": 0, "stale_keys": 0, "odometer_rollbacks": 0,
            "implausible_segments": 0, "pruned": 0}
        self.cache_readings = max(0, cache_readings)
        self._cache: OrderedDict[str, list[_Cached]] = OrderedDict()  # VIN -> as in the file
        self._cached = 0  # readings in the cache
        self._data_version: int | None = None
        self._writes = 0  # transactions of ours (SQLite's data_version counts only others')
        self._oldest_us: int | None = None  # oldest read_at_us in the file; None: unknown
        # VIN -> (summary row's bytes, their summary): the newest few read or written.
        self._unpacked: OrderedDict[str, tuple[bytes, HistorySummary]] = OrderedDict()
        #: One line on the damaged file moved aside at open (see agent/store/sqlite.py).
        self.quarantined: str | None = None
        self._conn = self._open()

    # --- opening ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        create_private_file(self.path)
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("vehicle history %s: journal mode is %s, not WAL", self.path, mode)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")  # readings are cached anyway
            conn.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise HistoryError(f"{self.path}: schema version {version} is newer than this agent's "
                                   f"({_SCHEMA_VERSION})")
            check_intact(conn, self.path)
            before, after = (_FROM_SCHEMA_1, _FROM_SCHEMA_1_AFTER) if version == 1 else ("", "")
            conn.executescript("BEGIN IMMEDIATE;" + before + _SCHEMA + after
                               + f"PRAGMA user_version={_SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        make_private_dir(self.path.parent)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not is_corruption(exc):
                raise HistoryError(f"cannot open vehicle history {self.path}: {exc}") from exc
            try:
                quarantine = quarantine_file(self.path, str(exc))
            except OSError as error:
                raise HistoryError(f"vehicle history {self.path} is unreadable ({exc}) and "
                                   f"cannot be moved aside: {error}") from exc
            rows = salvage_rows(quarantine.aside, "readings", _COLUMNS)
            try:
                conn = self._connect()
                salvaged = restore_rows(conn, "readings", _COLUMNS, rows)
            except sqlite3.Error as again:
                raise HistoryError(f"cannot open vehicle history {self.path}: {again}") from again
            self.quarantined = Quarantine(quarantine.path, quarantine.aside, quarantine.at,
                                          quarantine.reason, salvaged).describe()
            log.error("vehicle history %s", self.quarantined)
            return conn

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(
            self._conn, self._lock, lambda exc: HistoryError(f"vehicle history {self.path}: {exc}"))

    # --- the cache ----------------------------------------------------------------------------
    def _fresh(self, conn: sqlite3.Connection) -> None:
        """Forget the cache if another connection has committed since we last looked."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()
            self._cached = 0
            self._oldest_us = None

    def _rows(self, conn: sqlite3.Connection, vin: str) -> list[_Cached]:
        """The VIN's rows as in the file (a list the caller must not change)."""
        rows = self._cache.get(vin)
        if rows is None:
            rows = _select_keyed(conn, vin)
            self._remember_rows(vin, rows)
        else:
            self._cache.move_to_end(vin)
        return rows

    def _remember_rows(self, vin: str, rows: list[_Cached]) -> None:
        old = self._cache.pop(vin, None)
        self._cached -= len(old) if old is not None else 0
        if len(rows) > self.cache_readings:
            return
        self._cache[vin] = rows
        self._cached += len(rows)
        while self._cached > self.cache_readings:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)

    # --- API ----------------------------------------------------------------------------------
    def readings(self, vin: str) -> VehicleReadings:
        """The VIN's readouts, oldest first (by ``read_at``), with their summary when the file
        keeps one: then they are read from the file only when something reads them (the
        forecast reads the summary: one primary-key lookup)."""
        with self._lock:
            try:
                self._fresh(self._conn)
                kept = self._summary_row(self._conn, vin)
                cached = self._cache.get(vin)
                if kept is None or cached is not None:
                    rows = [reading for _, _, reading in self._rows(self._conn, vin)]
                    return VehicleReadings(self._load, vin, len(rows),
                                           None if kept is None else kept[2], rows)
                return VehicleReadings(self._load, vin, kept[0], kept[2])
            except sqlite3.Error as exc:
                raise HistoryError(f"vehicle history {self.path}: {exc}") from exc

    def version(self) -> tuple[int, int]:
        """A value that changes whenever the file's readings may have: a commit of another
        connection (SQLite's ``data_version``) or one of this object's own.

        Why: a forecast prepared from the history before a session's END frame
        (agent/pipeline.py) stands only if nothing was written in between."""
        with self._lock:
            try:
                return self._conn.execute("PRAGMA data_version").fetchone()[0], self._writes
            except sqlite3.Error as exc:
                raise HistoryError(f"vehicle history {self.path}: {exc}") from exc

    def _load(self, vin: str) -> list[PastReading]:
        with self._lock:
            try:
                self._fresh(self._conn)
                return [reading for _, _, reading in self._rows(self._conn, vin)]
            except sqlite3.Error as exc:
                raise HistoryError(f"vehicle history {self.path}: {exc}") from exc

    def _summary_row(self, conn: sqlite3.Connection, vin: str) -> tuple[int, int, HistorySummary] | None:
        """(rows, oldest read_at_us, summary) of the VIN as its summary row keeps them.

        A readout's forecast reads its vehicle's row and its record reads it again a moment
        later; unpacking it (decompress, build the lists) was most of each lookup. The newest
        ``UNPACKED_SUMMARIES`` unpacked rows are kept with their bytes, and a row whose bytes
        are the same is not unpacked again: equal bytes are the same summary, whoever wrote
        them and whatever happened in between."""
        row = conn.execute("SELECT readings, oldest_us, summary FROM summaries "
                           "WHERE vin = ? AND readings >= 0", (vin,)).fetchone()
        if row is None:
            return None
        blob = row[2]
        known = self._unpacked.get(vin)
        if known is not None and known[0] == blob:
            summary: HistorySummary | None = known[1]
        else:
            summary = unpack_summary(blob)
            if summary is not None:
                self._keep_unpacked(vin, blob, summary)
        return None if summary is None else (row[0], row[1], summary)

    def _keep_unpacked(self, vin: str, blob: bytes, summary: HistorySummary) -> None:
        unpacked = self._unpacked
        unpacked[vin] = (blob, summary)
        unpacked.move_to_end(vin)
        while len(unpacked) > UNPACKED_SUMMARIES:
            unpacked.popitem(last=False)

    def record(self, session: KeySession, read_at: datetime, readout_id: str) -> None:
        """Keep this readout (idempotent on ``readout_id``) and prune; an anomaly against the
        earlier readouts (stale key, odometer rollback) is logged and counted, and the readout
        is kept all the same: the forecast ignores it where it matters."""
        self.record_many([(session, read_at, readout_id)])

    def record_many(self, readouts: Iterable[tuple[KeySession, datetime, str]]) -> None:
        """:meth:`record` each ``(session, read_at, readout_id)`` in order, in one transaction
        (a busy reader's batch costs one commit). Raises HistoryError (none kept)."""
        prepared = [self._prepare(*entry) for entry in readouts]
        if not prepared:
            return
        anomalies: list[tuple[str, KeySession, PastReading]] = []
        try:
            with self._transaction() as conn:
                self._fresh(conn)  # under BEGIN IMMEDIATE: nobody else writes until we commit
                for session, at_us, reading, items in prepared:
                    anomaly = self._record_in(conn, session, at_us, reading, items)
                    if anomaly is not None:
                        anomalies.append((anomaly, session, reading))
        except BaseException:
            self._cache.clear()  # rolled back: the file decides again
            self._cached = 0
            self._oldest_us = None
            raise
        finally:
            self._writes += 1
        for anomaly, session, reading in anomalies:
            log.warning("readout %s of %s: %s (data date %s, %d km); the forecast ignores it",
                        reading.readout_id, session.vin, anomaly.replace("_", " "),
                        reading.data_date, reading.mileage_km)

    @staticmethod
    def _prepare(session: KeySession, read_at: datetime,
                 readout_id: str) -> tuple[KeySession, int, PastReading, str]:
        at_us = _to_us(read_at)
        reading = PastReading.from_session(session, read_at.astimezone(UTC), readout_id)
        items = json.dumps([[i.index, i.code, i.remaining_km, i.availability_pct, i.service_count,
                             i.last_service_km] for i in reading.items], separators=(",", ":"))
        return session, at_us, reading, items

    def _record_in(self, conn: sqlite3.Connection, session: KeySession, at_us: int,
                   reading: PastReading, items: str) -> str | None:
        """One readout inside the caller's transaction; the cache follows at once (the caller
        empties it if the transaction fails). Returns the anomaly, if any.

        The VIN's summary row is written last (the triggers deleted it). A readout read after
        all of the VIN's others, with none of them due to go (the age bound, the count bound,
        the window), extends the old summary by one step without reading the VIN's rows; any
        other readout is summarised again from them."""
        vin = session.vin
        readout_id = reading.readout_id
        cutoff_us = at_us - self.retention_days * 86_400_000_000
        before = self._summary_row(conn, vin)
        extended = None
        if before is not None and before[0] < self.max_per_vehicle and before[1] >= cutoff_us:
            extended = extend(before[2], reading, self._settings)
        # The row stands for all of the VIN's rows, none aged, all read before this one, and
        # they are not in memory: a full window (or count bound) summarised from the rows
        # as stored, without building readouts of them.
        from_rows = (extended is None and before is not None and vin not in self._cache
                     and before[1] >= cutoff_us and before[2].stands_for(self._settings)
                     and before[2].read_until_us is not None and before[2].read_until_us < at_us)
        rows = self._rows(conn, vin) if extended is None and not from_rows else []
        if conn.execute("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (readout_id, vin, at_us, session.key_id, reading.data_date.isoformat(),
                         reading.mileage_km, items)).rowcount == 0:
            self.counters["duplicates"] += 1
            return None
        pruned = self._prune_aged(conn, vin, at_us, cutoff_us)
        if extended is not None and before is not None:
            summary, anomaly = extended
            count, oldest_us = before[0] + 1, min(before[1], at_us)
            self._forget_rows(vin)  # not read here: the file says at the next readings()
        elif from_rows and before is not None:
            count, oldest_us, summary, excess = self._summary_from_rows(conn, vin)
            pruned += excess
            anomaly = anomaly_after(before[2], reading, self._settings)
        else:
            earlier = [r for us, _, r in rows if us <= at_us]
            # This VIN's rows after the insert and the age bound, as the file now has them;
            # the oldest beyond max_per_vehicle go (the newest are kept, by read_at, then id).
            kept = [row for row in rows if row[0] >= cutoff_us]
            bisect.insort(kept, (at_us, readout_id, reading), key=_sort_key)
            excess = len(kept) - self.max_per_vehicle
            if excess > 0:
                conn.executemany("DELETE FROM readings WHERE readout_id = ?",
                                 [(rid,) for _, rid, _ in kept[:excess]])
                pruned += excess
                kept = kept[excess:]
            self._remember_rows(vin, kept)
            count, oldest_us = len(kept), kept[0][0]
            summary = summarize_history([r for _, _, r in kept], vin, self._settings)
            if (before is not None and before[0] == len(rows) == len(earlier)
                    and before[2].stands_for(self._settings)
                    and (before[2].read_until_us or 0) < at_us):
                # The row summarises the VIN's rows as they were before this readout (the
                # triggers drop it on any change), all read before it: the walk's next step
                # is the anomaly, without walking them again (a window-full vehicle's case).
                anomaly = anomaly_after(before[2], reading, self._settings)
            else:
                anomaly = build_view(earlier, reading, self._settings).current_anomaly
        packed = pack_summary(summary)
        conn.execute("INSERT INTO summaries VALUES (?, ?, ?, ?) ON CONFLICT (vin) DO UPDATE SET "
                     "readings = excluded.readings, oldest_us = excluded.oldest_us, "
                     "summary = excluded.summary", (vin, count, oldest_us, packed))
        self._keep_unpacked(vin, packed, summary)  # by its bytes: stands even if rolled back
        self.counters["recorded"] += 1
        self.counters["pruned"] += max(0, pruned)
        if anomaly is not None:
            self.counters[anomaly + "s"] += 1
        return anomaly

    def _summary_from_rows(self, conn: sqlite3.Connection,
                           vin: str) -> tuple[int, int, HistorySummary, int]:
        """(rows kept, oldest read_at_us, summary, rows deleted) of the VIN after its oldest
        rows beyond ``max_per_vehicle`` went, read as the walk's points straight from the rows.

        Why: a vehicle at its window takes its oldest reading out at every readout, so its
        summary is walked again from its rows (3-4 % of a large dealer's readouts). Building
        readouts of its 50 rows first (dates, items, objects) was a quarter of that walk's
        1.9 ms (docs/performance.md, 2c); the walk reads only a day, the km and the items'
        figures, which the rows hold as they are. The order and the window are :func:`summarize`'s,
        so the summary is the one it gives on the readings (tests/agent/test_history_summary.py)."""
        rows = conn.execute("SELECT read_at_us, readout_id, data_date, mileage_km, items "
                            "FROM readings WHERE vin = ? ORDER BY read_at_us, readout_id",
                            (vin,)).fetchall()
        excess = max(0, len(rows) - self.max_per_vehicle)
        if excess:
            conn.executemany("DELETE FROM readings WHERE readout_id = ?",
                             [(row[1],) for row in rows[:excess]])
            rows = rows[excess:]
        # summarize's order: read_at, then data date (ISO text sorts as the dates), km, id
        window = sorted(rows, key=lambda row: (row[0], row[2], row[3], row[1]))[-HISTORY_WINDOW:]
        items_of = json.loads("[" + ",".join([row[4] for row in window]) + "]")
        points: list[Point] = [(date.fromisoformat(row[2]).toordinal(), row[3], items)
                               for row, items in zip(window, items_of, strict=True)]
        summary = summarize_points(points, window[-1][0], self._settings)
        return len(rows), rows[0][0], summary, excess

    def _prune_aged(self, conn: sqlite3.Connection, vin: str, at_us: int, cutoff_us: int) -> int:
        """Readings past the age bound: all of this VIN's, then at most PRUNE_BATCH_ROWS of
        other vehicles'. A retention made shorter on a history of years is worked off a batch
        per readout, never in one transaction that holds the loop. Returns the rows deleted;
        when there were any, the cache is emptied (other vehicles lost readings too)."""
        if self._oldest_us is None:
            oldest = conn.execute("SELECT min(read_at_us) FROM readings").fetchone()[0]
            self._oldest_us = at_us if oldest is None else oldest
        if self._oldest_us >= cutoff_us:  # nothing is that old: skip the DELETE
            self._oldest_us = min(self._oldest_us, at_us)
            return 0
        aged = conn.execute("DELETE FROM readings WHERE vin = ? AND read_at_us < ?",
                            (vin, cutoff_us)).rowcount
        aged += conn.execute("DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings "
                             "WHERE read_at_us < ? LIMIT ?)", (cutoff_us, PRUNE_BATCH_ROWS)).rowcount
        oldest = conn.execute("SELECT min(read_at_us) FROM readings").fetchone()[0]
        self._oldest_us = at_us if oldest is None else oldest
        if aged:
            self._cache.clear()
            self._cached = 0
        return aged

    def _forget_rows(self, vin: str) -> None:
        old = self._cache.pop(vin, None)
        self._cached -= len(old) if old is not None else 0

    def cache_size(self) -> int:
        """Readings held in memory (at most ``cache_readings``)."""
        return self._cached

    def vehicle_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(DISTINCT vin) FROM readings").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
