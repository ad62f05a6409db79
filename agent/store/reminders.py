"""The reminder store: each vehicle's latest readout and the ledger of reminders sent, in
``reminders.sqlite3`` under the state directory; the daily pass runs the pure plan of
:mod:`agent.domain.reminders` over it and hands each reminder to the outbox (docs/reminders.md).

The pass runs on the service loop's thread, so it is cut into slices, one per loop turn
(:meth:`ReminderService.poll`): at most :data:`SLICE_VEHICLES` vehicles looked at and
:data:`SLICE_PARSED` readouts parsed per turn, about a millisecond, so a key read in the
middle of a pass waits for one slice at most. Looking at a vehicle is cheap: next to its
readout the store keeps each item's early and due dates, its margin at the desk and its
reminder id (its row in ``vehicle_due``), which say whether the plan could
remind of anything today that the ledger does not hold yet; only those vehicles' readouts
are parsed and planned. A site with 100,000 vehicles has a few hundred of them on a given
day (docs/performance.md, "Years at a busy site").
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Self

from pydantic import ValidationError

from agent.domain.forecast import ForecastSettings, read_date_of
from agent.domain.models import REMINDER_SCHEMA, Readout, Reminder, to_json, without_proposal
from agent.domain.proposal import ProposalContext
from agent.domain.reminders import (
    ReminderError,
    ReminderSettings,
    next_pass_after,
    plan_reminders,
    reminder_id,
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

__all__ = ["Put", "PutMany", "ReminderService", "due_summary"]

log = logging.getLogger(__name__)

#: ``put(topic, payload, retain, schema, message_id)``: the service's outbox commit.
Put = Callable[[str, bytes, bool, str, str], object]
#: ``put_many([(topic, payload, retain, schema, message_id), ...])``: one outbox commit for
#: everything a slice of the pass has to send.
PutMany = Callable[[Sequence[tuple[str, bytes, bool, str, str]]], object]

RETRY_AFTER_FAILURE = timedelta(minutes=5)
VEHICLE_BATCH = 200  # readouts parsed at a time in a reminder pass (see iter_vehicles)
SLICE_VEHICLES = 100  # vehicles looked at per loop turn in the daily pass (~0.4 ms)...
SLICE_PARSED = 4  # ...and readouts parsed and planned (about 0.3 ms each) at most
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SCHEMA_VERSION = 3  # 2: the due dates and the indexes of the sliced pass and of pruning;
                     # 3: the due dates in a table of their own, not in a covering index
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vehicles (
    vin        TEXT PRIMARY KEY,
    read_at_us INTEGER NOT NULL,   -- microseconds since the epoch, UTC
    readout    TEXT NOT NULL       -- the latest readout (cbs.readout/1 JSON, without proposal)
    -- a file of schema 2 has a column due here, no longer read or written
);
-- Per vehicle, JSON [[due_date_early, due_date, days at the desk, reminder_id], ...] of its
-- kept readout's items with a forecast; a vehicle without a row: not known, planned.
-- A table of its own, not a covering index on vehicles (vin, due) as in schema 2: an index
-- keeps whole entries in its interior pages too, and at ~0.5 kB an entry that was six to a
-- page, seven levels over 100,000 vehicles, and each readout moved its entry (a delete and
-- an insert, often a split). Here the VIN's index is small and a readout changes its row in
-- place.
CREATE TABLE IF NOT EXISTS vehicle_due (
    vin TEXT PRIMARY KEY,
    due TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS vehicle_delete_forgets_due AFTER DELETE ON vehicles
BEGIN DELETE FROM vehicle_due WHERE vin = OLD.vin; END;
CREATE TABLE IF NOT EXISTS sent (
    reminder_id TEXT PRIMARY KEY,  -- {vin}-{index}-{code}-{service_count}
    vin         TEXT NOT NULL,
    due_date    TEXT NOT NULL,     -- ISO date, as planned
    sent_at_us  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sent_by_vin ON sent (vin);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS vehicles_by_time ON vehicles (read_at_us);
CREATE INDEX IF NOT EXISTS sent_by_time ON sent (sent_at_us);
"""
# Schema 2's due dates, read from its covering index (not the 4 kB rows), once.
_FROM_SCHEMA_2 = """
INSERT OR IGNORE INTO vehicle_due SELECT vin, due FROM vehicles INDEXED BY vehicles_due
    WHERE due IS NOT NULL;
DROP INDEX vehicles_due;
"""
_TABLES = {"vehicles": ("vin", "read_at_us", "readout"),  # due: recomputed later
           "sent": ("reminder_id", "vin", "due_date", "sent_at_us")}

