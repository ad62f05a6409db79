"""The readouts this desk has seen, kept on disk so that a vehicle's earlier visits survive a
restart of the desk (``{state_dir}/desk-visits.sqlite3``).

The broker keeps only each vehicle's latest readout (retained ``vehicles/{vin}``); a desk that
restarts would otherwise show no earlier visit until the vehicle comes back twice. A
convenience, not a record: writes are not fsynced (``synchronous=NORMAL``), at most
``per_vehicle`` readouts are kept per vehicle and none older than ``retention_days``, and a
failing disk is logged and otherwise ignored (the desk goes on without it).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["VisitStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readouts (
    readout_id TEXT PRIMARY KEY,
    vin        TEXT NOT NULL,
    read_at    TEXT NOT NULL,
    stored_at  REAL NOT NULL,
    payload    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readouts_vin ON readouts (vin, read_at);
"""


class VisitStore:
    """Readouts by vehicle. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path, *, per_vehicle: int = 21, retention_days: int = 3 * 365,
                 max_vehicles: int = 2000) -> None:
        self.path = path
        self.per_vehicle = per_vehicle
        self.retention_s = retention_days * 86400.0
        self.max_vehicles = max_vehicles
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def add(self, readout: dict[str, Any]) -> None:
        """Keep one readout (a redelivery is ignored); never raises."""
        vin = (readout.get("vehicle") or {}).get("vin")
        readout_id, read_at = readout.get("readout_id"), readout.get("read_at")
        if not all(isinstance(x, str) for x in (vin, readout_id, read_at)):
            return
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("INSERT OR IGNORE INTO readouts VALUES (?, ?, ?, ?, ?)",
                                     (readout_id, vin, read_at, time.time(),
                                      json.dumps(readout, ensure_ascii=False)))
                    self._db.execute(
                        "DELETE FROM readouts WHERE vin = ? AND readout_id NOT IN (SELECT "
                        "readout_id FROM readouts WHERE vin = ? ORDER BY read_at DESC LIMIT ?)",
                        (vin, vin, self.per_vehicle))
                    self._db.execute("DELETE FROM readouts WHERE stored_at < ?",
                                     (time.time() - self.retention_s,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            log.warning("desk: %s: cannot keep readout %s: %s", self.path, readout_id, exc)

    def load(self) -> Iterator[dict[str, Any]]:
        """The kept readouts of the most recently read vehicles, oldest first."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT payload FROM readouts WHERE vin IN (SELECT vin FROM readouts "
                    "GROUP BY vin ORDER BY max(read_at) DESC LIMIT ?) ORDER BY read_at",
                    (self.max_vehicles,)).fetchall()
        except sqlite3.Error as exc:
            log.warning("desk: %s: cannot read the kept readouts: %s", self.path, exc)
            return
        for (payload,) in rows:
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield data

    def close(self) -> None:
        with self._lock:
            self._db.close()
