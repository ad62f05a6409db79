"""The durable outbox: a message counts as read once it is here, and leaves only on PUBACK.

One SQLite file in the state directory (stdlib ``sqlite3``), one table in insertion order.
The service thread writes (:meth:`Outbox.put`), the publisher thread reads and deletes
(:meth:`Outbox.pending`, :meth:`Outbox.ack_many`). Writes share one connection behind a lock;
the publisher reads back on a second, read-only connection of its own, so that reading a
backlog (a megabyte of payloads at a time) never makes a key read wait for the lock: WAL lets
a reader and a writer work at once, and the reader sees committed rows only, which is all
the publisher asks for. See docs/outbox.md for the operator's view.

Durability (the fsync policy)
    ``journal_mode=WAL`` with ``synchronous=FULL``: every commit of new messages appends to
    the write-ahead log and fsyncs it before returning, so a message :meth:`put` returned for
    survives a crash or power loss. Checkpoints fsync the database file; the publisher's
    thread runs them (:meth:`Outbox.checkpoint`, a ``PASSIVE`` one on its read connection,
    every ``CHECKPOINT_INTERVAL_S`` while there were writes), so a commit does not find the
    log past SQLite's 1000 pages and copy it into the file on the key read's time while a
    drain deletes thousands of rows; a commit still does so itself past
    ``COMMIT_CHECKPOINT_PAGES`` (no publisher running), and closing checkpoints too. Deletes (acks) commit with ``synchronous=NORMAL``: no fsync of
    their own (the next commit of new messages fsyncs the log, acks included). Losing an ack
    in a power cut would only mean a duplicate delivery, which the contract allows (at least
    once); an ack never waits for the disk, so it never holds the lock a put needs for long.

Publishing while the commit runs (:class:`StagingListener`)
    :meth:`put_many` can tell a listener (the publisher) about the new rows as soon as they
    are inserted and their row ids known, *before* the COMMIT and its fsync, and then whether
    the commit succeeded. The publisher may send them meanwhile, and deletes a row only once
    both its commit and its PUBACK are in. A crash before the commit ends loses nothing that
    was counted as read (nothing was yet); the broker may simply have had it early. If the
    commit fails, the listener hears so and forgets the rows (their ids may be used again by
    the next put): the caller keeps the messages and puts them again later, so the broker may
    see them twice, under their own message ids. See docs/outbox.md.

Order
    ``row_id`` is an ``AUTOINCREMENT`` key, so ids only grow, even after the newest row was
    deleted: the publisher's cursor (``pending(after_row=...)``) can never skip a new row.

Bounds (when full)
    The outbox holds at most ``max_messages`` messages, none older than ``max_age_s``.
    It never refuses a new message because of its bounds: the newest data is the most useful
    to the dealership, and the reader must keep reading. Instead:

    * a message older than ``max_age_s`` is deleted (expired) when the next message is put;
    * when a new message would exceed ``max_messages``, the oldest *retained* message
      (``{prefix}/{site}/vehicles/{vin}``: a copy of a readout that travels on ``readout``
      too) is evicted first; only when none is left, the oldest message of any kind.

    Every expiry and eviction is logged as a warning naming the message and counted
    (:attr:`Outbox.evicted`); :attr:`Outbox.full` says the bound has been reached (the
    service reports both in its status). Messages in flight when evicted are simply not
    acknowledged twice.

Failures
    Disk full, a read-only state directory or a damaged file raise :class:`OutboxError` with
    the path and SQLite's reason; the message was *not* stored and the caller keeps it. The
    outbox object stays usable: the next call tries again.

A damaged file (at open, or found while running) heals
    "database disk image is malformed" or "file is not a database" would otherwise fail every
    call forever. The file is moved aside as ``outbox.sqlite3.corrupt-{UTC time}``, every row
    SQLite can still read is put into a fresh file under its own row id, an error is logged
    once and :attr:`Outbox.quarantined` says what happened (for the status). Rows on the
    damaged pages are lost; those sent before are at the broker, the rest are named nowhere
    else, so the quarantined file is kept for a person to look at.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

from agent.errors import OutboxError
from agent.store.sqlite import (
    COMMIT_CHECKPOINT_PAGES,
    Quarantine,
    check_intact,
    create_private_file,
    is_corruption,
    quarantine_file,
    restore_rows,
    salvage_rows,
    scan_for_ids,
)
from protocols.values import fast_init

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_MAX_MESSAGES = 100_000
DEFAULT_MAX_AGE_S = 30 * 86400.0
CACHE_KIB = 1024  # SQLite page cache (the default is 2 MiB)
CHECKPOINT_INTERVAL_S = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    row_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    retain     INTEGER NOT NULL,
    schema     TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    created_at REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_retained ON outbox (row_id) WHERE retain = 1;
"""
_COLUMNS = "row_id, topic, payload, retain, schema, message_id, created_at"
_SALVAGE_COLUMNS = tuple(_COLUMNS.split(", "))
# How a row's id reads inside its payload (the agent's payloads carry their own id: readouts,
# rejections, reminders): what a damaged file still shows of rows SQLite cannot read.
_MESSAGE_ID_IN_PAYLOAD = rb'"(?:readout_id|rejection_id|reminder_id)":\s*"([^"\\]{1,128})"'


