"""The durable outbox: order, durability, bounds, two threads, and real write failures.

Write failures are real, not injected: a file-size limit (RLIMIT_FSIZE, any user) and, where
this machine lets us mount, a tiny tmpfs in a private mount namespace (``unshare -m``) that
fills up (ENOSPC) or is remounted read-only. Both run in a subprocess so that neither the
limit nor the mount can touch the test process or the rest of the machine.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agent.errors import OutboxError
from agent.store.outbox import Outbox, OutboxMessage

T0 = 1_800_000_000.0  # a fixed wall clock for the bounds tests


def put(outbox: Outbox, n: int, *, retain: bool = False, topic: str = "cbs/v1/S1/desk1/readout",
        now: float = T0, prefix: str = "m") -> int:
    row_id: int = outbox.put(topic, f'{{"n": {n}}}'.encode(), retain=retain,
                             schema="cbs.readout/1", message_id=f"{prefix}{n}", now=now)
    return row_id


def ids(outbox: Outbox) -> list[str]:
    return [entry.message_id for entry in outbox.pending(limit=1_000_000)]


def test_put_is_durable_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as outbox:
        row = outbox.put("cbs/v1/S1/vehicles/WBA8E5107FK123456", b'{"x": "\xc3\xa9"}',
                         retain=True, schema="cbs.readout/1", message_id="r-1", now=T0)
        put(outbox, 2)
    with Outbox(path) as reopened:
        assert reopened.depth() == 2
        first, second = reopened.pending()
    assert (first.row_id, first.topic, first.payload, first.retain, first.schema,
            first.message_id, first.created_at) == (
        row, "cbs/v1/S1/vehicles/WBA8E5107FK123456", b'{"x": "\xc3\xa9"}', True,
        "cbs.readout/1", "r-1", T0)
    assert second.message_id == "m2" and second.retain is False
    # The promised durability settings are in force on the file.
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_pending_is_in_order_from_a_cursor(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        rows = [put(outbox, n) for n in range(10)]
        assert rows == sorted(rows)
        assert [e.message_id for e in outbox.pending(limit=3)] == ["m0", "m1", "m2"]
        assert [e.message_id for e in outbox.pending(after_row=rows[6], limit=10)] == ["m7", "m8", "m9"]
        assert outbox.pending(after_row=rows[-1]) == []


def test_row_ids_are_never_reused(tmp_path: Path) -> None:
    """The publisher's cursor relies on ids only growing, even after the newest was acked."""
    path = tmp_path / "o.db"
    with Outbox(path) as outbox:
        newest = put(outbox, 1)
        outbox.ack(newest)
    with Outbox(path) as outbox:
        assert put(outbox, 2) > newest


