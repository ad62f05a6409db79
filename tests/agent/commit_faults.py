"""A commit of the outbox that fails at the exact moment the staging tests need: after the
rows were inserted and handed to the listener, at ``COMMIT`` (the disk-full tests elsewhere
fail real commits; these tests are about what the publisher does with rows it already has)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import agent.store.outbox as outbox_module


@contextmanager
def failing_commit(monkeypatch: pytest.MonkeyPatch,
                   fsync: threading.Event | None = None) -> Iterator[None]:
    """While inside, every outbox transaction rolls back at its COMMIT with a disk I/O
    error; with ``fsync``, only once that event is set (a slow disk)."""
    original = outbox_module._transaction

    @contextmanager
    def transaction(db: sqlite3.Connection) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            if fsync is not None:
                fsync.wait(10)
            raise sqlite3.OperationalError("disk I/O error (at COMMIT, for the test)")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    monkeypatch.setattr(outbox_module, "_transaction", transaction)
    try:
        yield
    finally:
        monkeypatch.setattr(outbox_module, "_transaction", original)
