"""The forecast of a vehicle with many earlier visits: what it costs against the number of them.

    python bench/forecast_window.py [--rounds 300]

A vehicle of the simulator fleet with N earlier readouts (one every 60 days, the mileage and
each item walked back as bench/big_history.py does), N from 1 to 1,000; per N, the median of
``--rounds`` calls of the pure forecast (``forecast_session``, what the pipeline runs for
every readout) and of the whole readout (forecast, proposal, payload). The history gives the
forecast at most ``[history] max_per_vehicle`` readouts (50 by default; the setting allows up
to 100,000), and the forecast itself reads at most the newest
``agent.domain.forecast.trends.HISTORY_WINDOW`` of them: past that the cost is flat.

Goal (docs/performance.md, "Years at a busy site"): a vehicle with 60 earlier visits costs no
more than one with the window's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine, result, table  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)

    from agent.domain.forecast import ForecastSettings, PastItem, PastReading, forecast_session
    from agent.domain.forecast.trends import HISTORY_WINDOW
    from agent.pipeline import ReadoutPipeline
    from protocols.session import SessionAccepted
    from simulators.fleet import Fleet, _ReadBuilder

    print(f"forecast cost against earlier visits; {machine()}")
    fleet = Fleet(21, None, vehicle_count=50)
    vehicle = fleet.vehicles[3]
    session = _ReadBuilder(fleet, vehicle, random.Random(7)).build(seq=1)
    now = datetime.now(UTC)
    settings = ForecastSettings()
    pipeline = ReadoutPipeline(site="S", reader="R", transport="serial", forecast=settings)
    base = PastReading.from_session(session, now, "x")

    def history(count: int) -> list[PastReading]:
        out = []
        for n in range(count, 0, -1):
            back = 60 * n
            km = int(back * vehicle.annual_km / 365)
            items = tuple(PastItem(i.index, i.code,
                                   None if i.remaining_km is None else i.remaining_km + km,
                                   i.availability_pct, i.service_count, i.last_service_km)
                          for i in base.items)
            out.append(PastReading(readout_id=f"h{n}", vin=session.vin,
                                   read_at=now - timedelta(days=back), key_id=session.key_id,
                                   data_date=session.vehicle.data_date - timedelta(days=back),
                                   mileage_km=max(0, session.vehicle.mileage_km - km),
                                   items=items))
        return out

    rows = []
    costs: dict[int, float] = {}
    window = min(HISTORY_WINDOW, 50)
    print(f"  the forecast reads at most {HISTORY_WINDOW:,} earlier readouts")
    for count in (1, 5, 20, 50, 60, 200, 1000):
        past = history(count)
        forecast_us, readout_us = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            forecast_session(session, now, past, settings)
            forecast_us.append((time.perf_counter() - t0) * 1e6)
        event = SessionAccepted(session, now.timestamp(), 22, 1)
        pipeline.history = _Fixed(past)  # type: ignore[assignment]
        for _ in range(max(1, args.rounds // 3)):
            t0 = time.perf_counter()
            pipeline.readout(event, now)
            readout_us.append((time.perf_counter() - t0) * 1e6)
        costs[count] = statistics.median(forecast_us)
        rows.append((f"{count} earlier readouts", f"{costs[count]:,.0f}",
                     f"{statistics.median(readout_us):,.0f}"))
    table(rows, ["", "forecast µs (median)", "whole readout µs (median)"])
    ratio = costs[60] / costs[window]
    result(f"forecast with 60 earlier visits / with {window}", ratio, "x", "<= 1.10",
           ratio <= 1.10)
    result(f"forecast with 1,000 earlier readouts / with {window}",
           costs[1000] / costs[window], "x", "", None)
    return 0


class _Fixed:
    """A history that always gives the same readings (the benchmark's)."""

    def __init__(self, readings: list[object]) -> None:
        self._readings = readings

    def readings(self, vin: str) -> list[object]:
        return self._readings


if __name__ == "__main__":
    sys.exit(main())