def test_ack_deletes_and_ignores_unknown_rows(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        rows = [put(outbox, n) for n in range(5)]
        outbox.ack(rows[1])
        outbox.ack_many([rows[3], rows[4], 9999])
        outbox.ack(rows[1])  # twice: no error, no change
        assert ids(outbox) == ["m0", "m2"]
        assert outbox.depth() == 2
        outbox.ack_many([])
        assert outbox.depth() == 2


def test_put_many_is_one_ordered_transaction(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        rows = outbox.put_many([OutboxMessage("t/a", b"1", False, "s", "a"),
                                OutboxMessage("t/b", b"2", True, "s", "b")], now=T0)
        assert len(rows) == 2 and rows[0] < rows[1]
        with pytest.raises(OutboxError, match="cannot store 2 messages"):
            # The second one violates NOT NULL: neither may be stored.
            outbox.put_many([OutboxMessage("t/c", b"3", False, "s", "c"),
                             OutboxMessage(None, b"4", False, "s", "d")])  # type: ignore[arg-type, unused-ignore]
        assert ids(outbox) == ["a", "b"] and outbox.depth() == 2


def test_when_full_the_oldest_retained_message_goes_first(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent.store.outbox")
    with Outbox(tmp_path / "o.db", max_messages=4) as outbox:
        put(outbox, 0)
        put(outbox, 1, retain=True, topic="cbs/v1/S1/vehicles/V1")
        put(outbox, 2)
        put(outbox, 3, retain=True, topic="cbs/v1/S1/vehicles/V3")
        assert outbox.full and outbox.evicted == 0
        put(outbox, 4)  # evicts m1, the oldest retained copy
        put(outbox, 5)  # evicts m3
        assert ids(outbox) == ["m0", "m2", "m4", "m5"]
        put(outbox, 6)  # no retained left: the oldest of all
        assert ids(outbox) == ["m2", "m4", "m5", "m6"]
        assert outbox.evicted == 3 and outbox.depth() == 4 and outbox.full
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "evicted" in warnings[0] and "m1" in warnings[0] and "cbs/v1/S1/vehicles/V1" in warnings[0]
    assert "m0" in warnings[2]


def test_messages_older_than_max_age_expire(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent.store.outbox")
    with Outbox(tmp_path / "o.db", max_age_s=100, clock=lambda: T0 + 170) as outbox:
        put(outbox, 0, now=T0)
        put(outbox, 1, now=T0 + 10)
        put(outbox, 2, now=T0 + 60)
        assert outbox.oldest_age_s(T0 + 70) == pytest.approx(70)
        put(outbox, 3, now=T0 + 105)  # expires m0 (105 s old), not m1 (95 s)
        assert ids(outbox) == ["m1", "m2", "m3"]
        assert outbox.expire() == 2  # the injected clock: T0 + 170 expires m1 and m2
        assert ids(outbox) == ["m3"] and outbox.evicted == 3 and outbox.depth() == 1
        assert outbox.oldest_age_s() == pytest.approx(65)
        outbox.ack_many(e.row_id for e in outbox.pending())
        assert outbox.oldest_age_s() is None
    assert any("expired unsent" in r.getMessage() and "m0" in r.getMessage()
               for r in caplog.records)


def test_one_writer_and_one_publisher_thread(tmp_path: Path) -> None:
    """The service thread puts while the publisher thread reads and acks: nothing is lost,
    duplicated or reordered, and the count stays exact."""
    total = 400
    outbox = Outbox(tmp_path / "o.db")
    seen: list[str] = []
    writer_done = threading.Event()
    errors: list[Exception] = []

    def writer() -> None:
        try:
            for n in range(total):
                put(outbox, n)
        except Exception as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)
        finally:
            writer_done.set()

    def publisher() -> None:
        cursor = 0
        try:
            while len(seen) < total:
                batch = outbox.pending(after_row=cursor, limit=50)
                if not batch:
                    if writer_done.is_set() and not outbox.pending(after_row=cursor, limit=1):
                        return
                    time.sleep(0.001)  # let the writer have the lock
                    continue
                seen.extend(entry.message_id for entry in batch)
                cursor = batch[-1].row_id
                outbox.ack_many(entry.row_id for entry in batch)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=publisher)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert seen == [f"m{n}" for n in range(total)]
    assert outbox.depth() == 0 == len(outbox.pending())
    outbox.close()


def test_a_file_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(OutboxError, match="newer agent"):
        Outbox(path)


def test_an_unopenable_path_is_an_outbox_error(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match="cannot open: .* does not exist"):
        Outbox(tmp_path / "missing-dir" / "o.db")


# -- real write failures, in a subprocess ----------------------------------------------------

FILE_SIZE_LIMIT_SCRIPT = textwrap.dedent("""
    import os, resource, signal, sys
    from agent.errors import OutboxError
    from agent.store.outbox import Outbox

    path = sys.argv[1]
    outbox = Outbox(path)
    for n in range(20):
        outbox.put("t", b"x" * 1000, retain=False, schema="s", message_id=f"early{n}")
    # Writes beyond the limit now fail with EFBIG (SIGXFSZ ignored), as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = os.path.getsize(path) + os.path.getsize(path + "-wal") + 32 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    stored = 0
    try:
        while True:
            outbox.put("t", b"y" * 4000, retain=False, schema="s", message_id=f"late{stored}")
            stored += 1
    except OutboxError as exc:
        print("ERROR", exc)
    print("DEPTH", outbox.depth(), len(outbox.pending(limit=10**6)), stored)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    outbox.put("t", b"z", retain=False, schema="s", message_id="after")
    print("RECOVERED", outbox.depth())
    outbox.close()
""")


def test_a_failing_write_raises_outbox_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    result = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT_SCRIPT, str(path)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["ERROR"].startswith(f"outbox {path}: cannot store late")
    depth, pending, stored = map(int, lines["DEPTH"].split())
    assert depth == pending == 20 + stored  # the failed put left no trace, the count is exact
    assert lines["RECOVERED"] == str(depth + 1)
    with Outbox(path) as outbox:  # every committed message is still there, in order
        assert ids(outbox) == ([f"early{n}" for n in range(20)]
                               + [f"late{n}" for n in range(stored)] + ["after"])


TMPFS_SCRIPT = textwrap.dedent("""
    import subprocess, sys
    from agent.errors import OutboxError
    from agent.store.outbox import Outbox

    directory = sys.argv[1]
    path = directory + "/o.db"
    outbox = Outbox(path)
    outbox.put("t", b"first", retain=False, schema="s", message_id="first")
    stored = 0
    try:
        while True:
            outbox.put("t", b"y" * 8000, retain=False, schema="s", message_id=f"fill{stored}")
            stored += 1
    except OutboxError as exc:
        print("FULL", exc)
    print("DEPTH", outbox.depth(), len(outbox.pending(limit=10**6)), stored)
    subprocess.run(["mount", "-o", "remount,size=4m", directory], check=True)
    outbox.put("t", b"second", retain=False, schema="s", message_id="second")
    outbox.ack_many(e.row_id for e in outbox.pending(limit=10**6) if e.message_id.startswith("fill"))
    outbox.close()

    # The state directory turns read-only (remounting needs no open writers: reopen after).
    subprocess.run(["mount", "-o", "remount,ro", directory], check=True)
    try:
        outbox = Outbox(path)
        outbox.put("t", b"x", retain=False, schema="s", message_id="readonly")
        print("READONLY stored?!")
    except OutboxError as exc:
        print("READONLY", exc)
    subprocess.run(["mount", "-o", "remount,rw", directory], check=True)
    outbox = Outbox(path)
    outbox.put("t", b"after", retain=False, schema="s", message_id="after")
    print("IDS", ",".join(e.message_id for e in outbox.pending(limit=10**6)))
    outbox.close()
""")


def _private_tmpfs_available(directory: Path) -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "none",
                            str(directory)], check=False, capture_output=True, timeout=10)
    return probe.returncode == 0


