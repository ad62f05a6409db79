"""The daily reminder pass over a large dealer's kept vehicles: how long, in what memory, and how
long one slice (one loop turn's share) holds the service loop.

    python bench/reminder_pass.py STATE_DIR [--whole]

STATE_DIR is filled by bench/big_history.py (100,000 vehicles by default). Its
``reminders.sqlite3`` is copied to a scratch directory (the pass writes its ledger) and opened
with the agent's own ``ReminderService``; the pass is run as the service loop runs it,
:meth:`ReminderService.poll` once per turn until it is done, each reminder committed to a real
outbox (one transaction, fsync, as the service does). Printed: the pass's wall time, its slices
(count, median, p99 and longest), reminders sent, and this process's RSS before, during and
after. ``--whole`` also plans every vehicle's readout at once, as the pass did before it was
sliced (for the record: that held the loop for the whole pass).

Goals (docs/performance.md, "Years at a busy site"): the pass under 30 s for 100,000
vehicles, memory flat; what a slice costs is what a key read during the pass may wait.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine, percentile, result, rss_kib, table  # noqa: E402

TARGET_S = 30.0
TARGET_RSS_GROWTH = 0.05
WARM_SLICES = 100  # a tenth of 100,000 vehicles: imports, the catalogue and caches warmed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--whole", action="store_true",
                        help="also plan all vehicles at once (the pass before it was sliced)")
    args = parser.parse_args(argv)
    import os

    from agent.store.outbox import Outbox
    from agent.store.reminders import ReminderService

    print(f"reminder pass over {args.state_dir}; {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-rem-"))
    shutil.copy(args.state_dir / "reminders.sqlite3", work / "reminders.sqlite3")
    pid = os.getpid()
    ok = True
    try:
        outbox = Outbox(work / "outbox.sqlite3")

        from agent.store.outbox import OutboxMessage

        def put(topic: str, payload: bytes, retain: bool, schema: str, message_id: str) -> None:
            outbox.put_many([OutboxMessage(topic, payload, retain, schema, message_id)])

        def put_many(messages: Sequence[tuple[str, bytes, bool, str, str]]) -> None:
            outbox.put_many([OutboxMessage(*m) for m in messages])  # as the service commits

        opened = time.perf_counter()
        store = ReminderService(work / "reminders.sqlite3", site="bench", reader="lat",
                                topic="cbs/v1/bench/reminders", retention_days=3650)
        open_s = time.perf_counter() - opened
        kept = store._conn.execute("SELECT count(*) FROM vehicles").fetchone()[0]  # noqa: SLF001
        rss_before = rss_warm = rss_kib(pid) / 1024
        now = datetime.now(UTC)
        slices: list[float] = []
        rss_during: list[float] = []
        sent = 0
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            sent += store.poll(now, put, put_many)
            slices.append((time.perf_counter() - t0) * 1000)
            if len(slices) == WARM_SLICES:
                rss_warm = rss_kib(pid) / 1024
            if len(slices) % 10 == 0:
                rss_during.append(rss_kib(pid) / 1024)
            if not store.in_pass:
                break
        pass_s = time.perf_counter() - started
        rss_after = rss_kib(pid) / 1024
        rows = [("open the store", f"{open_s * 1000:.0f} ms"),
                ("vehicles kept", f"{kept:,}"),
                ("pass, wall time", f"{pass_s:.2f} s"),
                ("slices (loop turns)", f"{len(slices):,}"),
                ("slice median / p99 / longest",
                 f"{percentile(slices, 50):.2f} / {percentile(slices, 99):.2f} / "
                 f"{max(slices):.2f} ms"),
                ("reminders sent (each committed to the outbox)", f"{sent:,}"),
                ("slowest slice: which", f"#{slices.index(max(slices)) + 1}"),
                (f"RSS before / after {WARM_SLICES} slices / peak / after",
                 f"{rss_before:.1f} / {rss_warm:.1f} / {max(rss_during or [rss_after]):.1f} / "
                 f"{rss_after:.1f} MB")]
        if args.whole:
            t0 = time.perf_counter()
            planned = store.due(now)  # the pass as it was: every readout parsed and planned
            rows.append(("whole pass at once (before: one loop turn)",
                         f"{time.perf_counter() - t0:.2f} s, {len(planned)} more due, "
                         f"RSS {rss_kib(pid) / 1024:.1f} MB"))
        table(rows, ["", ""])
        store.close()
        outbox.close()
        growth = max(rss_during or [rss_after]) / rss_warm - 1
        ok = kept > 0
        result("reminder pass over the kept vehicles", pass_s, "s", f"<= {TARGET_S:.0f} s",
               pass_s <= TARGET_S and ok)
        result("reminder pass, longest slice (one loop turn)", max(slices), "ms", "", None)
        result(f"reminder pass, RSS growth after the first {WARM_SLICES} slices", growth * 100, "%",
               f"<= {TARGET_RSS_GROWTH:.0%}", growth <= TARGET_RSS_GROWTH)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
