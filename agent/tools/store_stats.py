"""``cbs-agent store stats``: what each store in the state directory holds and what it costs on
disk, read-only, safe while the agent runs.

For the outbox, the vehicle history and the reminder store: the file's size, its write-ahead
log's, the free pages SQLite would reuse (or give back with ``VACUUM``), and the rows that
matter (messages waiting and the oldest one's age; readings, vehicles and the time span they
cover; kept vehicles and sent reminders). The counts are SQL over the stores' own tables, so
the command needs no settings beyond the directory.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

__all__ = ["StoreStats", "print_store_stats", "store_stats"]

_US = 1_000_000


@dataclass(frozen=True)
class StoreStats:
    """One store file: sizes in bytes, and its counts by name (None: the file is missing)."""

    name: str
    path: str
    exists: bool
    file_bytes: int = 0
    wal_bytes: int = 0
    free_bytes: int = 0
    counts: dict[str, int | float | str | None] = field(default_factory=dict)
    error: str | None = None


def _iso_us(value: int | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / _US, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _outbox(conn: sqlite3.Connection) -> dict[str, int | float | str | None]:
    rows, oldest = conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    return {"messages": rows,
            "oldest_age_s": None if oldest is None else round(time.time() - oldest, 1)}


def _history(conn: sqlite3.Connection) -> dict[str, int | float | str | None]:
    rows, oldest, newest = conn.execute(
        "SELECT count(*), min(read_at_us), max(read_at_us) FROM readings").fetchone()
    vehicles = conn.execute("SELECT count(*) FROM (SELECT DISTINCT vin FROM readings)").fetchone()[0]
    return {"readings": rows, "vehicles": vehicles, "oldest": _iso_us(oldest),
            "newest": _iso_us(newest)}


def _reminders(conn: sqlite3.Connection) -> dict[str, int | float | str | None]:
    vehicles, oldest = conn.execute("SELECT count(*), min(read_at_us) FROM vehicles").fetchone()
    sent = conn.execute("SELECT count(*) FROM sent").fetchone()[0]
    return {"vehicles": vehicles, "oldest_read": _iso_us(oldest), "sent_reminders": sent}


_STORES: tuple[tuple[str, str, Callable[[sqlite3.Connection],
                                        dict[str, int | float | str | None]]], ...] = (
    ("outbox", "outbox.sqlite3", _outbox),
    ("history", "history.sqlite3", _history),
    ("reminders", "reminders.sqlite3", _reminders),
)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def store_stats(state_dir: Path) -> list[StoreStats]:
    """The stats of every store under ``state_dir``; a store that cannot be read says why in
    its ``error`` (never raises for one store)."""
    out = []
    for name, filename, count in _STORES:
        path = state_dir / filename
        if not path.exists():
            out.append(StoreStats(name, str(path), False))
            continue
        file_bytes, wal_bytes = _size(path), _size(path.with_name(path.name + "-wal"))
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
            try:
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page
                counts = count(conn)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            out.append(StoreStats(name, str(path), True, file_bytes, wal_bytes, error=str(exc)))
            continue
        out.append(StoreStats(name, str(path), True, file_bytes, wal_bytes, free, counts))
    return out


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f} MB"


def print_store_stats(state_dir: Path, out: TextIO, *, as_json: bool = False) -> int:
    """Print the stats (a line per store, or JSON); exit code 0, or 1 when no store exists
    or one could not be read."""
    stats = store_stats(state_dir)
    if as_json:
        out.write(json.dumps([asdict(s) for s in stats], indent=2) + "\n")
    else:
        out.write(f"state directory {state_dir}\n")
        for s in stats:
            if not s.exists:
                out.write(f"  {s.name:<9} (none)\n")
                continue
            if s.error is not None:
                out.write(f"  {s.name:<9} {_mb(s.file_bytes)}, unreadable: {s.error}\n")
                continue
            counts = ", ".join(f"{key.replace('_', ' ')} {value:,}" if isinstance(value, int)
                               else f"{key.replace('_', ' ')} {value}"
                               for key, value in s.counts.items())
            out.write(f"  {s.name:<9} {_mb(s.file_bytes)} (log {_mb(s.wal_bytes)}, free "
                      f"{_mb(s.free_bytes)}): {counts}\n")
    if not any(s.exists for s in stats) or any(s.error for s in stats):
        return 1
    return 0
