"""Every diagnosis report of every vehicle, kept per VIN (``state_dir/diagnoses.sqlite3``).

The vehicle history keeps each report (its JSON, as published), so that the next visit can
tell a fault seen again (:meth:`DiagnosisHistory.confirmed_before`: the confirmed faults of the
vehicle's latest earlier report). Reports without a VIN are not kept. Several processes may
share the file (``cbs-agent diagnose`` beside the daemon). Failures raise
:class:`DiagnosisHistoryError` with the path and SQLite's reason.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Self

from agent.store.sqlite import immediate_transaction
from protocols.errors import CbsError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    diagnosis_id  TEXT PRIMARY KEY,
    vin           TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    stored_at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_vin ON reports (vin, started_at);
"""


class DiagnosisHistoryError(CbsError):
    """The report history cannot be opened, read or written."""


class DiagnosisHistory:
    """Reports by VIN. Thread-safe."""

    def __init__(self, path: str | Path, *, max_per_vehicle: int = 50,
                 busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.max_per_vehicle = max(1, max_per_vehicle)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise self._error("cannot open", exc) from exc

    def _error(self, doing: str, exc: sqlite3.Error) -> DiagnosisHistoryError:
        return DiagnosisHistoryError(f"diagnosis history {self.path}: {doing}: {exc}")

    def confirmed_before(self, vin: str, started_at: str) -> set[tuple[int, str]]:
        """(ECU address, code) of each confirmed DTC in the vehicle's latest report that
        started before ``started_at`` (ISO text, as in the payload); empty if none."""
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT payload FROM reports WHERE vin = ? AND started_at < ? "
                    "ORDER BY started_at DESC LIMIT 1", (vin, started_at)).fetchone()
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from exc
        if row is None:
            return set()
        try:
            report = json.loads(row[0])
            return {(int(ecu["address"]), str(dtc["code"])) for ecu in report.get("ecus", [])
                    for dtc in ecu.get("dtcs") or () if dtc.get("confirmed")}
        except (ValueError, TypeError, KeyError, AttributeError):
            return set()  # a report this version cannot read is no evidence

    def record(self, diagnosis_id: str, vin: str, started_at: str, payload_json: str) -> None:
        """Keep one report (idempotent on ``diagnosis_id``); the vehicle keeps its newest
        ``max_per_vehicle``."""
        with immediate_transaction(self._conn, self._lock,
                                   lambda exc: self._error("cannot store", exc)) as conn:
            conn.execute("INSERT OR IGNORE INTO reports VALUES (?, ?, ?, ?, ?)",
                         (diagnosis_id, vin, started_at, payload_json, time.time()))
            conn.execute(
                "DELETE FROM reports WHERE vin = ? AND diagnosis_id NOT IN (SELECT diagnosis_id "
                "FROM reports WHERE vin = ? ORDER BY started_at DESC LIMIT ?)",
                (vin, vin, self.max_per_vehicle))

    def reports(self, vin: str) -> list[str]:
        """The vehicle's kept reports (JSON), oldest first."""
        try:
            with self._lock:
                rows = self._conn.execute("SELECT payload FROM reports WHERE vin = ? "
                                          "ORDER BY started_at", (vin,)).fetchall()
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from exc
        return [str(row[0]) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
