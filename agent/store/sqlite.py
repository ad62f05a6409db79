"""The one way the agent's SQLite stores write: an immediate transaction under the store's lock,
rolled back on any exception, with SQLite's errors translated into the store's own."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal


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
