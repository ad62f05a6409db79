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
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

RETRY_S = 2.0


class DeferredStore:
    """A store opened by ``factory`` as soon as it can be.

    ``fallbacks`` maps attribute names to what they give while the store is closed (a value,
    or a callable for methods); any other attribute raises the last opening error.
    """

    def __init__(self, name: str, factory: Callable[[], Any], error_type: type[Exception], *,
                 fallbacks: dict[str, Any], retry_s: float = RETRY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._factory = factory
        self._error_type = error_type
        self._fallbacks = fallbacks
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._store: Any = None
        self._error: Exception | None = None
        self._next_try = 0.0
        self._open()

    @property
    def opened(self) -> bool:
        return self._store is not None

    def _open(self) -> Any:
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

    def __getattr__(self, name: str) -> Any:
        store = self._open()
        if store is not None:
            return getattr(store, name)
        if name in self._fallbacks:
            return self._fallbacks[name]
        error = self._error
        def unavailable(*_args: Any, **_kwargs: Any) -> Any:
            raise self._error_type(str(error))
        return unavailable


def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


def _none_list(*_args: Any, **_kwargs: Any) -> list[Any]:
    return []


def _zero(*_args: Any, **_kwargs: Any) -> int:
    return 0


OUTBOX_FALLBACKS: dict[str, Any] = {
    "pending": _none_list, "ack": _nothing, "ack_many": _nothing, "depth": _zero,
    "oldest_age_s": _nothing, "evicted": 0, "full": False, "close": _nothing, "expire": _zero,
    "quarantined": None,
}
HISTORY_FALLBACKS: dict[str, Any] = {"readings": _none_list, "close": _nothing,
                                     "quarantined": None}
REMINDER_FALLBACKS: dict[str, Any] = {"poll": _zero, "close": _nothing, "quarantined": None}