class _Ledger:
    """The ledger of sent reminders as a container, one lookup per question: the pass asks
    only about items inside the window, and the whole ledger can be large."""

    def __init__(self, store: ReminderService) -> None:
        self._store = store

    def __contains__(self, reminder_id: object) -> bool:
        return isinstance(reminder_id, str) and self._store.was_sent(reminder_id)


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def due_summary(readout: Readout) -> str:
    """The ``due`` column of a readout: per item with a forecast, its early and due dates, how
    many days ahead of the early date the desk saw it (``days_left`` plus the interval's early
    shift) and its reminder id, all :func:`~agent.domain.reminders.plan_reminders` and the
    ledger need to know whether it could remind of the item on a given day."""
    items = []
    vin = readout.vehicle.vin
    for entry in readout.services:
        published = entry.forecast
        if published is not None:
            early = published.due_date_early
            items.append([early.isoformat(), published.due_date.isoformat(),
                          published.days_left + (early - published.due_date).days,
                          reminder_id(vin, entry.index, entry.code, entry.service_count)])
    return json.dumps(items, separators=(",", ":"))


def _may_remind(due: str | None, *, latest_early: str, earliest_due: str,
                window_days: int) -> list[str] | None:
    """The plan's own tests (agent/domain/reminders.py) on the ``due`` column: the reminder ids
    of items not offered at the desk whose early date is inside the window and whose due date
    is not too far behind (the ledger decides the rest). None when not known (a row of
    schema 1): the readout must be planned."""
    if due is None:
        return None
    try:
        return [rid for early, due_date, margin, rid in json.loads(due)
                if margin > window_days and early <= latest_early and due_date >= earliest_due]
    except (ValueError, TypeError):
        return None


@dataclass
class _Pass:
    """A daily pass under way: its time, the last VIN looked at, reminders sent so far."""

    now: datetime
    today: date
    after: str = ""
    sent: int = 0
    looked: int = 0
    parsed: int = 0
    slices: int = 0
    started_s: float = field(default_factory=time.monotonic)