@fast_init
@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to store (see :meth:`Outbox.put_many`)."""

    topic: str
    payload: bytes
    retain: bool
    schema: str
    message_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A stored message. ``created_at`` is the wall clock (Unix seconds) at :meth:`put`."""

    row_id: int
    topic: str
    payload: bytes
    retain: bool
    schema: str
    message_id: str
    created_at: float


class StagingListener(Protocol):
    """Told about rows of a :meth:`Outbox.put_many` transaction (see the module docstring).
    Both methods are called on the writer's thread with the outbox lock held: they must
    return at once and never raise (hand the news to another thread)."""

    def staged(self, entries: Sequence[OutboxEntry]) -> None:
        """Rows inserted, their commit (and fsync) about to start."""

    def settled(self, entries: Sequence[OutboxEntry], committed: bool) -> None:
        """The commit of those rows succeeded (``committed``) or was rolled back."""


class Outbox:
    """Durable FIFO of MQTT messages waiting for the broker's PUBACK.

    Safe for one writer thread and one publisher thread (every call takes a lock). Belongs to
    one process: two agents must not share a state directory.

    Raises :class:`OutboxError` if the file cannot be opened or was written by a newer agent.
    """

    def __init__(self, path: str | Path, *, max_messages: int = DEFAULT_MAX_MESSAGES,
                 max_age_s: float = DEFAULT_MAX_AGE_S,
                 clock: Callable[[], float] = time.time) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self.path = Path(path)
        self._wal_path = self.path.with_name(self.path.name + "-wal")
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._evicted = 0
        self._depth = 0
        self._relaxed = False  # True while (or if) acks run with synchronous=NORMAL
        self._max_row_id = 0  # the highest row id ever handed out (survives a quarantine)
        self._quarantine: Quarantine | None = None
        self._generation = 0  # counts the files _db was opened on (a heal starts a new one)
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._reader_generation = -1
        self._writes = 0  # commits since the last checkpoint
        self._checkpointed_at = 0.0
        self._db: sqlite3.Connection | None = self._open()
        log.debug("outbox %s open: %d messages waiting", self.path, self._depth)

    def _open(self) -> sqlite3.Connection:
        """:meth:`_connect`, healing a damaged file; raises OutboxError."""
        try:
            return self._connect()
        except sqlite3.Error as exc:
            if not is_corruption(exc):
                raise OutboxError(f"outbox {self.path}: cannot open: {_why(self.path, exc)}"
                                  ) from exc
            return self._heal(exc)

    def _connect(self) -> sqlite3.Connection:
        """Open (or create) the file; raises sqlite3.Error (the caller tells damage from the
        rest) or OutboxError for a file of a newer agent."""
        create_private_file(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # The working set is the newest rows: a small page cache keeps memory flat.
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(f"outbox {self.path}: written by a newer agent (schema "
                                  f"{version}, this agent knows {SCHEMA_VERSION})")
            check_intact(db, self.path)
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._depth = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
            sequence = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
                                  ).fetchone()
            self._max_row_id = max(self._max_row_id, int(sequence[0]) if sequence else 0)
        except BaseException:
            db.close()
            raise
        self._generation += 1
        return db

    def _heal(self, exc: sqlite3.Error) -> sqlite3.Connection:
        """The file is damaged: move it aside, start a fresh one with every row SQLite could
        still read (same row ids, so the publisher's cursor stays right; new ids continue
        above the highest one ever used) and say so once. Raises OutboxError when even that
        fails (the directory cannot take a rename or a new file)."""
        try:
            quarantine = quarantine_file(self.path, str(exc))
        except OSError as error:
            raise OutboxError(f"outbox {self.path}: damaged ({exc}) and cannot be moved "
                              f"aside: {error.strerror or error}") from exc
        rows = salvage_rows(quarantine.aside, "outbox", _SALVAGE_COLUMNS)
        try:
            db = self._connect()
            restored = restore_rows(db, "outbox", _SALVAGE_COLUMNS, rows)
            highest = max([self._max_row_id, *(int(row[0]) for row in rows)])
            db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox'",
                       (highest,))
            if db.execute("SELECT changes()").fetchone()[0] == 0:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)",
                           (highest,))
            self._max_row_id = highest
            self._depth = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        except sqlite3.Error as error:
            raise OutboxError(f"outbox {self.path}: damaged ({exc}), moved to "
                              f"{quarantine.aside}, and a fresh one cannot be started: "
                              f"{_why(self.path, error)}") from error
        self._quarantine = Quarantine(quarantine.path, quarantine.aside, quarantine.at,
                                      quarantine.reason, restored)
        log.error("outbox %s", self._quarantine.describe())
        salvaged = {str(row[5]) for row in rows}
        unread = scan_for_ids([quarantine.aside, quarantine.aside.with_name(
            quarantine.aside.name + "-wal")], _MESSAGE_ID_IN_PAYLOAD) - salvaged
        if unread:
            log.error("outbox: %d message(s) seen on the damaged pages of %s could not be "
                      "salvaged and may not have been delivered: %s", len(unread),
                      quarantine.aside, ", ".join(sorted(unread)))
        return db

    # -- writing --------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, *, retain: bool, schema: str, message_id: str,
            now: float | None = None) -> int:
        """Store one message; it is on disk (fsynced) when this returns its row id.
        May expire or evict older messages to stay within bounds. Raises OutboxError."""
        return self.put_many([OutboxMessage(topic, payload, retain, schema, message_id)],
                             now=now)[0]

    def put_many(self, messages: Sequence[OutboxMessage], *, now: float | None = None,
                 listener: StagingListener | None = None) -> list[int]:
        """Store several messages in one transaction (one fsync): all or none. Returns their
        row ids in order. Raises OutboxError (nothing stored).

        ``listener`` hears of the rows once inserted, before the commit, and of the commit's
        outcome (see :class:`StagingListener`)."""
        if not messages:
            return []
        created_at = self._clock() if now is None else now
        rows = [(m.topic, bytes(m.payload), int(m.retain), m.schema, m.message_id, created_at)
                for m in messages]
        what = messages[0].message_id if len(messages) == 1 else f"{len(messages)} messages"
        entries: list[OutboxEntry] = []
        with self._locked(f"cannot store {what}") as db:
            if self._relaxed:  # an ack could not switch back: never commit a put unsynced
                db.execute("PRAGMA synchronous=FULL")
                self._relaxed = False
            try:
                with _transaction(db):
                    expired = self._expired(db, created_at)
                    room_needed = self._depth - len(expired) + len(rows) - self.max_messages
                    evicted = (self._evictable(db, room_needed, skip=expired)
                               if room_needed > 0 else [])
                    _delete(db, expired + evicted)
                    ids = [int(db.execute("INSERT INTO outbox (topic, payload, retain, schema, "
                                          "message_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                                          row).lastrowid or 0)
                           for row in rows]
                    if listener is not None:
                        entries = [OutboxEntry(row_id, topic, payload, bool(retain), schema,
                                               message_id, at)
                                   for row_id, (topic, payload, retain, schema, message_id, at)
                                   in zip(ids, rows)]
                        _tell(listener.staged, entries)
            except BaseException:
                if entries:
                    _tell(listener.settled, entries, False)  # type: ignore[union-attr]
                raise
            if entries:
                _tell(listener.settled, entries, True)  # type: ignore[union-attr]
            # Counts and warnings only once the commit succeeded.
            self._writes += 1
            self._max_row_id = max(self._max_row_id, *ids)
            self._depth += len(rows) - len(expired) - len(evicted)
            self._report(expired, evicted)
        return ids

    def expire(self, now: float | None = None) -> int:
        """Delete messages older than ``max_age_s``; returns how many. :meth:`put` does this
        itself; call it to keep the bound while nothing new arrives. Raises OutboxError."""
        when = self._clock() if now is None else now
        with self._locked("cannot expire old messages") as db:
            with _transaction(db):
                expired = self._expired(db, when)
                _delete(db, expired)
            self._depth -= len(expired)
            self._report(expired, [])
        return len(expired)

    def _expired(self, db: sqlite3.Connection, now: float) -> list[_Victim]:
        cutoff = now - self.max_age_s
        head = db.execute("SELECT created_at FROM outbox ORDER BY row_id LIMIT 1").fetchone()
        if head is None or head[0] >= cutoff:
            return []
        return db.execute("SELECT row_id, topic, message_id FROM outbox WHERE created_at < ? "
                          "ORDER BY row_id", (cutoff,)).fetchall()

    def _evictable(self, db: sqlite3.Connection, count: int,
                   skip: list[_Victim]) -> list[_Victim]:
        """The ``count`` messages to give up: the oldest retained first, then the oldest."""
        skipped = {victim[0] for victim in skip}
        chosen: list[_Victim] = []
        for retained in (1, 0):
            cursor = db.execute("SELECT row_id, topic, message_id FROM outbox WHERE retain = ? "
                                "ORDER BY row_id", (retained,))
            for victim in cursor:
                if len(chosen) == count:
                    break
                if victim[0] not in skipped:
                    chosen.append(victim)
            cursor.close()
        return chosen

    def _report(self, expired: list[_Victim], evicted: list[_Victim]) -> None:
        self._evicted += len(expired) + len(evicted)
        if expired:
            log.warning("outbox: %d message(s) older than %.0f s expired unsent (rows %d..%d, "
                        "first %s on %s)", len(expired), self.max_age_s, expired[0][0],
                        expired[-1][0], expired[0][2], expired[0][1])
        for row_id, topic, message_id in evicted:
            log.warning("outbox full (%d messages): evicted row %d, %s on %s, unsent",
                        self.max_messages, row_id, message_id, topic)

    # -- reading and acknowledging ----------------------------------------------------------

    def pending(self, after_row: int = 0, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` stored (committed) messages with ``row_id > after_row``, oldest
        first. Read on the read connection, without the writers' lock; should that fail, once
        more on the writers' connection, which heals a damaged file."""
        query = (f"SELECT {_COLUMNS} FROM outbox WHERE row_id > ? ORDER BY row_id LIMIT ?",
                 (after_row, limit))
        try:
            with self._read_lock:
                rows = self._read_connection().execute(*query).fetchall()
        except sqlite3.Error as exc:
            log.debug("outbox %s: read connection failed (%s); reading on the writer's", self.path,
                      exc)
            self._close_reader()
            with self._locked("cannot read") as db:
                rows = db.execute(*query).fetchall()
        return [OutboxEntry(row_id, topic, bytes(payload), bool(retain), schema, message_id,
                            created_at)
                for row_id, topic, payload, retain, schema, message_id, created_at in rows]

    def ack(self, row_id: int) -> None:
        """Delete a message the broker acknowledged. An unknown id (already acked, evicted)
        is ignored. Raises OutboxError."""
        self.ack_many([row_id])

    def ack_many(self, row_ids: Iterable[int]) -> None:
        """Delete several acknowledged messages in one transaction (one fsync)."""
        ids = [(row_id,) for row_id in row_ids]
        if not ids:
            return
        with self._locked(f"cannot delete {len(ids)} acknowledged message(s)") as db:
            before = db.total_changes
            # An ack lost in a power cut is a duplicate delivery, nothing worse: no fsync.
            self._relaxed = True
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                with _transaction(db):
                    db.executemany("DELETE FROM outbox WHERE row_id = ?", ids)
            finally:
                db.execute("PRAGMA synchronous=FULL")
                self._relaxed = False
            self._writes += 1
            self._depth -= db.total_changes - before
            if self._depth < 0:
                # Rows another process stored (``cbs-agent diagnose`` beside the daemon) were
                # deleted too: this count did not know them. Count again.
                self._depth = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def checkpoint(self, now: float | None = None) -> bool:
        """Copy the write-ahead log into the file (``PASSIVE``: it waits for no one and blocks
        no one) when there were commits since the last time and ``CHECKPOINT_INTERVAL_S``
        passed; the publisher's thread calls it after its deletes. Returns whether it ran. A
        failure is logged at debug level: the commits' own checkpoints are the safety net."""
        at = time.monotonic() if now is None else now
        if not self._writes or at - self._checkpointed_at < CHECKPOINT_INTERVAL_S:
            return False
        self._writes = 0
        self._checkpointed_at = at
        try:
            with self._read_lock:
                self._read_connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.debug("outbox %s: checkpoint failed: %s", self.path, exc)
            self._close_reader()
            return False
        return True

    def sync_log(self) -> None:
        """fsync the write-ahead log from outside SQLite, without the writers' lock: the
        publisher's thread calls it after deleting a batch (deletes commit unsynced), so that
        the next key read's commit does not have to carry the drain's deletes to the disk in
        its own fsync. Nothing depends on it: a failure is ignored."""
        try:
            fd = os.open(self._wal_path, os.O_RDONLY)
        except OSError:
            return  # no log (closed, or being replaced)
        try:
            os.fsync(fd)
        except OSError as exc:
            log.debug("outbox %s: fsync of the log failed: %s", self.path, exc)
        finally:
            os.close(fd)

    def _read_connection(self) -> sqlite3.Connection:
        """The read connection (read lock held), opened again after the writers' connection
        moved to a new file (a heal)."""
        if self._reader is not None and self._reader_generation != self._generation:
            self._reader.close()
            self._reader = None
        if self._reader is None:
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only=1")
            reader.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._reader, self._reader_generation = reader, self._generation
        return self._reader

    def _close_reader(self) -> None:
        with self._read_lock:
            if self._reader is not None:
                try:
                    self._reader.close()
                except sqlite3.Error:
                    pass
                self._reader = None

    # -- status ---------------------------------------------------------------------------

    def depth(self) -> int:
        """Messages waiting (stored and not acknowledged)."""
        return self._depth

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Age of the oldest waiting message in seconds (wall clock), None when empty."""
        when = self._clock() if now is None else now
        with self._locked("cannot read") as db:
            head = db.execute("SELECT created_at FROM outbox ORDER BY row_id LIMIT 1").fetchone()
        return None if head is None else max(0.0, when - float(head[0]))

    @property
    def evicted(self) -> int:
        """Messages expired or evicted unsent since this outbox was opened."""
        return self._evicted

    @property
    def quarantined(self) -> str | None:
        """One line on the last damaged file this outbox moved aside and replaced (where it
        went, why, how many rows were salvaged), for the status; None when none was."""
        return None if self._quarantine is None else self._quarantine.describe()

    @property
    def full(self) -> bool:
        """True when the count bound is reached: the next put evicts a message."""
        return self._depth >= self.max_messages

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (SQLite checkpoints the log into it). Idempotent."""
        self._close_reader()
        with self._lock:
            try:
                if self._db is not None:
                    self._db.close()
            except sqlite3.Error as exc:
                log.warning("outbox %s: close failed: %s", self.path, exc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    @contextmanager
    def _locked(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; a SQLite error becomes OutboxError. Damage found
        while running heals the file first (see :meth:`_heal`): this call still fails, the
        caller's next one works on the fresh file."""
        with self._lock:
            if self._db is None:  # a heal failed before (see below): try again
                self._db = self._open()
            try:
                yield self._db
            except sqlite3.Error as exc:
                if is_corruption(exc):
                    try:
                        self._db.close()
                    except sqlite3.Error:
                        pass
                    self._db = None
                    self._db = self._heal(exc)
                raise OutboxError(f"outbox {self.path}: {doing}: {exc}") from exc


_Victim = tuple[int, str, str]  # row_id, topic, message_id


def _why(path: Path, exc: sqlite3.Error) -> str:
    """SQLite's reason for a failed open ("unable to open database file") made specific."""
    directory = path.parent
    if not directory.is_dir():
        return f"{exc} (directory {directory} does not exist)"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{exc} (directory {directory} is not writable: read-only file system or permissions)"
    return str(exc)


def _tell(callback: Callable[..., None], *args: object) -> None:
    """Call a listener; a bug there must not undo (or falsely fail) a commit."""
    try:
        callback(*args)
    except Exception:
        log.exception("outbox listener failed")


def _delete(db: sqlite3.Connection, victims: list[_Victim]) -> None:
    db.executemany("DELETE FROM outbox WHERE row_id = ?", ((victim[0],) for victim in victims))


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error (the caller holds the lock)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # the original error is the one to report
                log.debug("outbox rollback failed: %s", exc)
        raise
