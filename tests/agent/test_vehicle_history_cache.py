"""The vehicle history's in-memory cache mirrors the file exactly: the same readings and
counters as a history that reads everything from disk, whatever order readouts come in, with
both bounds at work, and after another connection (another process) wrote to the file."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

from forecast_fixtures import VIN, at, item, session

from agent.store.history import VehicleHistory
from protocols.cbs_types import CbsType

VINS = [VIN, "WBA8E5107FK65432A", "WBA8E5107FK65432B"]


def _visit(vin: str, days: int, km: int):  # type: ignore[no-untyped-def]
    oil = item(0, CbsType.ENGINE_OIL, availability=max(0, 90 - days // 10),
               remaining=max(1, 15_000 - km % 15_000), due=(2027, 6), count=3)
    return session(oil, mileage=km, data_date=date(2024, 1, 1) + timedelta(days=days), vin=vin)


def test_cache_mirrors_the_file_through_both_bounds(tmp_path: Path) -> None:
    rng = random.Random(7)
    cached = VehicleHistory(tmp_path / "h.sqlite3", retention_days=400, max_per_vehicle=5,
                            cache_readings=12)
    plain = VehicleHistory(tmp_path / "p.sqlite3", retention_days=400, max_per_vehicle=5,
                           cache_readings=0)
    try:
        for n in range(160):
            vin = rng.choice(VINS)
            days = n * 9 + rng.randint(-30, 30)  # mostly forward in time, sometimes back
            s = _visit(vin, max(0, days), 10_000 + days * 40)
            when = at(s.vehicle.data_date)
            rid = f"r{n if rng.random() > 0.1 else n - 1}"  # some duplicates of the previous id
            for history in (cached, plain):
                history.record(s, when, rid)
            probe = rng.choice(VINS)
            assert cached.readings(probe) == plain.readings(probe), n
            assert cached.cache_size() <= 12
        assert cached.counters == plain.counters
        assert cached.counters["pruned"] > 0 and cached.counters["duplicates"] > 0
    finally:
        cached.close()
        plain.close()


def test_a_write_by_another_connection_empties_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    first, second = VehicleHistory(path), VehicleHistory(path)
    try:
        s = _visit(VIN, 10, 20_000)
        first.record(s, at(s.vehicle.data_date), "a")
        assert [r.readout_id for r in first.readings(VIN)] == ["a"]  # now cached
        later = _visit(VIN, 60, 22_000)
        second.record(later, at(later.vehicle.data_date), "b")  # another connection
        assert [r.readout_id for r in first.readings(VIN)] == ["a", "b"]
        third = _visit(VIN, 90, 23_000)
        first.record(third, at(third.vehicle.data_date), "c")
        assert [r.readout_id for r in second.readings(VIN)] == ["a", "b", "c"]
        assert [r.readout_id for r in first.readings(VIN)] == ["a", "b", "c"]
    finally:
        first.close()
        second.close()
