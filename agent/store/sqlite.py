"""The one way the agent's SQLite stores write: an immediate transaction under the store's lock,
rolled back on any exception, with SQLite's errors translated into the store's own.

And what every store does with a damaged file (a power cut on a cheap SD card, junk written
over pages): :func:`is_corruption` tells damage from a full or read-only disk,
:func:`quarantine_file` moves the file aside with a timestamp, :func:`salvage_rows` reads what
SQLite still can from it and :func:`restore_rows` puts that into the fresh file. A store then
goes on with the fresh file instead of failing on the damaged one forever.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)


@contextmanager
def immediate_transaction(conn: sqlite3.Connection, lock: threading.Lock | threading.RLock,
                          translate: Callable[[sqlite3.Error], Exception], *,
                          synchronous: Literal["FULL", "NORMAL"] | None = None
                          ) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``translate`` turns a SQLite error into the caller's
    error type (raised ``from`` it). ``synchronous``, if given, is set on the connection
    first (it cannot change inside a transaction, and stays set for the next one)."""
    with lock:
        try:
            if synchronous is not None:
                conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc) from exc


# -- private state: the files hold VINs and key ids ------------------------------------------------

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create the state directory 0700 whatever the umask (a directory that exists is left
    as it is: the CLI warns when others may write to it). Raises OSError."""
    if path.is_dir():
        return
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)  # the umask may have taken bits the owner needs


def create_private_file(path: Path) -> None:
    """Create a store's file 0600 before SQLite opens it, whatever the umask: SQLite would
    create it ``0644 & ~umask``, and gives its ``-wal`` and ``-shm`` the database file's
    mode. A file that exists with group or other bits is narrowed to 0600, with a warning.
    Never raises: where this cannot create the file, SQLite's open reports why."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                mode = name.stat().st_mode & 0o777
                if mode & 0o077:
                    os.chmod(name, PRIVATE_FILE_MODE)
                    log.warning("%s was mode %04o (readable by other users); now %04o", name,
                                mode, PRIVATE_FILE_MODE)
            except OSError:
                continue
        return
    except OSError:
        return
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)  # a umask of 0o200 or so would leave it unwritable


# -- a damaged file: quarantine, salvage, start afresh ---------------------------------------------

SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
SALVAGE_MAX_PROBES = 1000  # reads past damage while salvaging one table
SALVAGE_LINEAR_PROBES = 64  # one rowid further each time, then twice as far each time


def is_corruption(exc: BaseException) -> bool:
    """True when SQLite says the file is damaged ("database disk image is malformed", "file is
    not a database") — not when the disk is full, read-only or locked, which heal by
    themselves and must never cost the file."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc)
    return (isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
            and ("malformed" in text or "not a database" in text))


#: A file larger than this is checked page by page at open only after an unclean stop.
FULL_CHECK_MAX_BYTES = 64 * 1024 * 1024


def check_intact(conn: sqlite3.Connection, path: Path | None = None) -> None:
    """``PRAGMA quick_check`` (every page read once, no index cross-check): damage anywhere in
    the file raises sqlite3.DatabaseError now, at open, instead of on some later read.

    With ``path``, a file larger than :data:`FULL_CHECK_MAX_BYTES` that was closed cleanly
    (its write-ahead log is empty or gone: the last connection checkpointed it) gets only
    a read of its schema and of its first and last pages. A page by page check reads the
    whole file, about 4 s for years of a large dealer's history (750 MB), and start-up must
    not grow with the data kept. Damage comes from power cuts and dying cards, and a power
    cut leaves a log behind, so the file is then checked in full whatever its size. Damage
    a read finds later: the outbox heals at once, the history and the reminder store raise
    their error for that call (the readout goes on without them)."""
    if path is not None and not _needs_full_check(path):
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        tables = [str(row[0]) for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:  # the first and the last leaf of each table
            order = _storage_order(conn, table)
            conn.execute(f'SELECT * FROM "{table}" ORDER BY {order} LIMIT 1').fetchall()
            conn.execute(f'SELECT * FROM "{table}" ORDER BY {order} DESC LIMIT 1').fetchall()
        if pages <= 0:
            raise _malformed("no pages")
        return
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise _malformed("; ".join(problems))


def _storage_order(conn: sqlite3.Connection, table: str) -> str:
    """The key ``table``'s rows are stored in: ``rowid``, or for a ``WITHOUT ROWID`` table
    its primary key's columns (the only ones in a single-column key)."""
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (table,)).fetchone()[0] or ""
    if not sql.rstrip().rstrip(";").upper().endswith("WITHOUT ROWID"):
        return "rowid"
    key = sorted((int(row[5]), str(row[1])) for row in
                 conn.execute(f'PRAGMA table_info("{table}")') if int(row[5]) > 0)
    return ", ".join(f'"{name}"' for _, name in key)


