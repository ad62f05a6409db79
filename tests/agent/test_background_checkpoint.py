"""The stores' write-ahead logs are checkpointed by a thread of their own, not by the commits of
the service loop (agent/store/sqlite.py, BackgroundCheckpointer)."""

from __future__ import annotations

from pathlib import Path

from agent.store.outbox import Outbox, OutboxMessage
from agent.store.sqlite import BackgroundCheckpointer


def test_a_grown_log_is_checkpointed_and_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    wal = path.with_name(path.name + "-wal")
    checkpointer = BackgroundCheckpointer([path, tmp_path / "missing.sqlite3"],
                                          min_wal_bytes=64 * 1024)
    with Outbox(path) as outbox:
        outbox.put_many([OutboxMessage("t", b"x" * 4000, False, "s", f"m{n}") for n in range(100)])
        assert wal.stat().st_size > 64 * 1024
        assert checkpointer.checkpoint_once() == 1  # the missing store is skipped
        size = wal.stat().st_size
        # The log starts over: the next commits reuse it from the start instead of growing it.
        outbox.put_many([OutboxMessage("t", b"y" * 4000, False, "s", f"n{n}") for n in range(50)])
        assert wal.stat().st_size <= size
        assert outbox.depth() == 150
    checkpointer.stop()


def test_the_thread_starts_and_stops(tmp_path: Path) -> None:
    checkpointer = BackgroundCheckpointer([tmp_path / "none.sqlite3"], interval_s=0.01)
    checkpointer.start()
    checkpointer.stop()
    assert checkpointer.checkpoints == 0