class ReminderService:
    """Keeps the vehicles' latest readouts and the ledger; publishes the daily pass.

    Call :meth:`observe` with every readout the agent commits, and :meth:`poll` from the
    service loop with the wall clock and the outbox commit. Not thread-safe beyond one lock:
    meant for the service loop's thread.
    """

    def __init__(self, path: str | Path, *, site: str, reader: str, topic: str,
                 settings: ReminderSettings | None = None,
                 forecast: ForecastSettings | None = None,
                 context: ProposalContext | None = None, retention_days: int = 3 * 365) -> None:
        self.path = Path(path)
        self.site = site
        self.reader = reader
        self.topic = topic
        self.settings = settings if settings is not None else ReminderSettings()
        self.forecast = forecast if forecast is not None else ForecastSettings()
        self.context = context if context is not None else ProposalContext()
        self.retention_days = retention_days
        self.sent_count = 0
        self._next_pass: datetime | None = None  # None: the start-up pass is still to run
        self._pass: _Pass | None = None  # the pass under way, if any
        self._lock = threading.Lock()
        #: One line on the damaged file moved aside at open (see agent/store/sqlite.py).
        self.quarantined: str | None = None
        self._conn = self._open()

    # --- storage ------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            make_private_dir(self.path.parent)
            return self._connect()
        except OSError as exc:
            raise ReminderError(f"reminder store {self.path}: cannot open: {exc}") from exc
        except sqlite3.Error as exc:
            if not is_corruption(exc):
                raise ReminderError(f"reminder store {self.path}: cannot open: {exc}") from exc
            return self._heal(exc)

    def _connect(self) -> sqlite3.Connection:
        create_private_file(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA cache_size=-1024")  # 1 MiB, as the other stores: memory flat
            conn.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise ReminderError(f"reminder store {self.path}: written by a newer agent "
                                    f"(schema {version}, this agent knows {_SCHEMA_VERSION})")
            check_intact(conn, self.path)
            # Schema 1 had no due dates: each vehicle's is known at its next readout.
            upgrade = _FROM_SCHEMA_2 if version == 2 else ""
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + upgrade + _INDEXES
                               + f"PRAGMA user_version={_SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _heal(self, exc: sqlite3.Error) -> sqlite3.Connection:
        """A damaged file: moved aside, a fresh one started with the ledger and the kept
        readouts SQLite could still read (a lost ledger row may send its reminder again)."""
        try:
            quarantine = quarantine_file(self.path, str(exc))
        except OSError as error:
            raise ReminderError(f"reminder store {self.path}: damaged ({exc}) and cannot be "
                                f"moved aside: {error}") from exc
        try:
            conn = self._connect()
            salvaged = sum(restore_rows(conn, table, columns,
                                        salvage_rows(quarantine.aside, table, columns))
                           for table, columns in _TABLES.items())
        except sqlite3.Error as again:
            raise ReminderError(f"reminder store {self.path}: cannot open: {again}") from again
        self.quarantined = Quarantine(quarantine.path, quarantine.aside, quarantine.at,
                                      quarantine.reason, salvaged).describe()
        log.error("reminder store %s", self.quarantined)
        return conn

    def _transaction(self, doing: str, *, durable: bool = True
                     ) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction. ``durable=False`` commits without an fsync of its own
        (``synchronous=NORMAL``, as the vehicle history does): kept readouts are an aid like
        the history, rewritten at each read of the vehicle, and a power cut may only take the
        last few; the ledger of sent reminders always commits with ``FULL``."""
        return immediate_transaction(
            self._conn, self._lock,
            lambda exc: ReminderError(f"reminder store {self.path}: {doing}: {exc}"),
            synchronous="FULL" if durable else "NORMAL")

    @contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise ReminderError(f"reminder store {self.path}: {doing}: {exc}") from exc

    # --- API ----------------------------------------------------------------------------------
    def observe(self, readout: Readout) -> None:
        """Keep ``readout`` as its vehicle's latest (an older one than kept is ignored).
        Raises ReminderError."""
        self.observe_many([readout])

    def observe_many(self, readouts: Iterable[Readout],
                     wire_json: Sequence[str] | None = None) -> None:
        """:meth:`observe` each of ``readouts``, in order, in one transaction without an fsync
        of its own (see ``_transaction``; the reader's next batch waited for one on every
        batch). ``wire_json``, if given, holds each readout's wire JSON (``to_json``: the
        service has it already). Raises ReminderError (none kept)."""
        readouts = list(readouts)
        if wire_json is None:
            wire_json = [to_json(readout) for readout in readouts]
        rows = [(readout.vehicle.vin, _to_us(readout.read_at), without_proposal(wire))
                for readout, wire in zip(readouts, wire_json, strict=True)]
        if not rows:
            return
        dues = [(vin, due_summary(readout), at_us)
                for (vin, at_us, _), readout in zip(rows, readouts, strict=True)]
        with self._transaction("cannot keep readout", durable=False) as conn:
            conn.executemany("INSERT INTO vehicles (vin, read_at_us, readout) VALUES (?, ?, ?) "
                             "ON CONFLICT (vin) DO UPDATE SET read_at_us = excluded.read_at_us, "
                             "readout = excluded.readout "
                             "WHERE excluded.read_at_us >= read_at_us", rows)
            # The due dates of the readout the vehicle's row now holds (an older one than
            # kept changed nothing; of two at the same moment the later in order is kept).
            conn.executemany("INSERT INTO vehicle_due (vin, due) SELECT ?1, ?2 WHERE "
                             "(SELECT read_at_us FROM vehicles WHERE vin = ?1) = ?3 "
                             "ON CONFLICT (vin) DO UPDATE SET due = excluded.due", dues)

    def vehicles(self) -> list[Readout]:
        """The latest readout of every known vehicle, by VIN. Raises ReminderError."""
        return list(self.iter_vehicles())

    def iter_vehicles(self, batch: int | None = None) -> Iterator[Readout]:
        """:meth:`vehicles`, ``batch`` at a time: a site keeps every vehicle it has seen for
        ``retention_days`` (tens of thousands after a few years), and a parsed readout is tens
        of kilobytes, so the daily pass must not hold them all at once. The store's lock is
        taken per batch, not for the whole pass. Raises ReminderError."""
        batch = batch or VEHICLE_BATCH
        after = ""
        while True:
            with self._reading("cannot read vehicles") as conn:
                rows = conn.execute("SELECT vin, readout FROM vehicles WHERE vin > ? "
                                    "ORDER BY vin LIMIT ?", (after, batch)).fetchall()
            for vin, text in rows:
                try:
                    readout = Readout.model_validate_json(text)
                except ValidationError as exc:  # written by another version: skip, keep going
                    log.warning("reminder store: readout of %s unreadable, skipped: %s", vin, exc)
                    continue
                yield readout
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def latest(self, vin: str) -> Readout | None:
        """The latest readout kept for ``vin`` (without its proposal), or None. Raises
        ReminderError."""
        with self._reading("cannot read vehicles") as conn:
            row = conn.execute("SELECT readout FROM vehicles WHERE vin = ?", (vin,)).fetchone()
        if row is None:
            return None
        try:
            return Readout.model_validate_json(row[0])
        except ValidationError as exc:
            raise ReminderError(f"reminder store: readout of {vin} unreadable: {exc}") from exc

    def sent_ids(self) -> set[str]:
        with self._reading("cannot read the ledger") as conn:
            return {row[0] for row in conn.execute("SELECT reminder_id FROM sent")}

    def was_sent(self, reminder_id: str) -> bool:
        """The ledger holds ``reminder_id``. Raises ReminderError."""
        with self._reading("cannot read the ledger") as conn:
            return conn.execute("SELECT 1 FROM sent WHERE reminder_id = ?",
                                (reminder_id,)).fetchone() is not None

    def prune(self, now: datetime) -> int:
        """Forget vehicles not read for ``retention_days`` (with their ledger rows) and ledger
        rows older than that; returns how many rows went."""
        cutoff = _to_us(now) - self.retention_days * 86_400_000_000
        with self._transaction("cannot prune") as conn:
            gone = conn.execute("DELETE FROM sent WHERE sent_at_us < ? OR vin IN (SELECT vin FROM "
                                "vehicles WHERE read_at_us < ?)", (cutoff, cutoff)).rowcount
            gone += conn.execute("DELETE FROM vehicles WHERE read_at_us < ?", (cutoff,)).rowcount
        return max(0, gone)

    def due(self, now: datetime) -> list[Reminder]:
        """The reminders to send at ``now``, not yet in the ledger. Raises ReminderError."""
        self.prune(now)
        return plan_reminders(self.iter_vehicles(), now=now, sent=_Ledger(self),
                              settings=self.settings, forecast=self.forecast,
                              context=self.context, site=self.site, reader=self.reader)

    def mark_sent(self, reminder: Reminder, now: datetime) -> None:
        """Record ``reminder`` in the ledger: it is never planned again. Raises ReminderError."""
        self.mark_sent_many([reminder], now)

    def mark_sent_many(self, reminders: Sequence[Reminder], now: datetime) -> None:
        """:meth:`mark_sent` each of ``reminders`` in one transaction. Raises ReminderError."""
        if not reminders:
            return
        with self._transaction("cannot record a sent reminder") as conn:
            conn.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?)",
                             [(reminder.reminder_id, reminder.vin, reminder.due_date.isoformat(),
                               _to_us(now)) for reminder in reminders])

    def run_pass(self, now: datetime, put: Put, put_many: PutMany | None = None) -> int:
        """Plan at ``now`` and hand every reminder to ``put`` (or a slice's to ``put_many`` at
        once), then to the ledger; returns how many. The whole pass at once (:meth:`poll` runs
        it a slice per call). Raises ReminderError, or what ``put`` raises (the rest then
        waits for the next pass)."""
        state = self._start_pass(now)
        while not self._run_slice(state, put, put_many):
            pass
        return state.sent

    def _start_pass(self, now: datetime) -> _Pass:
        self.prune(now)
        return _Pass(now, read_date_of(now, self.forecast))

    def _run_slice(self, state: _Pass, put: Put, put_many: PutMany | None = None) -> bool:
        """Look at the next vehicles of ``state``'s pass, plan those that may have a reminder
        due and send what is due; True when the pass is done."""
        window = self.settings.window_days
        latest_early = (state.today + timedelta(days=window)).isoformat()
        earliest_due = (state.today - timedelta(days=self.settings.max_overdue_days)).isoformat()
        with self._reading("cannot read vehicles") as conn:
            rows = conn.execute("SELECT vehicles.vin, due FROM vehicles LEFT JOIN vehicle_due "
                                "ON vehicle_due.vin = vehicles.vin WHERE vehicles.vin > ? "
                                "ORDER BY vehicles.vin LIMIT ?",
                                (state.after, SLICE_VEHICLES)).fetchall()
        done = len(rows) < SLICE_VEHICLES
        state.slices += 1
        unknown: list[str] = []  # planned whatever the ledger says
        maybe: dict[str, list[str]] = {}  # VIN -> reminder ids the ledger may not hold
        for vin, due in rows:
            ids = _may_remind(due, latest_early=latest_early, earliest_due=earliest_due,
                              window_days=window)
            if ids is None:
                unknown.append(vin)
            elif ids:
                maybe[vin] = ids
        state.looked += len(rows)
        if rows:
            state.after = rows[-1][0]
        sent = self._sent_among([rid for ids in maybe.values() for rid in ids])
        candidates = sorted(unknown + [vin for vin, ids in maybe.items()
                                       if any(rid not in sent for rid in ids)])
        if len(candidates) > SLICE_PARSED:  # the rest of this slice's rows: next turn
            candidates = candidates[:SLICE_PARSED]
            state.after = candidates[-1]
            done = False
        if not candidates:
            return done
        state.parsed += len(candidates)
        reminders = plan_reminders(self._readouts(candidates), now=state.now, sent=_Ledger(self),
                                   settings=self.settings, forecast=self.forecast,
                                   context=self.context, site=self.site, reader=self.reader)
        messages = [(self.topic, to_json(reminder).encode(), False, REMINDER_SCHEMA,
                     reminder.reminder_id) for reminder in reminders]
        if put_many is not None:  # one commit for the slice, then one ledger transaction
            if messages:
                put_many(messages)
            self.mark_sent_many(reminders, state.now)
        else:
            for reminder, message in zip(reminders, messages, strict=True):
                put(*message)
                self.mark_sent(reminder, state.now)
        for reminder in reminders:
            self.sent_count += 1
            state.sent += 1
            log.info("reminder %s: %s %s due %s (%d days)", reminder.reminder_id, reminder.vin,
                     reminder.service.type, reminder.due_date, reminder.days_left)
        return done

    def _sent_among(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the ledger holds (primary-key lookups, a few hundred at a time)."""
        found: set[str] = set()
        with self._reading("cannot read the ledger") as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ", ".join("?" for _ in chunk)
                found.update(row[0] for row in conn.execute(
                    f"SELECT reminder_id FROM sent WHERE reminder_id IN ({marks})", tuple(chunk)))
        return found

    def _readouts(self, vins: Sequence[str]) -> Iterator[Readout]:
        marks = ", ".join("?" for _ in vins)
        with self._reading("cannot read vehicles") as conn:
            rows = conn.execute(f"SELECT vin, readout FROM vehicles WHERE vin IN ({marks}) "
                                "ORDER BY vin", tuple(vins)).fetchall()
        for vin, text in rows:
            try:
                yield Readout.model_validate_json(text)
            except ValidationError as exc:  # written by another version: skip, keep going
                log.warning("reminder store: readout of %s unreadable, skipped: %s", vin, exc)

    @property
    def next_pass(self) -> datetime | None:
        """When :meth:`poll` starts the next pass; None before the start-up pass."""
        return self._next_pass

    @property
    def in_pass(self) -> bool:
        """A pass is under way (:meth:`poll` runs its next slice)."""
        return self._pass is not None

    def poll(self, now: datetime, put: Put, put_many: PutMany | None = None) -> int:
        """Run the next slice of the pass under way, or start a pass if one is due: the first
        call (start-up; ``startup_delay_s`` later with a delay), then daily at ``hour``. Cheap otherwise; call it every loop turn. A
        failure is logged and the pass started again in a few minutes, never raised:
        reminders must not stop the reader. Returns reminders sent by this call."""
        if not self.settings.enabled:
            return 0
        state = self._pass
        try:
            if state is None:
                if self._next_pass is None and self.settings.startup_delay_s > 0:
                    self._next_pass = now + timedelta(seconds=self.settings.startup_delay_s)
                if self._next_pass is not None and now < self._next_pass:
                    return 0
                state = self._pass = self._start_pass(now)
                log.info("reminder pass started")
            sent_before = state.sent
            done = self._run_slice(state, put, put_many)
        except CbsError as exc:
            log.error("reminder pass failed, retrying in %s: %s", RETRY_AFTER_FAILURE, exc)
            self._pass = None
            self._next_pass = now + RETRY_AFTER_FAILURE
            return 0
        if done:
            self._pass = None
            self._next_pass = next_pass_after(now, self.settings.hour, self.forecast.zone)
            log.info("reminder pass done in %.1f s (%d slices): %d vehicles, %d planned, "
                     "%d reminders", time.monotonic() - state.started_s, state.slices,
                     state.looked, state.parsed, state.sent)
        return state.sent - sent_before

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
