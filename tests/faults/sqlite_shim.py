"""Run ``cbs-agent`` with a failing SQLite layer: ``python sqlite_shim.py FLAG run ...``.

While the file ``FLAG`` exists, every write the agent's stores attempt (``BEGIN IMMEDIATE``,
``INSERT``, ``DELETE``, ``COMMIT``, scripts) fails the way SQLite fails on that kind of disk;
the file's first word picks which:

* ``readonly``: ``attempt to write a readonly database`` (SQLITE_READONLY, a filesystem
  remounted read-only after an ext4 error);
* ``full``: ``database or disk is full`` (SQLITE_FULL);
* ``ioerr``: ``disk I/O error`` (SQLITE_IOERR, a dying SD card).

Reads go through. This is the fault a real filesystem cannot give a running process in a
test: Linux refuses to remount read-only while files are open for writing (EBUSY). Every
connection the agent opens goes through the shim (``sqlite3.connect`` with a factory), so the
agent's own code, error translation and retry loop are what is tested.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Any

ERRORS = {"readonly": ("attempt to write a readonly database", 8),
          "full": ("database or disk is full", 13),
          "ioerr": ("disk I/O error", 10)}
WRITES = ("BEGIN", "INSERT", "DELETE", "UPDATE", "COMMIT", "CREATE", "REPLACE")


def _failure(flag: str, sql: str | None) -> sqlite3.OperationalError | None:
    if sql is not None and not sql.lstrip().upper().startswith(WRITES):
        return None
    try:
        with open(flag) as handle:
            kind = (handle.read().split() or ["readonly"])[0]
    except OSError:
        return None
    message, code = ERRORS.get(kind, ERRORS["readonly"])
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    error.sqlite_errorname = "SQLITE_" + kind.upper()  # type: ignore[attr-defined]
    return error


def install(flag: str) -> None:
    original = sqlite3.connect

    class FailingConnection(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            if (error := _failure(flag, sql)) is not None:
                raise error
            return super().execute(sql, *args)

        def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            if (error := _failure(flag, sql)) is not None:
                raise error
            return super().executemany(sql, *args)

        def executescript(self, script: str) -> sqlite3.Cursor:  # type: ignore[override]
            if (error := _failure(flag, None)) is not None:
                raise error
            return super().executescript(script)

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", FailingConnection)
        return original(*args, **kwargs)

    sqlite3.connect = connect  # type: ignore[assignment]


if __name__ == "__main__":
    install(os.path.abspath(sys.argv[1]))
    from agent.cli import main
    sys.exit(main(sys.argv[2:]))
