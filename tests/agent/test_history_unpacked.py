"""The vehicle history unpacks a summary row once for a readout's forecast and its record
(agent/store/history.py, ``_summary_row``): the record's lookup finds the same bytes and takes
the summary already unpacked; bytes that differ (another connection wrote the row) are
unpacked again. The summaries kept are bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
from forecast_fixtures import VIN, at, visit

import agent.store.history as history_module
from agent.store.history import UNPACKED_SUMMARIES, VehicleHistory


@pytest.fixture
def unpacks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = history_module.unpack_summary

    def counting(blob: bytes):  # type: ignore[no-untyped-def]
        seen.append(blob)
        return real(blob)

    monkeypatch.setattr(history_module, "unpack_summary", counting)
    return seen


def test_a_forecast_and_its_record_unpack_the_row_once(tmp_path: Path, unpacks: list[bytes]) -> None:
    path = tmp_path / "h.sqlite3"
    with VehicleHistory(path) as history:
        for n in range(3):
            s = visit(30 * n, 20_000 + 1_500 * n)
            history.record(s, at(s.vehicle.data_date), f"r{n}")
        with VehicleHistory(path) as fresh:  # another object: nothing of it unpacked yet
            expected = fresh.readings(VIN).summary_until(at(visit(200, 0).vehicle.data_date))
        unpacks.clear()
        later = visit(120, 26_000)
        got = history.readings(VIN).summary_until(at(later.vehicle.data_date))
        history.record(later, at(later.vehicle.data_date), "r3")
        assert got == expected
        # Written by this object: its bytes were kept with the summary; nothing unpacked.
        assert unpacks == []
        assert len(history.readings(VIN)) == 4


def test_a_row_another_connection_wrote_is_unpacked_again(tmp_path: Path, unpacks: list[bytes]) -> None:
    path = tmp_path / "h.sqlite3"
    with VehicleHistory(path) as first, VehicleHistory(path) as second:
        s = visit(0, 20_000)
        first.record(s, at(s.vehicle.data_date), "a")
        before = first.readings(VIN).summary_until(at(visit(400, 0).vehicle.data_date))
        other = visit(60, 22_500)
        second.record(other, at(other.vehicle.data_date), "b")  # the row's bytes change
        unpacks.clear()
        after = first.readings(VIN).summary_until(at(visit(400, 0).vehicle.data_date))
        assert len(unpacks) == 1 and after != before
        assert after == second.readings(VIN).summary_until(at(visit(400, 0).vehicle.data_date))
        assert after is not None and after.points == 2


def test_the_summaries_kept_unpacked_are_bounded(tmp_path: Path) -> None:
    with VehicleHistory(tmp_path / "h.sqlite3") as history:
        for n in range(UNPACKED_SUMMARIES * 3):
            vin = f"WBA8E5107FK{n:06d}"
            s = visit(0, 20_000, vin=vin)
            history.record(s, at(s.vehicle.data_date), f"r{n}")
            history.readings(vin)
        assert len(history._unpacked) == UNPACKED_SUMMARIES