def _malformed(why: str) -> sqlite3.DatabaseError:
    error = sqlite3.DatabaseError(f"database disk image is malformed ({why})")
    error.sqlite_errorcode = SQLITE_CORRUPT
    return error


def _needs_full_check(path: Path) -> bool:
    try:
        if path.stat().st_size <= FULL_CHECK_MAX_BYTES:
            return True
        wal = path.with_name(path.name + "-wal")
        return wal.exists() and wal.stat().st_size > 0
    except OSError:
        return True


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A damaged store file moved aside: where it went, when, why, what was recovered."""

    path: Path
    aside: Path
    at: datetime
    reason: str
    salvaged: int = 0

    def describe(self) -> str:
        return (f"{self.path} was damaged ({self.reason}); moved to {self.aside}, "
                f"{self.salvaged} row(s) salvaged into a fresh file")


def quarantine_file(path: Path, reason: str, *, now: datetime | None = None) -> Quarantine:
    """Rename ``path`` (and its ``-wal`` and ``-shm``) to ``{name}.corrupt-{UTC time}``; the
    caller has closed its connection. Raises OSError when the rename fails."""
    at = now if now is not None else datetime.now(timezone.utc)
    stamp = at.strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(aside.with_name(aside.name + suffix))
    return Quarantine(path, aside, at, reason)


def salvage_rows(aside: Path, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """The rows of ``table`` SQLite can still read from a quarantined file, in rowid order.

    Reads by rowid ranges: where a page is damaged the read stops, and it starts again one
    rowid further on (a damaged leaf page costs one probe per row it held, and the first row
    after it is found), then ever further for a long damaged stretch, at most
    :data:`SALVAGE_MAX_PROBES` times. When nothing is readable, the 100-byte file header may be
    what was hit: a copy with a rebuilt header (beside the file) is read instead. Never
    raises: nothing readable gives an empty list."""
    rows = _salvage(aside, table, columns)
    if rows:
        return rows
    repaired = aside.with_name(aside.name + ".header-rebuilt")
    try:
        size = aside.stat().st_size
        shutil.copyfile(aside, repaired)
        for page_size in (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512):
            if size < 2 * page_size or size % page_size:
                continue
            with repaired.open("r+b") as handle:
                handle.write(_header(page_size, size // page_size))
            rows = _salvage(repaired, table, columns)
            if rows:
                break
    except OSError:
        pass
    finally:
        for name in (repaired, repaired.with_name(repaired.name + "-wal"),
                     repaired.with_name(repaired.name + "-shm"),
                     repaired.with_name(repaired.name + "-journal")):
            try:
                name.unlink()
            except OSError:
                pass
    return rows


def _header(page_size: int, pages: int) -> bytes:
    """A database file header (https://sqlite.org/fileformat.html, section 1.3) for a file of
    ``pages`` pages of ``page_size`` bytes: rollback journal, no free list, UTF-8."""
    return b"".join([
        b"SQLite format 3\x00",
        (1 if page_size == 65536 else page_size).to_bytes(2, "big"),
        bytes([1, 1, 0, 64, 32, 32]),  # write/read version, reserved, payload fractions
        (1).to_bytes(4, "big"),  # change counter
        pages.to_bytes(4, "big"),  # size in pages
        bytes(8),  # free list: trunk page, count
        (1).to_bytes(4, "big"),  # schema cookie
        (4).to_bytes(4, "big"),  # schema format
        bytes(8),  # cache size, largest root page (no auto-vacuum)
        (1).to_bytes(4, "big"),  # text encoding: UTF-8
        bytes(12),  # user version, incremental vacuum, application id
        bytes(20),  # reserved
        (1).to_bytes(4, "big"),  # version-valid-for: the change counter
        (sqlite3.sqlite_version_info[0] * 1_000_000 + sqlite3.sqlite_version_info[1] * 1000
           + sqlite3.sqlite_version_info[2]).to_bytes(4, "big"),
    ])


def _salvage(aside: Path, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    try:
        conn = sqlite3.connect(aside, isolation_level=None)
        # Lets SQLite read a file shorter than its header says (cut by a power loss): without
        # it every read of a truncated file fails, with it the pages that are there are read.
        conn.execute("PRAGMA writable_schema=ON")
    except sqlite3.Error:
        return rows
    query = f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid"
    after, probes, misses = 0, 0, 0
    try:
        while probes <= SALVAGE_MAX_PROBES:
            try:
                for row in conn.execute(query, (after,)):
                    rows.append(tuple(row[1:]))
                    after, misses = int(row[0]), 0
                return rows
            except (sqlite3.Error, OverflowError, ValueError):
                probes += 1
                misses += 1
                after += 1 if misses <= SALVAGE_LINEAR_PROBES else 2 ** (misses - SALVAGE_LINEAR_PROBES)
                if after > 2**62:
                    break
    finally:
        conn.close()
    return rows


def scan_for_ids(paths: Sequence[Path], pattern: bytes) -> set[str]:
    """Every match of ``pattern``'s first group in the raw bytes of ``paths`` (a quarantined
    file and its ``-wal``): the ids of rows on pages SQLite can no longer read are still there
    as text. Includes rows deleted earlier whose bytes were not yet overwritten, so a match
    means "may not have been delivered", not "lost". Never raises."""
    found: set[str] = set()
    compiled = re.compile(pattern)
    for path in paths:
        try:
            with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                     access=mmap.ACCESS_READ) as data:
                found.update(match.group(1).decode("utf-8", "replace")
                             for match in compiled.finditer(data))
        except (OSError, ValueError):  # missing, empty (mmap of 0 bytes) or unreadable
            continue
    return found


def restore_rows(conn: sqlite3.Connection, table: str, columns: Sequence[str],
                 rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert salvaged ``rows`` into the fresh file's ``table`` in one transaction, skipping any
    that no longer fit its constraints; returns how many went in."""
    placeholders = ", ".join("?" for _ in columns)
    sql = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    restored = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for row in rows:
            try:
                restored += conn.execute(sql, row).rowcount
            except sqlite3.IntegrityError:
                continue
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return restored


