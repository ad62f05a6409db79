"""What a readout's forecast reads of a large dealer's history: the vehicle's summary row
against its readings, and whether both give the same forecast.

    python bench/history_summary.py STATE_DIR [--vehicles 2000]

STATE_DIR is filled by bench/big_history.py. Its ``history.sqlite3`` is copied to a scratch
directory (reading a vehicle's readings fills nothing, but the store's open writes its
schema) and opened with the agent's ``VehicleHistory``. For ``--vehicles`` vehicles of the
fleet, read with a session of the fleet a day after the history's newest readout:

* the forecast from ``VehicleHistory.readings(vin)`` as the pipeline calls it (the summary
  row, one primary-key lookup) and from the same readings loaded and walked (``list()`` of
  them: what the forecast did before the rows existed) must be equal, field by field;
* the cost of each, history read plus forecast, in process CPU time (robust to the other
  work on the host), and against a vehicle without history (the empty state's case);
* for as many vehicles whose window is full (each readout takes their oldest reading out,
  so the record walks their rows again, 2c), that walk from readouts built of the rows
  against the walk from the rows as stored (``_summary_from_rows``, what the record does),
  alternated vehicle by vehicle, wall time: the summaries must be equal.

Goal (docs/performance.md, "Years at a busy site", 2a): the readout's path does not grow with
the history; here, the forecast from the row costs about what a first visit's does.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine, result, table  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--vehicles", type=int, default=2000)
    args = parser.parse_args(argv)

    from agent.domain.forecast import ForecastSettings, forecast_session, summarize_history
    from agent.domain.forecast.trends import HISTORY_WINDOW
    from agent.store.history import VehicleHistory, _select_keyed
    from simulators.fleet import Fleet

    logging.disable(logging.WARNING)  # stale keys of the replayed sessions: not the point here
    meta = json.loads((args.state_dir / "big_history.json").read_text())
    print(f"history summary rows against readings, {args.state_dir}; {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-sum-"))
    try:
        shutil.copy(args.state_dir / "history.sqlite3", work / "history.sqlite3")
        fleet = Fleet(meta["seed"], date.fromisoformat(meta["base_date"]),
                      vehicle_count=min(args.vehicles, meta["vehicles"]))
        settings = ForecastSettings()
        read_at = datetime.combine(date.fromisoformat(meta["base_date"]) + timedelta(days=1),
                                   datetime.min.time(), UTC)
        row_us, readings_us, none_us = [], [], []
        differ = with_row = counted = 0
        with VehicleHistory(work / "history.sqlite3", retention_days=meta["retention_days"],
                            max_per_vehicle=meta["max_per_vehicle"], cache_readings=0) as history:
            for session in fleet.sessions(args.vehicles):
                t0 = time.process_time()
                lazy = history.readings(session.vin)
                by_row = forecast_session(session, read_at, lazy, settings)
                t1 = time.process_time()
                loaded = list(history.readings(session.vin))
                by_readings = forecast_session(session, read_at, loaded, settings)
                t2 = time.process_time()
                forecast_session(session, read_at, [], settings)
                t3 = time.process_time()
                with_row += lazy.summary_until(read_at) is not None
                counted += len(loaded)
                differ += by_row != by_readings
                row_us.append((t1 - t0) * 1e6)
                readings_us.append((t2 - t1) * 1e6)
                none_us.append((t3 - t2) * 1e6)
            conn = history._conn
            full = [vin for (vin,) in conn.execute(
                "SELECT vin FROM summaries WHERE readings >= ? ORDER BY vin LIMIT ?",
                (HISTORY_WINDOW, args.vehicles))]
            walk_us: tuple[list[float], list[float]] = ([], [])
            for n, vin in enumerate(full):
                t0 = time.perf_counter()
                if n % 2:
                    kept = [reading for _, _, reading in _select_keyed(conn, vin)]
                    summarize_history(kept, vin, settings)
                else:
                    history._summary_from_rows(conn, vin)
                walk_us[n % 2].append((time.perf_counter() - t0) * 1e6)
            walks_differ = sum(
                history._summary_from_rows(conn, vin)[2] != summarize_history(
                    [reading for _, _, reading in _select_keyed(conn, vin)], vin, settings)
                for vin in full)
        n = len(row_us)
        rows = [("vehicles read (with a summary row)", f"{n:,} ({with_row:,})"),
                ("earlier readings per vehicle (mean)", f"{counted / n:.1f}"),
                ("forecasts that differ", f"{differ}"),
                ("history read + forecast, from the row (mean)", f"{statistics.mean(row_us):.0f} µs"),
                ("history read + forecast, from the readings (mean)",
                 f"{statistics.mean(readings_us):.0f} µs"),
                ("forecast without history (mean)", f"{statistics.mean(none_us):.0f} µs"),
                ("window-full vehicles walked again (summaries that differ)",
                 f"{len(full):,} ({walks_differ})")]
        if walk_us[0] and walk_us[1]:
            rows += [("  from readouts of the rows (median, wall)",
                      f"{statistics.median(walk_us[1]):.0f} µs"),
                     ("  from the rows as stored (median, wall)",
                      f"{statistics.median(walk_us[0]):.0f} µs")]
        table(rows, ["", ""])
        print("  (process CPU time, 1 ms resolution on some kernels: means over all vehicles)")
        result("forecasts from the summary row that differ from the readings'", differ, "",
               "0", differ == 0)
        extra = statistics.mean(row_us) - statistics.mean(none_us)
        result("history read + forecast from the row, over none", extra, "µs", "", None)
        result("history read + forecast from the readings, over none",
               statistics.mean(readings_us) - statistics.mean(none_us), "µs", "", None)
        result("window-full summaries from the rows that differ", walks_differ, "", "0",
               walks_differ == 0)
        if walk_us[0] and walk_us[1]:
            result("window-full walk from the rows / from readouts",
                   statistics.median(walk_us[0]) / statistics.median(walk_us[1]), "x", "", None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if differ == 0 and walks_differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
