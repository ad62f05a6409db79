"""Opening a state store later: the agent starts, and keeps reading keys, even when its state
directory is read-only or full at boot.

An unwritable state directory is a run-time condition (the disk fills, a remount goes wrong),
not a configuration error: exiting with code 2 would make systemd give up on the unit for
good. :class:`DeferredStore` stands in for a store that could not be opened, answers what it
safely can (nothing pending, no history) and raises the store's own error for writes, so the
service holds readouts in memory and reports the error in its status. Every call past the
retry interval tries to open the store again; from then on calls go straight to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from agent.domain.forecast import PastReading
from agent.domain.models import Readout
from agent.domain.reminders import ReminderError
from agent.errors import OutboxError
from agent.store.history import HistoryError, VehicleHistory
from agent.store.outbox import Outbox, OutboxEntry, OutboxMessage, StagingListener
from agent.store.reminders import Put, PutMany, ReminderService
from protocols.key_session import KeySession

log = logging.getLogger(__name__)

RETRY_S = 2.0
S = TypeVar("S")


class DeferredStore(Generic[S]):
    """A store opened by ``factory`` as soon as it can be; the typed stand-ins below say, method
    by method, what each call gives while it is closed."""

    def __init__(self, name: str, factory: Callable[[], S], error_type: type[Exception], *,
                 retry_s: float = RETRY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._factory = factory
        self._error_type = error_type
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._store: S | None = None
        self._error: Exception | None = None
        self._next_try = 0.0
        self._open()

    @property
    def opened(self) -> bool:
        return self._store is not None

    def _open(self) -> S | None:
        with self._lock:
            if self._store is None and self._clock() >= self._next_try:
                try:
                    self._store = self._factory()
                except self._error_type as exc:
                    if self._error is None or str(exc) != str(self._error):
                        log.error("%s unavailable: %s (retrying every %.0f s)", self._name, exc,
                                  self._retry_s)
                    self._error = exc
                    self._next_try = self._clock() + self._retry_s
                else:
                    if self._error is not None:
                        log.warning("%s opened after all: %s recovered", self._name, self._error)
                    self._error = None
            return self._store

    @property
    def quarantined(self) -> str | None:
        """The store's own report of a damaged file it replaced (None while closed)."""
        store = self._store
        return None if store is None else getattr(store, "quarantined", None)

    def _required(self) -> S:
        """The store, or the store's own error when it still cannot be opened (a write)."""
        store = self._open()
        if store is None:
            raise self._error_type(str(self._error))
        return store


class DeferredOutbox(DeferredStore[Outbox]):
    """The outbox, opened later: nothing pending while closed; a put raises OutboxError (the
    service holds the readouts in memory)."""

    def __init__(self, factory: Callable[[], Outbox], **kwargs: Any) -> None:
        super().__init__("outbox", factory, OutboxError, **kwargs)

    def put(self, topic: str, payload: bytes, *, retain: bool, schema: str, message_id: str,
            now: float | None = None) -> int:
        return self._required().put(topic, payload, retain=retain, schema=schema,
                                    message_id=message_id, now=now)

    def put_many(self, messages: Sequence[OutboxMessage], *, now: float | None = None,
                 listener: StagingListener | None = None) -> list[int]:
        return self._required().put_many(messages, now=now, listener=listener)

    def expire(self, now: float | None = None) -> int:
        store = self._open()
        return 0 if store is None else store.expire(now)

    def pending(self, after_row: int = 0, limit: int = 100) -> list[OutboxEntry]:
        store = self._open()
        return [] if store is None else store.pending(after_row, limit)

    def ack(self, row_id: int) -> None:
        store = self._open()
        if store is not None:
            store.ack(row_id)

    def ack_many(self, row_ids: Iterable[int]) -> None:
        store = self._open()
        if store is not None:
            store.ack_many(row_ids)

    def checkpoint(self, now: float | None = None) -> bool:
        store = self._store  # never opens the file: nothing was written to it then
        return False if store is None else store.checkpoint(now)

    def sync_log(self) -> None:
        if self._store is not None:
            self._store.sync_log()

    def depth(self) -> int:
        store = self._open()
        return 0 if store is None else store.depth()

    def oldest_age_s(self, now: float | None = None) -> float | None:
        store = self._open()
        return None if store is None else store.oldest_age_s(now)

    @property
    def evicted(self) -> int:
        store = self._open()
        return 0 if store is None else store.evicted

    @property
    def full(self) -> bool:
        store = self._open()
        return False if store is None else store.full

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class DeferredHistory(DeferredStore[VehicleHistory]):
    """The vehicle history, opened later: no earlier readings while closed; recording
    raises HistoryError (the pipeline logs it; the readout itself is in the outbox)."""

    def __init__(self, factory: Callable[[], VehicleHistory], **kwargs: Any) -> None:
        super().__init__("vehicle history", factory, HistoryError, **kwargs)

    def readings(self, vin: str) -> Sequence[PastReading]:
        store = self._open()
        return [] if store is None else store.readings(vin)

    def version(self) -> tuple[int, int] | None:
        """:meth:`VehicleHistory.version`; None while the history is not open."""
        store = self._open()
        return None if store is None else store.version()

    def record(self, session: KeySession, read_at: datetime, readout_id: str) -> None:
        self._required().record(session, read_at, readout_id)

    def record_many(self, readouts: Iterable[tuple[KeySession, datetime, str]]) -> None:
        self._required().record_many(readouts)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class DeferredReminders(DeferredStore[ReminderService]):
    """The reminder store, opened later: no reminders due while closed; observing raises
    ReminderError (logged by the service)."""

    def __init__(self, factory: Callable[[], ReminderService], **kwargs: Any) -> None:
        super().__init__("reminder store", factory, ReminderError, **kwargs)

    def observe_many(self, readouts: Iterable[Readout],
                     wire_json: Sequence[str] | None = None) -> None:
        self._required().observe_many(readouts, wire_json)

    def latest(self, vin: str) -> Readout | None:
        return self._required().latest(vin)

    @property
    def in_pass(self) -> bool:
        store = self._store
        return store is not None and store.in_pass

    def poll(self, now: datetime, put: Put, put_many: PutMany | None = None) -> int:
        store = self._open()
        return 0 if store is None else store.poll(now, put, put_many)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