# -- checkpoints off the service loop's thread ----------------------------------------------------

CHECKPOINT_INTERVAL_S = 0.5
CHECKPOINT_MIN_WAL_BYTES = 64 * 1024
#: A store's commit checkpoints by itself only when the log holds this many pages (SQLite's
#: default is 1000, about 4 MB): the stores' own checkpointers (the BackgroundCheckpointer,
#: the publisher's for the outbox) keep the logs below it, and it bounds them (about 40 MB)
#: where none runs. At 1000, a backlog on years of history (3 pages a readout in each of the
#: two large files) passed it between two background checkpoints, and the loop's commit then
#: copied the log into the file itself: the commits of 3,000 readouts held the loop 706 ms,
#: the longest 288 ms (docs/performance.md, "Years at a busy site", 2c).
COMMIT_CHECKPOINT_PAGES = 10_000


class BackgroundCheckpointer:
    """Copies the stores' write-ahead logs into their files from a thread of its own.

    SQLite checkpoints by itself when a commit finds the log past 1000 pages, in the
    committing thread: the service loop's. On a store of years (the history of a large
    dealer, 750 MB) each readout dirties pages all over the file, and such a checkpoint held
    the loop for 50-250 ms (docs/performance.md, "Years at a busy site"). This thread runs a
    ``PASSIVE`` checkpoint on its own connection whenever a log has grown past
    ``min_wal_bytes``, every ``interval_s``: it never waits for, nor blocks, the stores'
    writers, SQLite releases the GIL while it copies and fsyncs, and the log starts over
    small, so the commits' own checkpoints (past :data:`COMMIT_CHECKPOINT_PAGES`) do not come
    due. A failure is logged once per store and tried again next time; the stores' own
    checkpoints remain the safety net."""

    def __init__(self, paths: Sequence[Path], *, interval_s: float = CHECKPOINT_INTERVAL_S,
                 min_wal_bytes: int = CHECKPOINT_MIN_WAL_BYTES) -> None:
        self.paths = list(paths)
        self.interval_s = interval_s
        self.min_wal_bytes = min_wal_bytes
        self.checkpoints = 0
        self._conns: dict[Path, sqlite3.Connection] = {}
        self._failed: set[Path] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cbs-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.checkpoint_once()

    def checkpoint_once(self) -> int:
        """Checkpoint every store whose log is past the threshold; returns how many."""
        done = 0
        for path in self.paths:
            wal = path.with_name(path.name + "-wal")
            try:
                if wal.stat().st_size < self.min_wal_bytes:
                    continue
            except OSError:
                continue  # no log (the store is not open, or closed cleanly)
            try:
                conn = self._conns.get(path)
                if conn is None:
                    conn = sqlite3.connect(path, timeout=0.0, isolation_level=None,
                                           check_same_thread=False)
                    self._conns[path] = conn
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:
                if path not in self._failed:
                    log.warning("checkpoint of %s failed (retrying): %s", path, exc)
                    self._failed.add(path)
                continue
            self._failed.discard(path)
            done += 1
        self.checkpoints += done
        return done