def test_disk_full_and_read_only_filesystem(tmp_path: Path) -> None:
    """A real 256 KiB tmpfs, visible only to the subprocess (private mount namespace)."""
    directory = tmp_path / "state"
    directory.mkdir()
    if not _private_tmpfs_available(directory):
        pytest.skip("cannot mount a private tmpfs here (needs root and unshare)")
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         'mount -t tmpfs -o size=256k none "$1" && exec "$2" -c "$3" "$1"', "sh",
         str(directory), sys.executable, TMPFS_SCRIPT],
        check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["FULL"].startswith(f"outbox {directory}/o.db: cannot store fill")
    assert lines["FULL"].endswith("database or disk is full")
    depth, pending, stored = map(int, lines["DEPTH"].split())
    assert depth == pending == 1 + stored  # the failed put left no trace
    assert lines["READONLY"].startswith(f"outbox {directory}/o.db: ")
    assert "read-only file system" in lines["READONLY"]
    assert lines["IDS"] == "first,second,after"


def test_rows_another_process_stored_never_make_the_depth_negative(tmp_path) -> None:
    """``cbs-agent diagnose`` stores its report in the daemon's outbox file; the daemon's
    publisher may deliver and delete those rows too."""
    from agent.store.outbox import Outbox

    path = tmp_path / "outbox.sqlite3"
    daemon = Outbox(path)
    other = Outbox(path)
    try:
        other.put("t/a", b"{}", retain=False, schema="cbs.diagnosis/1", message_id="d1")
        rows = daemon.pending()
        assert [r.message_id for r in rows] == ["d1"] and daemon.depth() == 0
        daemon.ack_many([r.row_id for r in rows])
        assert daemon.depth() == 0
        daemon.put("t/b", b"{}", retain=False, schema="cbs.readout/1", message_id="r1")
        assert daemon.depth() == 1
    finally:
        daemon.close()
        other.close()
