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
oldest go). Both are enforced in the transaction that records a readout.

The history is advisory: losing it costs forecast quality, never a readout. A file that is
not a SQLite database is moved aside (``*.corrupt-N``) and a new one started, with an error
logged. Other SQLite failures are raised as :class:`HistoryError`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal, Self

from agent.forecast import ForecastSettings, PastItem, PastReading
from agent.forecast.trends import build_view
from protocols.errors import CbsError
from protocols.key_session import KeySession

__all__ = ["HistoryError", "VehicleHistory"]

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
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
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HistoryError(CbsError):
    """The vehicle history cannot be read or written (disk full, read-only, locked too long)."""


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("read_at must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _select(conn: sqlite3.Connection, vin: str, *, until_us: int | None = None) -> list[PastReading]:
    """The VIN's readouts (read at or before ``until_us``), oldest first."""
    limit = until_us if until_us is not None else 2**63 - 1
    rows = conn.execute(
        "SELECT readout_id, read_at_us, key_id, data_date, mileage_km, items FROM readings "
        "WHERE vin = ? AND read_at_us <= ? ORDER BY read_at_us, readout_id", (vin, limit)).fetchall()
    return [PastReading(readout_id=rid, vin=vin, read_at=_from_us(us), key_id=key_id,
                        data_date=date.fromisoformat(data_date), mileage_km=km,
                        items=tuple(PastItem(*fields) for fields in json.loads(items)))
            for rid, us, key_id, data_date, km, items in rows]


class VehicleHistory:
    """Earlier readouts by VIN. Thread-safe; several processes may share the file."""

    def __init__(self, path: str | Path, *, retention_days: int = 3 * 365, max_per_vehicle: int = 50,
                 synchronous: Literal["FULL", "NORMAL"] = "FULL", busy_timeout_s: float = 10.0,
                 settings: ForecastSettings | None = None) -> None:
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
        self._conn = self._open()

    # --- opening ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("vehicle history %s: journal mode is %s, not WAL", self.path, mode)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise HistoryError(f"{self.path}: schema version {version} is newer than this agent's "
                                   f"({_SCHEMA_VERSION})")
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA
                               + f"PRAGMA user_version={_SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, disk I/O
                raise HistoryError(f"cannot open vehicle history {self.path}: {exc}") from exc
            aside = self._move_aside()
            log.error("vehicle history %s is unreadable (%s); moved to %s, starting afresh",
                      self.path, exc, aside)
            try:
                return self._connect()
            except sqlite3.Error as again:
                raise HistoryError(f"cannot open vehicle history {self.path}: {again}") from again

    def _move_aside(self) -> Path:
        n = 1
        while (aside := self.path.with_name(f"{self.path.name}.corrupt-{n}")).exists():
            n += 1
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        return aside

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise HistoryError(f"vehicle history {self.path}: {exc}") from exc

    # --- API ----------------------------------------------------------------------------------
    def readings(self, vin: str) -> list[PastReading]:
        """The VIN's readouts, oldest first (by ``read_at``)."""
        with self._lock:
            try:
                return _select(self._conn, vin)
            except sqlite3.Error as exc:
                raise HistoryError(f"vehicle history {self.path}: {exc}") from exc

    def record(self, session: KeySession, read_at: datetime, readout_id: str) -> None:
        """Keep this readout (idempotent on ``readout_id``) and prune; an anomaly against the
        earlier readouts (stale key, odometer rollback) is logged and counted, and the readout
        is kept all the same: the forecast ignores it where it matters."""
        at_us = _to_us(read_at)
        reading = PastReading.from_session(session, read_at.astimezone(UTC), readout_id)
        items = json.dumps([[i.index, i.code, i.remaining_km, i.availability_pct, i.service_count,
                             i.last_service_km] for i in reading.items], separators=(",", ":"))
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM readings WHERE readout_id = ?", (readout_id,)).fetchone():
                self.counters["duplicates"] += 1
                return
            earlier = _select(conn, session.vin, until_us=at_us)
            conn.execute("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (readout_id, session.vin, at_us, session.key_id,
                          reading.data_date.isoformat(), reading.mileage_km, items))
            pruned = conn.execute("DELETE FROM readings WHERE read_at_us < ?",
                                  (at_us - self.retention_days * 86_400_000_000,)).rowcount
            pruned += conn.execute(
                "DELETE FROM readings WHERE vin = ? AND readout_id NOT IN (SELECT readout_id FROM "
                "readings WHERE vin = ? ORDER BY read_at_us DESC, readout_id DESC LIMIT ?)",
                (session.vin, session.vin, self.max_per_vehicle)).rowcount
            self.counters["recorded"] += 1
            self.counters["pruned"] += max(0, pruned)
            anomaly = build_view(earlier, reading, self._settings).current_anomaly
            if anomaly is not None:
                self.counters[anomaly + "s"] += 1
        if anomaly is not None:
            log.warning("readout %s of %s: %s (data date %s, %d km); the forecast ignores it",
                        readout_id, session.vin, anomaly.replace("_", " "), reading.data_date,
                        reading.mileage_km)

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
